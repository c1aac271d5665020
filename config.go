package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/handlers"
)

// Config is everything pinhole reads from flags and PINHOLE_* variables.
type Config struct {
	HTTPAddr        string
	UDPPorts        []int
	PublicIPs       []string
	PublicPorts     []int
	BindIP          string
	PeersPerPort    int
	ICEServers      []api.ICEServer
	CORSOrigins     []string
	AutoCreateRooms bool
	SetupTimeout    time.Duration
	// ICE timeouts tell how fast a vanished client is noticed.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
	ICEKeepalive           time.Duration
	IdleTimeout            time.Duration
	UnprovenGrace          time.Duration // see media/preempt.go
	NoPublisherTimeout     time.Duration
	LogFormat              string
	LogLevel               slog.Level
	// AdminToken guards the admin routes; Limits bound requests.
	AdminToken string
	Limits     handlers.Limits
	// StateDir keeps the admin token pinhole makes when none is given.
	StateDir string
	// OpenAPI (--insecure-open-api) lets anyone call every route.
	OpenAPI bool
	// ProbeAllow are prefixes the diagnostics probes may reach although
	// they are loopback, private or link-local.
	ProbeAllow []netip.Prefix
	// The listener edge: PROXY protocol from ProxyUpstreams, forwarded
	// headers from TrustedProxies, TLS, Host check, connection cap.
	ProxyProtocol   bool
	ProxyUpstreams  []netip.Prefix
	TrustedProxies  []netip.Prefix
	ForwardedHeader bool
	TLSCert, TLSKey string
	TLSSelfSigned   bool
	AllowedHosts    []string
	MaxConns        int
	// RoomIdleTimeout is how long an auto-created room lives without a
	// live session.
	RoomIdleTimeout time.Duration
	// TURNSecret issues time-limited TURN REST credentials for TURNTTL;
	// ShareICECredentials hands the static ones of --ice-servers out.
	TURNSecret          string
	TURNTTL             time.Duration
	ShareICECredentials bool
	// ICETCP serves ICE over TCP on the HTTP port; PublicHTTPPort
	// is the port the router or tunnel forwards to it (0: the same).
	ICETCP         bool
	PublicHTTPPort int
}

// shutdownTimeout bounds graceful shutdown: a service manager waits about
// 5 s after SIGTERM before it kills; 4 s leaves it time to see a clean exit.
const shutdownTimeout = 4 * time.Second

// maxPorts bounds --udp-ports: each port is a socket and an ICE mux, and a
// range this large is almost surely a typo.
const maxPorts = 4096

// flagSpec is one flag: its name, default, help, and the parser that
// applies a value to cfg.
type flagSpec struct {
	name, def, usage string
	set              func(cfg *Config, v string) error
}

// isBool reports whether the flag is a switch (its default is true or
// false): it may then stand alone, --tls-self-signed meaning =true.
func (f flagSpec) isBool() bool { return f.def == "true" || f.def == "false" }

// boolValue is a bool flag's value as text, so that a bare --flag works
// and the value still goes through the flag's own parser.
type boolValue struct{ v string }

func (b *boolValue) String() string     { return b.v }
func (b *boolValue) Set(v string) error { b.v = v; return nil }
func (b *boolValue) IsBoolFlag() bool   { return true }

