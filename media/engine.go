package media

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// gatherTimeout bounds ICE gathering for an answer. With a UDP mux and only
// host candidates gathering is immediate; the bound only guards against a
// wedged agent holding a request (and its lease) forever.
const gatherTimeout = 5 * time.Second

// counterInterval is how often live sessions report their media totals.
const counterInterval = time.Second

// Engine is the media plane: the port pool, one session per peer
// connection, the room hubs. Construct with NewEngine, stop with Close.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	onEvent func(Event)
	pool    *portPool

	// Built once at start: the codecs, the interceptor factories (each peer
	// connection builds its own interceptor instances from them) and the
	// DTLS certificate, so an answer does no key generation. Publishers and
	// viewers get different interceptors: see newMediaEngine.
	mediaEngine  *webrtc.MediaEngine
	pubRegistry  *interceptor.Registry
	viewRegistry *interceptor.Registry
	cert         webrtc.Certificate
	loggers      *slogLoggerFactory
	ifaces       *stdnet.Net
	host         *hostAddrs                   // this host's addresses, for candidate filtering
	tcp          atomic.Pointer[tcpTransport] // ICE-TCP on the HTTP port; nil when off (tcp.go)

	mu       sync.Mutex
	sessions map[string]*session
	hubs     map[string]*hub
	closed   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewEngine builds the media engine: the shared media engine, the port pool
// (every port is checked bindable, so a port in use fails here), and room
// hubs. onEvent may be nil; it is called from Pion goroutines and must not
// block for long.
func NewEngine(cfg Config, onEvent func(Event)) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PeersPerPort < 1 {
		cfg.PeersPerPort = 1
	}
	if cfg.MaxCandidates <= 0 {
		cfg.MaxCandidates = DefaultMaxCandidates
	}
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	loggers := &slogLoggerFactory{log: cfg.Logger.With("component", "pion")}
	// The interface list is read once here and shared (read-only) by every
	// lease's mux and every ICE agent: enumerating interfaces over netlink
	// took a quarter of the CPU time of an answer, twice per session.
	// Addresses are rewritten to PublicIPs anyway; an interface that appears
	// later needs a restart to be announced.
	ifaces, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	pool, err := newPortPool(portPoolConfig{
		Ports: cfg.Ports, PublicPorts: cfg.PublicPorts, PublicIPs: cfg.PublicIPs,
		BindIP: cfg.BindIP, PeersPerPort: cfg.PeersPerPort, Logger: cfg.Logger, LoggerFactory: loggers,
		Net: ifaces,
	})
	if err != nil {
		return nil, err
	}
	me, pubReg, viewReg, err := newMediaEngine()
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, log: cfg.Logger, onEvent: onEvent, pool: pool,
		mediaEngine: me, pubRegistry: pubReg, viewRegistry: viewReg, cert: *cert, loggers: loggers, ifaces: ifaces,
		host:     newHostAddrs(ifaces, cfg.PublicIPs),
		sessions: map[string]*session{}, hubs: map[string]*hub{},
		ctx: ctx, cancel: cancel,
	}
	e.wg.Add(1)
	go e.tick()
	return e, nil
}

// newMediaEngine registers the forwarded codecs and the feedback pinhole
// uses: NACK (retransmissions both ways), PLI, transport-cc from publishers
// (so browsers' bandwidth estimation ramps up), RTCP reports.
//
// Publishers get the NACK generator (pinhole asks them for what it lost),
// transport-cc feedback and reports. Viewers get reports only: pinhole
// answers their NACKs itself from each publisher track's shared history
// (history.go) instead of Pion's responder, which keeps a copy of every
// packet per viewer.
//
// No RTX is negotiated, in either direction. pinhole resends a viewer's
// lost packets on the stream itself (sinkTrack.retransmit), and a publisher
// without RTX resends on its media SSRC too (RFC 4588 is optional; libwebrtc
// does so when RTX is not answered). With RTX answered, libwebrtc probes the
// bandwidth at a call's start with RTX copies of packets it has sent, which
// Pion hands back as the original packets: each went to every viewer a
// second time, and a copy that reached Pion before the track's first packet
// was read came back with payload type 0, so the track never started and
// its viewers got no video (TestRTXProbingPublisher). Without RTX the same
// probes are padding, which the forwarder skips, and Pion matches half the
// codecs per answer (see forwardedCodecs).
func newMediaEngine() (me *webrtc.MediaEngine, pubReg, viewReg *interceptor.Registry, err error) {
	me = &webrtc.MediaEngine{}
	if err := registerForwardedCodecs(me); err != nil {
		return nil, nil, nil, err
	}
	pubReg = &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, pubReg); err != nil {
		return nil, nil, nil, err
	}
	if err := webrtc.ConfigureRTCPReports(pubReg); err != nil {
		return nil, nil, nil, err
	}
	if err := webrtc.ConfigureTWCCSender(me, pubReg); err != nil {
		return nil, nil, nil, err
	}
	viewReg = &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(viewReg); err != nil {
		return nil, nil, nil, err
	}
	// Make sure the factories used are the ones expected (keeps the import
	// list honest when Pion changes what Configure* registers).
	var _ interceptor.Factory = (*nack.GeneratorInterceptorFactory)(nil)
	var _ interceptor.Factory = (*report.SenderInterceptorFactory)(nil)
	var _ interceptor.Factory = (*twcc.SenderInterceptorFactory)(nil)
	return me, pubReg, viewReg, nil
}

