package diagnostics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// Config is what the diagnostics need to know about the
// deployment beyond the engine: main fills it from the same flags.
type Config struct {
	// PublicIPs, UDPPorts, PublicPorts and BindIP are the --public-ip,
	// --udp-ports, --public-ports and bind settings the engine runs with.
	PublicIPs   []string
	UDPPorts    []int
	PublicPorts []int
	BindIP      string
	// ICEServers are the configured STUN/TURN servers; the report probes
	// each, and probes of them are always allowed.
	ICEServers []api.ICEServer
	// ProbeAllow are the prefixes (--probe-allow) probes may reach although
	// they are loopback, private, link-local and the like (media.AddrPolicy).
	ProbeAllow []netip.Prefix
	// NoPacketAfter and NoMediaAfter tune the session verdicts (see
	// Options).
	NoPacketAfter, NoMediaAfter time.Duration
	// SelfTestIPs restricts the self-test client's candidates to these local
	// addresses; empty means every IPv4 address of the host. Tests set
	// 127.0.0.1 so nothing leaves loopback.
	SelfTestIPs []net.IP
	// Interfaces lists this host's addresses; nil means the real ones.
	Interfaces func() ([]netip.Addr, error)
	// UDPSockets lists the local UDP ports that have a bound socket; nil
	// means reading /proc/net/udp (Linux). It must not bind anything: a
	// bind test would race with a lease being made.
	UDPSockets func() (map[int]bool, error)
}

// Deps are the parts of pinhole the diagnostics read: the same objects the
// HTTP handlers use.
type Deps struct {
	Store    store.Store
	Engine   *media.Engine
	Sessions *record.Sessions
	Recorder *record.Recorder
	Logger   *slog.Logger
	Config   Config
}

// Diagnostics answers the diagnostics API: the server report, STUN and TURN
// probes, the self-test and per-session diagnoses. Its Handle* methods are
// mounted in the route table of package handlers, which declares who may
// call each and maps their errors to answers.
type Diagnostics struct {
	store    store.Store
	engine   *media.Engine
	sessions *record.Sessions
	rec      *record.Recorder
	log      *slog.Logger
	cfg      Config
	validate *api.Validator
	// selftest allows one self-test at a time: each holds a lease.
	selftest sync.Mutex
	// probes bounds concurrent STUN/TURN probes: each holds a socket for
	// up to its timeout, and the endpoint must not become a way to make
	// pinhole flood some host.
	probes chan struct{}
	// policy says where probes may send: never this host's own networks
	// unless --probe-allow says so, always the configured ICE servers.
	policy *media.AddrPolicy
	// ice caches the report's ICE-server probes.
	ice iceChecks
}

// maxConcurrentProbes is how many STUN/TURN probes run at once; a person
// checking a setup runs one or two.
const maxConcurrentProbes = 8

// New builds the diagnostics.
func New(d Deps) *Diagnostics {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg := d.Config
	if cfg.Interfaces == nil {
		cfg.Interfaces = hostAddrs
	}
	if cfg.UDPSockets == nil {
		cfg.UDPSockets = procUDPSockets
	}
	policy := &media.AddrPolicy{Allow: cfg.ProbeAllow}
	for _, srv := range cfg.ICEServers {
		policy.AlwaysAllowHosts = append(policy.AlwaysAllowHosts, iceServerHost(srv.URL))
	}
	for _, ip := range cfg.PublicIPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			policy.HostAddrs = append(policy.HostAddrs, a)
		}
	}
	return &Diagnostics{store: d.Store, engine: d.Engine, sessions: d.Sessions, rec: d.Recorder, log: log,
		cfg: cfg, validate: api.NewValidator(), probes: make(chan struct{}, maxConcurrentProbes), policy: policy}
}

// iceServerHost is the host[:port] of a stun:/turn: URI (RFC 7064, RFC
// 7065): the scheme and the query cut off.
func iceServerHost(url string) string {
	_, rest, _ := strings.Cut(url, ":")
	host, _, _ := strings.Cut(rest, "?")
	return host
}