// flagSpecs lists every flag. Each has the environment twin
// PINHOLE_<NAME> (upper case, '-' as '_'); a flag on the command line wins.
var flagSpecs = append([]flagSpec{
	{"http-addr", ":8080", "HTTP listen address", func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("must be host:port, e.g. :8080")
		}
		c.HTTPAddr = v
		return nil
	}},
	{"udp-ports", "10111-10115", "local UDP ports leased to sessions: a range 10111-10115 or a list 10111,10113-10114", func(c *Config, v string) (err error) {
		c.UDPPorts, err = parsePorts(v)
		if err == nil && len(c.UDPPorts) == 0 {
			err = errors.New("must name at least one port")
		}
		return err
	}},
	{"public-ip", "", "IPv4 address(es) advertised in answers, comma separated (default: this host's interface addresses)", func(c *Config, v string) error {
		c.PublicIPs = nil
		for _, s := range splitList(v) {
			ip := net.ParseIP(s)
			if ip == nil || ip.To4() == nil {
				return fmt.Errorf("%q is not an IPv4 address", s)
			}
			c.PublicIPs = append(c.PublicIPs, ip.String())
		}
		return nil
	}},
	{"public-ports", "", "public UDP ports the router forwards to --udp-ports, same count, e.g. 20111-20115 (default: same as local)", func(c *Config, v string) (err error) {
		c.PublicPorts, err = parsePorts(v)
		return err
	}},
	{"bind-ip", "", "local IPv4 address the leased UDP sockets bind to (default: all)", func(c *Config, v string) error {
		if v != "" {
			if ip := net.ParseIP(v); ip == nil || ip.To4() == nil {
				return fmt.Errorf("%q is not an IPv4 address", v)
			}
		}
		c.BindIP = v
		return nil
	}},
	{"peers-per-port", "1", "sessions that may share one leased port (1: one peer per port)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("must be a number from 1 to 1000")
		}
		c.PeersPerPort = n
		return nil
	}},
	{"ice-servers", "", "STUN/TURN URLs handed to clients in Link headers, comma separated; TURN as turn:user:secret@host:3478", func(c *Config, v string) error {
		c.ICEServers = nil
		for _, s := range splitList(v) {
			srv, err := api.ParseICEServer(s)
			if err != nil {
				return err
			}
			c.ICEServers = append(c.ICEServers, srv)
		}
		return nil
	}},
	{"cors-origins", "*", "origins allowed to call the API from a browser, comma separated; * for any", func(c *Config, v string) error {
		c.CORSOrigins = splitList(v)
		for _, o := range c.CORSOrigins {
			if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
				return fmt.Errorf("%q is not * or an http(s):// origin", o)
			}
		}
		return nil
	}},
	{"auto-create-rooms", "true", "create a room on first WHIP/WHEP/session request instead of answering 404", func(c *Config, v string) (err error) {
		c.AutoCreateRooms, err = strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		return nil
	}},
	{"setup-timeout", "30s", "close a session that has not connected in this time", durationFlag(func(c *Config) *time.Duration { return &c.SetupTimeout }, time.Second, time.Hour)},
	{"ice-disconnected-timeout", "5s", "ICE disconnected after this long without traffic", durationFlag(func(c *Config) *time.Duration { return &c.ICEDisconnectedTimeout }, 100*time.Millisecond, 10*time.Minute)},
	{"ice-failed-timeout", "25s", "ICE failed (session closed, port freed) this long after disconnected", durationFlag(func(c *Config) *time.Duration { return &c.ICEFailedTimeout }, 100*time.Millisecond, 10*time.Minute)},
	{"ice-keepalive", "2s", "interval of ICE keepalives", durationFlag(func(c *Config) *time.Duration { return &c.ICEKeepalive }, 100*time.Millisecond, time.Minute)},
	{"idle-timeout", "30s", "close a connected publisher that sends no RTP for this long", durationFlag(func(c *Config) *time.Duration { return &c.IdleTimeout }, time.Second, 24*time.Hour)},
	{"unproven-grace", "1s", "with every UDP port leased, a new session preempts the oldest one not connected this long after its answer", durationFlag(func(c *Config) *time.Duration { return &c.UnprovenGrace }, 100*time.Millisecond, time.Hour)},
	{"no-publisher-timeout", "60s", "close a connected viewer that has had no publisher to receive from for this long", durationFlag(func(c *Config) *time.Duration { return &c.NoPublisherTimeout }, time.Second, 24*time.Hour)},
	{"log-format", "text", "log format: text or json", func(c *Config, v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("must be text or json")
		}
		c.LogFormat = v
		return nil
	}},
	{"log-level", "info", "log level: debug, info, warn or error", func(c *Config, v string) error {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("must be debug, info, warn or error")
		}
		return nil
	}},
	{"ice-tcp", "true", "also offer media over ICE-TCP on the HTTP port, for clients whose network blocks UDP (ranked below UDP)", func(c *Config, v string) (err error) {
		if c.ICETCP, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("must be true or false")
		}
		return nil
	}},
	{"public-http-port", "", "public TCP port the router or tunnel forwards to --http-addr's port, advertised for ICE-TCP (default: the same number)", func(c *Config, v string) error {
		c.PublicHTTPPort = 0
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("must be a port from 1 to 65535")
		}
		c.PublicHTTPPort = n
		return nil
	}},
}, authAndLimitFlags...)