// videoFeedback is what every forwarded video codec is offered with, as in
// Pion's defaults: REMB, FIR, NACK, PLI (ConfigureNack and ConfigureTWCCSender
// add to it).
var videoFeedback = []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}

// forwardedCodecs are the codecs pinhole forwards (forwarded in sdp.go) with
// Pion's default payload types, without their RTX (newMediaEngine). This
// is RegisterDefaultCodecs less what pinhole never forwards: G.722, PCMU,
// PCMA, H.264 in packetization-mode 0 and H.265. The offer is pruned of
// those already (pruneMedia), but Pion matches each offered codec against
// every registered one, re-parsing both fmtp lines each time
// (MediaEngine.matchRemoteCodec, codecParametersFuzzySearch): with 27
// registered video entries that was most of SetRemoteDescription's CPU.
// 9 are left; the answers to every client
// offer fixture keep their codecs and payload types
// (TestPrunedOfferSameAnswer, TestClientOfferFixtures).
var forwardedCodecs = []struct {
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecParameters
}{
	{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeVP8, "", 96)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 106)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 127)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeAV1, "", 45)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeVP9, "profile-id=0", 98)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeVP9, "profile-id=2", 100)},
	{webrtc.RTPCodecTypeVideo, videoCodec(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f", 112)},
}

func videoCodec(mime, fmtp string, pt webrtc.PayloadType) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: slices.Clone(videoFeedback)},
		PayloadType:        pt,
	}
}

func registerForwardedCodecs(me *webrtc.MediaEngine) error {
	for _, c := range forwardedCodecs {
		if err := me.RegisterCodec(c.codec, c.kind); err != nil {
			return err
		}
	}
	return nil
}

// leaseAPIs caches, per port mux, the Pion API of each role: the
// SettingEngine (which names the mux) and the API around it are the same
// for every session on that mux, so they are built at its first session
// rather than at every one. A port's mux lives as long as it has holders
// (all sessions with --peers-per-port above 1); with one peer per port a
// mux serves one session, and the cache saves nothing there.
type leaseAPIs struct {
	once [2]sync.Once
	api  [2]*webrtc.API
	err  [2]error
}

// apiFor returns the Pion API for a session of role on lease l.
func (e *Engine) apiFor(l *portLease, role Role) (*webrtc.API, error) {
	i, me, reg := 0, e.mediaEngine, e.pubRegistry
	if role == RoleViewer {
		i, reg = 1, e.viewRegistry
	}
	build := func() (*webrtc.API, error) {
		se, err := e.settingEngine(l)
		if err != nil {
			return nil, err
		}
		return webrtc.NewAPI(
			webrtc.WithMediaEngine(me),
			webrtc.WithInterceptorRegistry(reg),
			webrtc.WithSettingEngine(*se),
		), nil
	}
	c := l.apis
	if c == nil {
		return build()
	}
	c.once[i].Do(func() { c.api[i], c.err[i] = build() })
	return c.api[i], c.err[i]
}