// HandleDiagnosis answers GET /api/v1/sessions/{id}/diagnosis: the session's
// timeline and verdict, for live sessions and for ended ones the store
// still keeps.
//
//	@Summary	Session diagnosis: timeline and the first broken hop
//	@Tags		diagnostics
//	@Produce	json
//	@Param		id	path		string	true	"session id"
//	@Success	200	{object}	api.Diagnosis
//	@Failure	404	{object}	api.Problem
//	@Router		/api/v1/sessions/{id}/diagnosis [get]
func (d *Diagnostics) HandleDiagnosis(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if !record.ValidID(id) {
		return api.Errorf(http.StatusNotFound, "session not found")
	}
	s, err := d.store.GetSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, "session not found")
	}
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, Diagnose(s, d.diagOpts()))
}

func (d *Diagnostics) diagOpts() Options {
	return Options{NoPacketAfter: d.cfg.NoPacketAfter, NoMediaAfter: d.cfg.NoMediaAfter}
}

// HandleSTUN answers POST /api/v1/diagnostics/stun.
//
//	@Summary	Probe a STUN server (binding request; default timeout 5 s)
//	@Tags		diagnostics
//	@Accept		json
//	@Produce	json
//	@Param		body	body		api.STUNProbeRequest	true	"server"
//	@Success	200		{object}	api.STUNProbeResult
//	@Failure	400		{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Router		/api/v1/diagnostics/stun [post]
func (d *Diagnostics) HandleSTUN(w http.ResponseWriter, r *http.Request) error {
	var req api.STUNProbeRequest
	release, err := d.startProbe(w, r, &req)
	if err != nil {
		return err
	}
	defer release()
	res := media.RunSTUNProbe(r.Context(), media.STUNProbe{URL: req.URL, Timeout: time.Duration(req.TimeoutMillis) * time.Millisecond, Policy: d.policy})
	res = stunOutcome(res)
	d.logProbe(r, "stun", res.Class, res.Cause)
	return api.WriteJSON(w, http.StatusOK, stunResult(res))
}

// HandleTURN answers POST /api/v1/diagnostics/turn.
//
//	@Summary	Probe a TURN server (allocation; default timeout 8 s)
//	@Tags		diagnostics
//	@Accept		json
//	@Produce	json
//	@Param		body	body		api.TURNProbeRequest	true	"server and credentials"
//	@Success	200		{object}	api.TURNProbeResult
//	@Failure	400		{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Router		/api/v1/diagnostics/turn [post]
func (d *Diagnostics) HandleTURN(w http.ResponseWriter, r *http.Request) error {
	var req api.TURNProbeRequest
	release, err := d.startProbe(w, r, &req)
	if err != nil {
		return err
	}
	defer release()
	res := media.ProbeTURN(r.Context(), media.TURNProbe{URL: req.URL, Username: req.Username, Credential: req.Credential, Policy: d.policy,
		Timeout: time.Duration(req.TimeoutMillis) * time.Millisecond})
	res = turnOutcome(res)
	d.logProbe(r, "turn", res.Class, res.Cause)
	return api.WriteJSON(w, http.StatusOK, turnResult(res))
}

// logProbe logs a failed probe's underlying error, which the answer never
// carries (it could name internal hosts and services).
func (d *Diagnostics) logProbe(r *http.Request, kind string, class media.ProbeClass, cause error) {
	if cause != nil {
		d.log.InfoContext(r.Context(), "probe failed", "kind", kind, "class", class, "err", cause)
	}
}

// startProbe decodes a probe request into req and takes a probe slot.
func (d *Diagnostics) startProbe(w http.ResponseWriter, r *http.Request, req any) (release func(), err error) {
	if err := api.DecodeJSON(w, r, d.validate, req); err != nil {
		return nil, err
	}
	return d.acquireProbe()
}

// acquireProbe takes a probe slot or answers 429.
func (d *Diagnostics) acquireProbe() (func(), error) {
	select {
	case d.probes <- struct{}{}:
		return func() { <-d.probes }, nil
	default:
		return nil, api.Errorf(http.StatusTooManyRequests, "%d probes are running; retry when one ends", maxConcurrentProbes).
			WithHeader("Retry-After", "8")
	}
}

func stunResult(r media.STUNResult) api.STUNProbeResult {
	res := api.STUNProbeResult{URL: r.URL, Server: r.Server, Reachable: r.Reachable, MappedAddr: r.MappedAddr,
		LocalAddr: r.LocalAddr, RTTMillis: r.RTTMillis, Class: string(r.Class), Error: r.Error, Fix: r.Fix}
	if !r.Reachable {
		res.Verdict = probeVerdict("stun", r.URL, r.Server, string(r.Class), r.Error, r.Fix)
	}
	return res
}