func durationFlag(field func(*Config) *time.Duration, lo, hi time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("must be a duration from %v to %v, e.g. 30s", lo, hi)
		}
		*field(c) = d
		return nil
	}
}

// envName is the environment twin of a flag.
func envName(flagName string) string {
	return "PINHOLE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// errHelp is returned by parseConfig when --help was asked for.
var errHelp = flag.ErrHelp

// parseConfig reads flags from args, falling back to PINHOLE_* variables
// from getenv and then to the defaults. Errors name the flag or variable in
// one line. usage receives the --help text.
func parseConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet("pinhole", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := map[string]*string{}
	for _, f := range flagSpecs {
		if f.isBool() {
			b := &boolValue{}
			fs.Var(b, f.name, "")
			values[f.name] = &b.v
			continue
		}
		values[f.name] = fs.String(f.name, "", "")
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(usage)
			return cfg, errHelp
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		// "--auto-create-rooms false": a switch takes its value after "=".
		if i := len(args) - fs.NArg(); i > 0 {
			prev := strings.TrimLeft(args[i-1], "-")
			for _, f := range flagSpecs {
				if f.name == prev && f.isBool() {
					return cfg, fmt.Errorf("--%s is a switch: write --%s=%s (a bare --%s means true)", f.name, f.name, fs.Arg(0), f.name)
				}
			}
		}
		return cfg, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, f := range flagSpecs {
		v, origin := f.def, "default of --"+f.name
		if ev := getenv(envName(f.name)); ev != "" {
			v, origin = ev, envName(f.name)
		}
		if given[f.name] {
			v, origin = *values[f.name], "--"+f.name
		}
		if err := f.set(&cfg, v); err != nil {
			return cfg, fmt.Errorf("%s=%q: %v", origin, v, err)
		}
	}
	if len(cfg.PublicPorts) > 0 && len(cfg.PublicPorts) != len(cfg.UDPPorts) {
		return cfg, fmt.Errorf("--public-ports has %d ports but --udp-ports has %d: they map one to one", len(cfg.PublicPorts), len(cfg.UDPPorts))
	}
	return cfg, nil
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: pinhole [flags]\n\nEvery flag can also be set by its PINHOLE_* environment variable; a flag wins.\n\n")
	for _, f := range flagSpecs {
		def := f.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s (env %s, default %s)\n    \t%s\n", f.name, envName(f.name), def, f.usage)
	}
}

// splitList splits a comma-separated list, dropping empty entries.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parsePorts parses "10111-10115" or "10111,10113-10114" into ports, in
// order, refusing duplicates and values outside 1-65535.
func parsePorts(v string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range splitList(v) {
		loS, hiS, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(strings.TrimSpace(loS))
		if err != nil {
			return nil, fmt.Errorf("%q is not a port or a range like 10111-10115", part)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(strings.TrimSpace(hiS)); err != nil {
				return nil, fmt.Errorf("%q is not a range like 10111-10115", part)
			}
		}
		if lo < 1 || hi > 65535 || lo > hi {
			return nil, fmt.Errorf("%q: ports must be 1-65535 and the range ascending", part)
		}
		if len(out)+hi-lo+1 > maxPorts {
			return nil, fmt.Errorf("more than %d ports", maxPorts)
		}
		for p := lo; p <= hi; p++ {
			if seen[p] {
				return nil, fmt.Errorf("port %d is listed twice", p)
			}
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// authAndLimitFlags are the admin token and the limits: the integer
// limits come from the one table handlers.LimitSpecs, which also gives
// handlers their defaults.
var authAndLimitFlags = append(append([]flagSpec{
	{"admin-token", "", "bearer token required by the management API (create/delete rooms, end sessions, diagnostics probes); empty: open", func(c *Config, v string) error {
		// Never echoed in an error: parseConfig prints the offending value.
		c.AdminToken = strings.TrimSpace(v)
		return nil
	}},
	{"admin-token-file", "", "file holding the admin token (first line), instead of --admin-token", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if c.AdminToken != "" {
			return errors.New("set --admin-token or --admin-token-file, not both")
		}
		f, err := os.Open(v)
		if err != nil {
			return fmt.Errorf("cannot read the token file: %v", errors.Unwrap(err))
		}
		defer f.Close()
		// A token is a line; 4 KiB is plenty and stops a mistaken path
		// (a log, /dev/zero) from being read whole.
		b, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return fmt.Errorf("cannot read the token file: %v", errors.Unwrap(err))
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if c.AdminToken = strings.TrimSpace(line); c.AdminToken == "" {
			return errors.New("the token file's first line is empty")
		}
		return nil
	}},
	rateFlag("resource-rate", handlers.DefaultResourceRate, "PATCH and DELETE requests on session URLs one client address may send per second (429 beyond)", func(c *Config, f float64) { c.Limits.ResourceRate = f }),
	rateFlag("probe-rate", handlers.DefaultProbeRate, "STUN/TURN probes and self-tests one client address may run per second, bursts of 4 (429 beyond)", func(c *Config, f float64) { c.Limits.ProbeRate = f }),
	rateFlag("session-rate", handlers.DefaultSessionRate, "sessions one client address may create per second (429 with Retry-After beyond)", func(c *Config, f float64) { c.Limits.SessionRate = f }),
}, limitFlags()...), edgeFlags...)

// edgeFlags are who pinhole believes and how it is reached: the admin
// token's keeping, probes, PROXY protocol, trusted proxies, TLS, hosts,
// connections, TURN credentials.
var edgeFlags = []flagSpec{
	{"state-dir", "", "directory where pinhole keeps the admin token it makes when none is given (default: the user's config directory, e.g. ~/.config/pinhole)", func(c *Config, v string) error {
		c.StateDir = v
		return nil
	}},
	boolFlag("insecure-open-api", false, "let ANYONE call every route as the admin, with no token: for a lab network only", func(c *Config, b bool) { c.OpenAPI = b }),
	prefixFlag("probe-allow", "", "prefixes (CIDR or address) the STUN/TURN probes may reach although loopback, private, link-local or metadata; the configured --ice-servers are always allowed", func(c *Config, p []netip.Prefix) { c.ProbeAllow = p }),
	boolFlag("proxy-protocol", false, "expect a PROXY protocol v1/v2 header from --proxy-upstreams on the HTTP port (FRP: transport.proxyProtocolVersion = \"v2\"), so limits see each client's address", func(c *Config, b bool) { c.ProxyProtocol = b }),
	prefixFlag("proxy-upstreams", "127.0.0.0/8,::1/128", "peers that must send the PROXY header when --proxy-protocol is on (where frpc runs)", func(c *Config, p []netip.Prefix) { c.ProxyUpstreams = p }),
	prefixFlag("trusted-proxies", "", "reverse proxies whose X-Forwarded-For (or Forwarded, --forwarded-header) names the client; nobody else's is read", func(c *Config, p []netip.Prefix) { c.TrustedProxies = p }),
	{"forwarded-header", "x-forwarded-for", "the header --trusted-proxies write: x-forwarded-for or forwarded (RFC 7239)", func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "x-forwarded-for":
			c.ForwardedHeader = false
		case "forwarded":
			c.ForwardedHeader = true
		default:
			return errors.New("must be x-forwarded-for or forwarded")
		}
		return nil
	}},
	{"tls-cert", "", "PEM certificate (chain) for HTTPS on --http-addr; reloaded on SIGHUP", func(c *Config, v string) error { c.TLSCert = v; return nil }},
	{"tls-key", "", "PEM private key of --tls-cert", func(c *Config, v string) error { c.TLSKey = v; return nil }},
	boolFlag("tls-self-signed", false, "serve HTTPS with a certificate made at start (its SHA-256 fingerprints are logged), for browsers on other machines without a CA-signed one", func(c *Config, b bool) { c.TLSSelfSigned = b }),
	{"allowed-hosts", "", "Host header values pinhole answers (DNS rebinding guard), comma separated; localhost always; empty: any", func(c *Config, v string) error {
		c.AllowedHosts = splitList(v)
		return nil
	}},
	{"room-idle-timeout", "5m", "delete a room WHIP/WHEP created on the fly after it had no live session this long (rooms the admin made stay)", durationFlag(func(c *Config) *time.Duration { return &c.RoomIdleTimeout }, time.Second, 30*24*time.Hour)},
	intFlag("max-conns", 1024, 16, 1_000_000, "most open HTTP connections; beyond it new ones are closed at once", func(c *Config, n int) { c.MaxConns = n }),
	{"turn-secret", "", "shared secret of a TURN server in REST mode (coturn use-auth-secret): TURN servers of --ice-servers get time-limited credentials per client", func(c *Config, v string) error {
		c.TURNSecret = strings.TrimSpace(v)
		return nil
	}},
	{"turn-ttl", "12h", "how long --turn-secret credentials are valid: longer than a session lasts, since a TURN allocation is refreshed with them", durationFlag(func(c *Config) *time.Duration { return &c.TURNTTL }, time.Minute, 7*24*time.Hour)},
	boolFlag("share-ice-credentials", false, "hand the static TURN credentials of --ice-servers to every client allowed into a room (without it, TURN servers with static credentials are not advertised)", func(c *Config, b bool) { c.ShareICECredentials = b }),
}

// rateFlag is a flag holding a rate per second from 0.01 to 10000.
func rateFlag(name string, def float64, usage string, set func(*Config, float64)) flagSpec {
	return flagSpec{name, strconv.FormatFloat(def, 'g', -1, 64), usage, func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		// Written so NaN fails too.
		if err != nil || !(f >= 0.01 && f <= 10000) {
			return errors.New("must be a number from 0.01 to 10000")
		}
		set(c, f)
		return nil
	}}
}

// boolFlag is a flag holding true or false.
func boolFlag(name string, def bool, usage string, set func(*Config, bool)) flagSpec {
	return flagSpec{name, strconv.FormatBool(def), usage, func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		set(c, b)
		return nil
	}}
}