// settingEngine builds the per-lease Pion settings: the lease's mux, UDP4,
// no mDNS, host candidates rewritten to the public IPs.
func (e *Engine) settingEngine(l *portLease) (*webrtc.SettingEngine, error) {
	se := &webrtc.SettingEngine{LoggerFactory: e.loggers}
	se.SetNet(e.ifaces)
	se.SetICEUDPMux(l.Mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if tcp := e.tcp.Load(); tcp != nil {
		// A passive candidate on the shared mux, gathered on one address
		// (the IP filter only applies to TCP: UDP candidates come from the
		// lease's mux). Never active: pinhole does not dial out to
		// addresses a client names.
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
		se.SetICETCPMux(tcp)
		se.DisableActiveTCP(true)
		se.SetIPFilter(tcp.keepGatherIP)
	}
	if e.cfg.ICEDisconnectedTimeout > 0 || e.cfg.ICEFailedTimeout > 0 || e.cfg.ICEKeepalive > 0 {
		d, f, k := e.cfg.ICEDisconnectedTimeout, e.cfg.ICEFailedTimeout, e.cfg.ICEKeepalive
		if d == 0 {
			d = 5 * time.Second
		}
		if f == 0 {
			f = 25 * time.Second
		}
		if k == 0 {
			k = 2 * time.Second
		}
		se.SetICETimeouts(d, f, k)
	}
	if len(e.cfg.PublicIPs) > 0 {
		// Every local address is replaced by the public one(s); loopback is
		// included so a box whose only address is 127.0.0.1 (a namespace,
		// a tunnel endpoint) still yields a candidate to rewrite.
		se.SetIncludeLoopbackCandidate(true)
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        e.cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, err
		}
	} else if bindIsLoopback(e.cfg.BindIP) || !hasNonLoopbackIPv4() {
		se.SetIncludeLoopbackCandidate(true)
	}
	return se, nil
}

func bindIsLoopback(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsLoopback()
}

func hasNonLoopbackIPv4() bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return true
		}
	}
	return false
}

func (e *Engine) emit(ev Event) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	e.onEvent(ev)
}

// Publish answers a WHIP offer: leases a port, creates the peer connection
// and registers the publisher in its room.
func (e *Engine) Publish(ctx context.Context, req SessionRequest) (*Answer, error) {
	req.Role = RolePublisher
	return e.open(ctx, req)
}

// Watch answers a WHEP offer: leases a port and subscribes the viewer to the
// room's publisher (now or when one arrives).
func (e *Engine) Watch(ctx context.Context, req SessionRequest) (*Answer, error) {
	req.Role = RoleViewer
	return e.open(ctx, req)
}

// Ports returns the state of every port of the range.
func (e *Engine) Ports() []PortStatus { return e.pool.Status() }

// Capacity returns how many more sessions can be leased now, and the total.
func (e *Engine) Capacity() (free, total int) { return e.pool.Capacity() }

// open creates a session for req: lease, peer connection, answer.
func (e *Engine) open(ctx context.Context, req SessionRequest) (*Answer, error) {
	if req.ID == "" || req.Room == "" {
		return nil, errors.New("session id and room are required")
	}
	// The offer's candidates are filtered before anything else reads it:
	// the copy Pion is given (inspectOffer's pruned one) must not carry a
	// candidate pinhole refuses to dial.
	filtered, kept, dropped := e.host.filterOfferCandidates(req.Offer, req.TrustLocalCandidates)
	if total := len(kept) + len(dropped); total > e.cfg.MaxCandidates {
		return nil, detail(ErrBadOffer, "the offer carries %d ICE candidates, more than the %d a session accepts", total, e.cfg.MaxCandidates)
	}
	req.Offer = filtered
	offer, err := inspectOffer(req.Offer, req.Role)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := e.sessions[req.ID]; dup {
		e.mu.Unlock()
		return nil, fmt.Errorf("session %s exists", req.ID)
	}
	s := newSession(e, req)
	s.inspected = offer
	s.kept, s.dropped = kept, dropped
	e.sessions[req.ID] = s
	h := e.hubs[req.Room]
	if h == nil {
		h = newHub(req.Room)
		e.hubs[req.Room] = h
	}
	s.hub = h
	e.mu.Unlock()

	ans, err := s.start(ctx)
	if err != nil {
		if cerr := s.close("setup failed: " + err.Error()); cerr != nil {
			e.log.Warn("tearing down a failed setup", "session", s.id, "err", cerr)
		}
		return nil, err
	}
	return ans, nil
}

func (e *Engine) get(id string) (*session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sessions[id]
	if s == nil {
		return nil, ErrSessionNotFound
	}
	return s, nil
}