func turnResult(r media.TURNResult) api.TURNProbeResult {
	res := api.TURNProbeResult{URL: r.URL, Server: r.Server, Transport: r.Transport, Allocated: r.Allocated,
		RelayedAddr: r.RelayedAddr, MappedAddr: r.MappedAddr, RTTMillis: r.RTTMillis, ErrorCode: r.ErrorCode,
		Class: string(r.Class), Error: r.Error, Fix: r.Fix}
	if !r.Allocated {
		res.Verdict = probeVerdict("turn", r.URL, r.Server, string(r.Class), r.Error, r.Fix)
		if r.ErrorCode != 0 {
			res.Verdict.Evidence = append(res.Verdict.Evidence, fmt.Sprintf("STUN error code %d", r.ErrorCode))
		}
	}
	return res
}

// probeVerdict states a failed probe in the vocabulary of session
// verdicts: id "<kind>-<class>" ("turn-timeout", "turn-auth-refused",
// "stun-timeout", ...), hop ice-server.
func probeVerdict(kind, url, server, class, msg, fix string) *api.Verdict {
	id := kind + "-" + class
	head := fmt.Sprintf("%s server %s: %s", strings.ToUpper(kind), url, msg)
	ev := []string{"probe of " + url, "class " + class + ": " + msg}
	if server != "" {
		ev = append(ev, "server address "+server)
	}
	return &api.Verdict{ID: id, Code: id, Status: api.StatusFail, Hop: HopICEServer, Headline: head, Summary: head, Evidence: ev, Fix: fix}
}

// retransmissionsFailed is how pion/turn's client ends a transaction no
// answer came to (7 requests over about 7.8 s, errAllRetransmissionsFailed,
// unexported): a timeout, whichever of it and the probe's own deadline
// comes first.
const retransmissionsFailed = "all retransmissions failed"

// turnOutcome classifies a TURN server that never answered as a timeout
// (with the timeout's fix: firewall, ?transport=tcp, turns:) even when
// pion/turn's retransmissions gave up before the probe's deadline.
func turnOutcome(r media.TURNResult) media.TURNResult {
	if r.Class == media.ProbeOther && r.ErrorCode == 0 && r.Cause != nil && strings.Contains(r.Cause.Error(), retransmissionsFailed) {
		r.Class = media.ProbeTimeout
		r.Error = "no answer within the timeout"
		r.Fix = "no answer from the TURN server: check the host and port, that the server runs, and that UDP to it is not blocked by a firewall " +
			"(corporate networks often block UDP; try turn: with ?transport=tcp or turns: on 443)"
	}
	return r
}

// stunOutcome does the same for STUN probes.
func stunOutcome(r media.STUNResult) media.STUNResult {
	if r.Class == media.ProbeOther && r.Cause != nil && strings.Contains(r.Cause.Error(), retransmissionsFailed) {
		r.Class = media.ProbeTimeout
		r.Error = "no answer within the timeout"
	}
	return r
}

// HandleReport answers GET /api/v1/diagnostics. ?probes=false skips the
// STUN/TURN probes (they take up to 8 s when a server does not answer).
//
//	@Summary	Server report: configuration sanity, ports, ICE servers
//	@Tags		diagnostics
//	@Produce	json
//	@Param		probes	query		bool	false	"probe the configured ICE servers (default true)"
//	@Success	200		{object}	api.DiagnosticsReport
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong"
//	@Router		/api/v1/diagnostics [get]
func (d *Diagnostics) HandleReport(w http.ResponseWriter, r *http.Request) error {
	probes := true
	if v := r.URL.Query().Get("probes"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return api.Invalid(api.FieldError{Field: "probes", Message: "must be true or false"})
		}
		probes = b
	}
	return api.WriteJSON(w, http.StatusOK, d.Report(r.Context(), probes))
}