// prefixFlag is a flag holding a comma-separated list of CIDR prefixes or
// addresses (an address is its /32 or /128).
func prefixFlag(name, def, usage string, set func(*Config, []netip.Prefix)) flagSpec {
	return flagSpec{name, def, usage, func(c *Config, v string) error {
		var out []netip.Prefix
		for _, s := range splitList(v) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("%q is not a CIDR prefix or an address", s)
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			out = append(out, p.Masked())
		}
		set(c, out)
		return nil
	}}
}

// limitFlags makes a flag of each entry of handlers.LimitSpecs.
func limitFlags() []flagSpec {
	out := make([]flagSpec, 0, len(handlers.LimitSpecs))
	for _, sp := range handlers.LimitSpecs {
		out = append(out, intFlag(sp.Flag, sp.Default, sp.Min, sp.Max, sp.Usage, func(c *Config, n int) { *sp.Field(&c.Limits) = n }))
	}
	return out
}

// intFlag is a flag holding an integer from lo to hi.
func intFlag(name string, def, lo, hi int, usage string, set func(*Config, int)) flagSpec {
	return flagSpec{name, strconv.Itoa(def), usage, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
		}
		set(c, n)
		return nil
	}}
}

// announceAuth says in one line at start whether the admin routes are
// open, so that running without a token is a choice, not an accident.
func announceAuth(log *slog.Logger, cfg Config) {
	switch {
	case cfg.OpenAPI:
		log.Warn("pinhole is OPEN (--insecure-open-api): anyone who reaches the HTTP port can list and end sessions, create and delete rooms and run probes")
	case cfg.AdminToken == "":
		log.Warn("no admin token: the admin routes are refused to everyone (set --admin-token or --admin-token-file)")
	case len(cfg.AdminToken) < 16:
		log.Warn("the admin token is shorter than 16 characters: easy to guess")
	default:
		log.Info("admin routes require the admin token")
	}
}

// ensureAdminToken gives cfg an admin token when none was configured:
// the one pinhole made at an earlier start, kept in dir, or a new one
// written there (0600, in a 0700 directory: only pinhole's user can read
// it). It returns the file it used ("" when a token was configured or the
// API is open).
func ensureAdminToken(cfg *Config, dir string) (string, error) {
	if cfg.AdminToken != "" || cfg.OpenAPI {
		return "", nil
	}
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("no --admin-token and nowhere to keep one (%v): set --admin-token-file or --state-dir", err)
		}
		dir = filepath.Join(base, "pinhole")
	}
	file := filepath.Join(dir, "admin-token")
	if b, err := os.ReadFile(file); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if cfg.AdminToken = strings.TrimSpace(line); cfg.AdminToken != "" {
			return file, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("--state-dir: %w", err)
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	cfg.AdminToken = base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.WriteFile(file, []byte(cfg.AdminToken+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("--state-dir: %w", err)
	}
	return file, nil
}
