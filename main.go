// Command pinhole is a WebRTC server for a media box behind NAT: WHIP
// publishers and WHEP viewers meet in rooms, and every peer connection is
// bound to one UDP port leased from a small range that a router or FRP
// tunnel forwards, with the public address advertised in the SDP answer. No
// STUN or TURN server is needed.
//
//	@title						pinhole
//	@version					1.0
//	@description				WHIP/WHEP WebRTC server with rooms and leased, mapped UDP ports. Errors are application/problem+json (RFC 9457).
//	@license.name				MIT
//	@BasePath					/
//	@securityDefinitions.apikey	BearerToken
//	@in							header
//	@name						Authorization
//	@description				"Bearer <room token>" for protected rooms.
//	@securityDefinitions.apikey	AdminToken
//	@in							header
//	@name						Authorization
//	@description				"Bearer <admin token>" (--admin-token) for the management routes: create and delete rooms, end sessions, diagnostics probes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
	"github.com/pinhole-rtc/pinhole/web"
)

// Config is everything pinhole reads from flags and PINHOLE_* variables.
type Config struct {
	HTTPAddr        string
	UDPPorts        []int
	PublicIPs       []string
	PublicPorts     []int
	BindIP          string
	PeersPerPort    int
	ICEServers      []handlers.ICEServer
	CORSOrigins     []string
	AutoCreateRooms bool
	SetupTimeout    time.Duration
	// ICE timeouts tell how fast a vanished client is noticed.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
	ICEKeepalive           time.Duration
	IdleTimeout            time.Duration
	LogFormat              string
	LogLevel               slog.Level
	// AdminToken guards the management API; Limits bound requests
	// (main_hardening.go).
	AdminToken string
	Limits     handlers.Limits
}

// shutdownTimeout bounds graceful shutdown: issue 2 asks for exit within 5 s.
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
			srv, err := handlers.ParseICEServer(s)
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
}, hardeningFlags...)

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

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stdout)
	if errors.Is(err, errHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, newLogger(cfg, os.Stderr), nil); err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down: stop accepting HTTP, close
// every peer (freeing leases), record the last events. ready, when set,
// receives the HTTP address once listening (tests use it).
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	st := store.NewMemory(store.MemoryOptions{})
	rec := handlers.NewRecorder(st, log)
	defer rec.Close()
	metrics, err := handlers.NewMetrics(nil, st, handlers.DiagnosisOptions{})
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	engine, err := media.NewEngine(media.Config{
		Ports:                  cfg.UDPPorts,
		PublicPorts:            cfg.PublicPorts,
		PublicIPs:              cfg.PublicIPs,
		BindIP:                 cfg.BindIP,
		PeersPerPort:           cfg.PeersPerPort,
		SetupTimeout:           cfg.SetupTimeout,
		ICEDisconnectedTimeout: cfg.ICEDisconnectedTimeout,
		ICEFailedTimeout:       cfg.ICEFailedTimeout,
		ICEKeepalive:           cfg.ICEKeepalive,
		IdleTimeout:            cfg.IdleTimeout,
		Logger:                 log,
	}, func(ev media.Event) { rec.OnEvent(ev); metrics.Observe(ev) })
	if err != nil {
		return fmt.Errorf("--udp-ports: %w", err)
	}
	metrics.SetEngine(engine)
	diag := handlers.NewDiagnostics(handlers.DiagnosticsDeps{
		Store: st, Engine: engine, Recorder: rec, Logger: log, Metrics: metrics,
		Config: handlers.DiagnosticsConfig{
			PublicIPs: cfg.PublicIPs, UDPPorts: cfg.UDPPorts, PublicPorts: cfg.PublicPorts,
			BindIP: cfg.BindIP, ICEServers: cfg.ICEServers,
		},
	})
	engineClosed := false
	closeEngine := func() {
		if !engineClosed {
			engineClosed = true
			if err := engine.Close(); err != nil {
				log.Warn("closing media engine", "err", err)
			}
		}
	}
	defer closeEngine()

	h := handlers.New(handlers.Deps{
		Store:    st,
		Engine:   engine,
		Recorder: rec,
		Logger:   log,
		Web:      web.Handler(),
		Mount:    diag.Mount, // diagnostics API and /metrics
		Config: handlersAuth(cfg, handlers.Config{
			ICEServers:      cfg.ICEServers,
			CORSOrigins:     cfg.CORSOrigins,
			AutoCreateRooms: cfg.AutoCreateRooms,
			PeersPerPort:    cfg.PeersPerPort,
		}),
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second, // slowloris guard; WHIP bodies are small
		// A body trickled in slower than this is cut off: the largest one
		// is a 64 KiB offer, and each stalled read holds a goroutine.
		ReadTimeout: 30 * time.Second,
		// Keep-alive connections nobody uses are closed, so idle clients
		// cannot pile up file descriptors.
		IdleTimeout: 2 * time.Minute,
		// Real requests carry a few hundred bytes of headers; Go's default
		// (1 MiB) is memory a stranger can make the server hold.
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info("pinhole listening", "http", ln.Addr().String(), "udp_ports", portRange(cfg.UDPPorts),
		"public_ips", cfg.PublicIPs, "public_ports", portRange(cfg.PublicPorts), "peers_per_port", cfg.PeersPerPort)
	announceAuth(log, cfg)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Stop accepting and let in-flight requests finish, then end every peer
	// connection (the engine frees every lease), then record the last events.
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	closeEngine()
	rec.Close()
	log.Info("stopped")
	return nil
}

// portRange prints ports compactly for the start-up log.
func portRange(ports []int) string {
	if len(ports) == 0 {
		return ""
	}
	if ports[len(ports)-1]-ports[0] == len(ports)-1 {
		return fmt.Sprintf("%d-%d", ports[0], ports[len(ports)-1])
	}
	return fmt.Sprint(ports)
}