// Report runs the server checks.
func (d *Diagnostics) Report(ctx context.Context, probes bool) api.DiagnosticsReport {
	rep := api.DiagnosticsReport{GeneratedAt: time.Now().UTC(), Interfaces: []string{}}
	addrs, err := d.cfg.Interfaces()
	if err != nil {
		d.log.Warn("listing interface addresses", "err", err)
	}
	for _, a := range addrs {
		rep.Interfaces = append(rep.Interfaces, a.String())
	}
	rep.Checks = append(rep.Checks, d.publicIPChecks(addrs)...)
	if c, ok := d.bindIPCheck(addrs); ok {
		rep.Checks = append(rep.Checks, c)
	}
	rep.Checks = append(rep.Checks, d.portRangeCheck())
	rep.Checks = append(rep.Checks, d.portChecks()...)
	if probes {
		rep.Checks = append(rep.Checks, d.probedICEServers(ctx)...)
	} else {
		rep.Checks = append(rep.Checks, d.iceServerChecks(ctx, false)...)
	}
	rep.Status = api.StatusOK
	for _, c := range rep.Checks {
		rep.Status = worse(rep.Status, c.Status)
	}
	return rep
}

func worse(a, b string) string {
	rank := map[string]int{api.StatusOK: 0, api.StatusWarn: 1, api.StatusFail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// publicIPChecks: is --public-ip set, and is it this host's address or one
// a NAT must forward?
func (d *Diagnostics) publicIPChecks(local []netip.Addr) []api.Check {
	if len(d.cfg.PublicIPs) == 0 {
		var pub []string
		for _, a := range local {
			if isPublic(a) {
				pub = append(pub, a.String())
			}
		}
		c := api.Check{ID: "public-ip", Name: "public IP configured", Status: api.StatusWarn,
			Seen: "no --public-ip: answers advertise this host's interface addresses (" + strings.Join(addrStrings(local), ", ") + ")",
			Fix:  "behind a router, NAT or tunnel (FRP), set --public-ip to the address clients reach and forward the UDP ports to this host"}
		if len(pub) > 0 {
			c.Status = api.StatusOK
			c.Seen = "no --public-ip; this host has the public address(es) " + strings.Join(pub, ", ") + ", which clients can reach directly"
			c.Fix = ""
		}
		return []api.Check{c}
	}
	var checks []api.Check
	for i, s := range d.cfg.PublicIPs {
		c := api.Check{ID: "public-ip-" + strconv.Itoa(i), Name: "public IP " + s}
		ip, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			c.Status, c.Seen, c.Fix = api.StatusFail, fmt.Sprintf("%q is not an IP address", s), "give --public-ip as an IPv4 address"
		case ip.IsUnspecified() || ip.IsMulticast():
			c.Status, c.Seen, c.Fix = api.StatusFail, s+" cannot be a candidate address", "give the address clients reach"
		case slices.Contains(local, ip.Unmap()):
			c.Status, c.Seen = api.StatusOK, s+" is an address of this host: clients reach it directly, no port mapping is involved"
			if ip.IsLoopback() {
				c.Status, c.Seen = api.StatusWarn, s+" is a loopback address: only clients on this host can connect"
				c.Fix = "use the address other machines reach, unless this is a local test"
			}
		case !isPublic(ip):
			c.Status = api.StatusWarn
			c.Seen = s + " is a private address but not one of this host: clients must be inside that private network, and a router there must forward the UDP ports to this host"
			c.Fix = "if clients come from the Internet, set --public-ip to the router's public address"
		default:
			c.Status = api.StatusOK
			c.Seen = s + " is not an address of this host: a NAT, port forward or tunnel must forward UDP from it to this host (the self-test checks that it does)"
		}
		checks = append(checks, c)
	}
	return checks
}

// bindIPCheck: a bind address must be one of this host's (pinhole binds
// leased ports there); reported only when one is set.
func (d *Diagnostics) bindIPCheck(local []netip.Addr) (api.Check, bool) {
	if d.cfg.BindIP == "" {
		return api.Check{}, false
	}
	c := api.Check{ID: "bind-ip", Name: "bind address " + d.cfg.BindIP}
	ip, err := netip.ParseAddr(d.cfg.BindIP)
	switch {
	case err != nil:
		c.Status, c.Seen, c.Fix = api.StatusFail, "not an IP address", "give the bind address as an IPv4 address of this host"
	case ip.IsUnspecified() || slices.Contains(local, ip.Unmap()):
		c.Status, c.Seen = api.StatusOK, "leased ports are bound on "+d.cfg.BindIP
	default:
		c.Status = api.StatusFail
		c.Seen = d.cfg.BindIP + " is not an address of this host: leased ports cannot be bound there"
		c.Fix = "bind to an address of this host (" + strings.Join(addrStrings(local), ", ") + ") or to all (leave it empty)"
	}
	return c, true
}

func isPublic(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsPrivate() && !a.IsLinkLocalUnicast() && !a.IsUnspecified() &&
		!netip.MustParsePrefix("100.64.0.0/10").Contains(a) // carrier-grade NAT
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

// portRangeCheck: do --public-ports and --udp-ports line up?
func (d *Diagnostics) portRangeCheck() api.Check {
	c := api.Check{ID: "port-ranges", Name: "public and local port ranges"}
	local, public := d.cfg.UDPPorts, d.cfg.PublicPorts
	switch {
	case len(local) == 0:
		c.Status, c.Seen, c.Fix = api.StatusFail, "no --udp-ports", "set --udp-ports, e.g. 10111-10115"
	case len(public) == 0:
		c.Status, c.Seen = api.StatusOK, fmt.Sprintf("public ports are the local ports %s: forward each public port to the same local port", media.FormatPorts(local))
	case len(public) != len(local):
		c.Status = api.StatusFail
		c.Seen = fmt.Sprintf("%d public ports (%s) for %d local ports (%s)", len(public), media.FormatPorts(public), len(local), media.FormatPorts(local))
		c.Fix = "give --public-ports exactly as many ports as --udp-ports, in the order the router pairs them"
	default:
		c.Status = api.StatusOK
		pairs := make([]string, len(local))
		for i := range local {
			pairs[i] = fmt.Sprintf("%d->%d", public[i], local[i])
		}
		c.Seen = "the router must forward public UDP " + strings.Join(pairs, ", ")
		if slices.Equal(local, public) {
			c.Seen = "public ports equal the local ports " + media.FormatPorts(local)
		}
	}
	return c
}

// portChecks: every port of the range is leased (and listening) or free to
// lease (no other socket bound to it). Nothing is bound here: a bind test
// could steal the port from a lease being made at the same moment.
func (d *Diagnostics) portChecks() []api.Check {
	if d.engine == nil {
		return nil
	}
	before := d.engine.Ports()
	bound, err := d.cfg.UDPSockets()
	after := d.engine.Ports()
	leased := map[int]media.PortStatus{}
	for _, ps := range [][]media.PortStatus{before, after} {
		for _, p := range ps {
			if p.Leased {
				leased[p.LocalPort] = p
			}
		}
	}
	free, total := d.engine.Capacity()
	checks := []api.Check{{ID: "leases", Name: "port leases", Status: api.StatusOK,
		Seen: fmt.Sprintf("%d of %d sessions can still be leased", free, total)}}
	if free == 0 {
		checks[0].Status = api.StatusWarn
		checks[0].Fix = "every port is leased: new sessions get 503 until one ends; add ports (--udp-ports, --public-ports) or raise --peers-per-port"
	}
	for _, p := range after {
		c := api.Check{ID: "port-" + strconv.Itoa(p.LocalPort), Name: fmt.Sprintf("UDP port %d", p.LocalPort)}
		pub := fmt.Sprintf("public port %d", p.PublicPort)
		if lp, ok := leased[p.LocalPort]; ok {
			ids := make([]string, 0, len(lp.Holders))
			for _, h := range lp.Holders {
				ids = append(ids, fmt.Sprintf("%s %s in %s", h.Role, short(h.SessionID), h.Room))
			}
			c.Status = api.StatusOK
			c.Seen = fmt.Sprintf("leased (%s), %s, %d packets received", strings.Join(ids, "; "), pub, lp.PacketsIn)
			if err == nil && !bound[p.LocalPort] {
				c.Status, c.Seen = api.StatusFail, c.Seen+"; but no socket is bound to it"
				c.Fix = "restart pinhole; report this as a bug"
			}
		} else {
			switch {
			case err != nil:
				c.Status, c.Seen = api.StatusOK, "free ("+pub+"); listening sockets unknown: "+err.Error()
			case bound[p.LocalPort]:
				c.Status = api.StatusFail
				c.Seen = "free in pinhole, but another socket is bound to UDP " + strconv.Itoa(p.LocalPort)
				c.Fix = fmt.Sprintf("another program uses UDP %d (see `ss -ulpn sport = :%d`): stop it or move --udp-ports", p.LocalPort, p.LocalPort)
			default:
				c.Status, c.Seen = api.StatusOK, "free and bindable ("+pub+"), bound when a session leases it"
			}
		}
		checks = append(checks, c)
	}
	return checks
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// iceServerChecks probes every configured STUN/TURN server concurrently.
// iceCheckTTL is how long probed ICE-server checks are reused: a TURN
// allocation per report would let anyone who can read reports make pinhole
// allocate on the operator's TURN server at will; a minute still shows a
// fix within a minute of it being made.
const iceCheckTTL = time.Minute

// iceChecks is the last probed ICE-server result and the probe running.
type iceChecks struct {
	mu      sync.Mutex
	at      time.Time
	checks  []api.Check
	running chan struct{} // closed when the probe in flight ends
}

// probedICEServers returns the ICE-server checks, probing at most once per
// iceCheckTTL and never twice at once: concurrent reports wait for the one
// probe in flight and share its result.
func (d *Diagnostics) probedICEServers(ctx context.Context) []api.Check {
	c := &d.ice
	c.mu.Lock()
	if c.checks != nil && time.Since(c.at) < iceCheckTTL {
		out := slices.Clone(c.checks)
		c.mu.Unlock()
		return out
	}
	if c.running == nil {
		c.running = make(chan struct{})
		go func() {
			// Detached from the request: a client that leaves does not
			// cancel the probe the others wait for.
			checks := d.iceServerChecks(context.WithoutCancel(ctx), true)
			c.mu.Lock()
			c.checks, c.at = checks, time.Now()
			close(c.running)
			c.running = nil
			c.mu.Unlock()
		}()
	}
	running := c.running
	c.mu.Unlock()
	select {
	case <-running:
	case <-ctx.Done():
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.checks)
}

func (d *Diagnostics) iceServerChecks(ctx context.Context, probes bool) []api.Check {
	if len(d.cfg.ICEServers) == 0 {
		return []api.Check{{ID: "ice-servers", Name: "ICE servers", Status: api.StatusWarn,
			Seen: "no --ice-servers: clients get no STUN/TURN server from pinhole",
			Fix:  "clients whose network blocks UDP to the mapped ports can only connect through TURN: add --ice-servers turn:user:secret@turn.example.org:3478"}}
	}
	checks := make([]api.Check, len(d.cfg.ICEServers))
	var wg sync.WaitGroup
	for i, srv := range d.cfg.ICEServers {
		c := &checks[i]
		c.ID, c.Name = "ice-server-"+strconv.Itoa(i), "ICE server "+srv.URL
		if !probes {
			c.Status, c.Seen = api.StatusOK, "configured (not probed)"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if strings.HasPrefix(srv.URL, "stun") {
				r := stunOutcome(media.RunSTUNProbe(ctx, media.STUNProbe{URL: srv.URL, Policy: d.policy}))
				c.Probe = stunResult(r)
				if r.Reachable {
					c.Status, c.Seen = api.StatusOK, fmt.Sprintf("answered in %.0f ms; it sees this host as %s", r.RTTMillis, r.MappedAddr)
				} else {
					c.Status, c.Seen, c.Fix = api.StatusFail, fmt.Sprintf("%s: %s", r.Class, r.Error), r.Fix
				}
				return
			}
			r := turnOutcome(media.ProbeTURN(ctx, media.TURNProbe{URL: srv.URL, Username: srv.Username, Credential: srv.Credential, Policy: d.policy}))
			c.Probe = turnResult(r)
			if r.Allocated {
				c.Status, c.Seen = api.StatusOK, fmt.Sprintf("relay %s allocated in %.0f ms", r.RelayedAddr, r.RTTMillis)
			} else {
				c.Status, c.Seen, c.Fix = api.StatusFail, fmt.Sprintf("%s: %s", r.Class, r.Error), r.Fix
			}
		}()
	}
	wg.Wait()
	return checks
}

// hostAddrs lists this host's interface addresses.
func hostAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// procUDPSockets reads the local ports of bound UDP sockets from
// /proc/net/udp and /proc/net/udp6.
func procUDPSockets() (map[int]bool, error) {
	ports := map[int]bool{}
	read := 0
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		read++
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				ports[int(p)] = true
			}
		}
		_ = fh.Close()
	}
	if read == 0 {
		return nil, errors.New("/proc/net/udp is not readable")
	}
	return ports, nil
}