// forget drops a closed session and, when its room has no member left, the
// room's hub.
func (e *Engine) forget(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sessions[s.id] == s {
		delete(e.sessions, s.id)
	}
	if h := e.hubs[s.room]; h == s.hub && h.empty() {
		delete(e.hubs, s.room)
	}
}

// Trickle adds the remote candidates of a trickle-ice-sdpfrag (RFC 8840).
func (e *Engine) Trickle(id, fragment string) error {
	s, err := e.get(id)
	if err != nil {
		return err
	}
	return s.trickle(fragment)
}

// Restart performs an ICE restart with the fragment's new credentials and
// returns the answer fragment (new ufrag/pwd and all local candidates).
func (e *Engine) Restart(id, fragment string) (string, error) {
	s, err := e.get(id)
	if err != nil {
		return "", err
	}
	return s.restart(fragment)
}

// ICEUfrags returns the ufrags of the session's current ICE credentials:
// local (pinhole's, in the answer) and remote (the client's, from its offer
// or its last ICE restart). An ICE restart changes both. The session URL's
// ETag is derived from the local one (RFC 9725 section 4.3.1: the ETag
// identifies the ICE session), so nothing beside the peer connection keeps
// them.
func (e *Engine) ICEUfrags(id string) (local, remote string, err error) {
	s, err := e.get(id)
	if err != nil {
		return "", "", err
	}
	local, remote = s.iceUfrags()
	return local, remote, nil
}

// CloseSession ends a session and frees its lease; ErrSessionNotFound if it
// is not live. Safe to call concurrently and repeatedly.
func (e *Engine) CloseSession(id, reason string) error {
	s, err := e.get(id)
	if err != nil {
		return err
	}
	return s.close(reason)
}

// CloseRoom ends every session of a room and returns how many were ended.
func (e *Engine) CloseRoom(room, reason string) int {
	e.mu.Lock()
	var victims []*session
	for _, s := range e.sessions {
		if s.room == room {
			victims = append(victims, s)
		}
	}
	e.mu.Unlock()
	if err := closeAll(victims, reason); err != nil {
		e.log.Warn("closing room", "room", room, "err", err)
	}
	return len(victims)
}

// closeAll closes sessions in parallel (each waits for its readers) and
// returns their teardown errors, joined.
func closeAll(ss []*session, reason string) error {
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.close(reason); err != nil {
				errs[i] = fmt.Errorf("session %s: %w", s.id, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Publishers returns the live publisher session ids of a room, newest first.
func (e *Engine) Publishers(room string) []string {
	e.mu.Lock()
	h := e.hubs[room]
	e.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.publisherIDs()
}

// Live reports whether a session is live on this engine.
func (e *Engine) Live(id string) bool {
	_, err := e.get(id)
	return err == nil
}

// Close ends every session, frees every lease and waits for the engine's
// goroutines; it returns the sessions' teardown errors, joined. Children go
// before the parent: sessions first, then the engine's own context and
// ticker. Idempotent: later calls return nil.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var all []*session
	for _, s := range e.sessions {
		all = append(all, s)
	}
	e.mu.Unlock()
	e.pool.close()
	err := closeAll(all, "server shutting down")
	if tcp := e.tcp.Load(); tcp != nil {
		if cerr := tcp.close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, fmt.Errorf("closing the ICE-TCP mux: %w", cerr))
		}
	}
	e.cancel()
	e.wg.Wait()
	return err
}

// tick reports counters and closes idle publishers and viewers without a
// publisher, for every session from one goroutine rather than a timer each.
func (e *Engine) tick() {
	defer e.wg.Done()
	t := time.NewTicker(counterInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			e.mu.Lock()
			live := make([]*session, 0, len(e.sessions))
			for _, s := range e.sessions {
				live = append(live, s)
			}
			e.mu.Unlock()
			for _, s := range live {
				s.reportCounters()
				if s.idle(now, e.cfg.IdleTimeout) {
					go s.close(fmt.Sprintf("idle publisher: no RTP for %s", e.cfg.IdleTimeout))
				}
				if s.noPublisher(now, e.cfg.NoPublisherTimeout) {
					go s.close(fmt.Sprintf("no publisher: nothing to forward to this viewer for %s", e.cfg.NoPublisherTimeout))
				}
			}
		}
	}
}

func publicAddr(ips []string, port int) string {
	if len(ips) == 0 {
		return ""
	}
	return net.JoinHostPort(ips[0], strconv.Itoa(port))
}
