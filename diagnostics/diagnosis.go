package diagnostics

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/store"
)

// Diagnosis defaults: how long a healthy session takes at most to pass each
// hop, with a wide margin, so that a verdict comes as soon as the evidence
// is conclusive, while the session is still up. A verdict given early is
// revised if the evidence changes (verdict_history shows when).
//
//   - A client starts its connectivity checks as soon as it applies the
//     answer; its first check reaches the lease within one round trip
//     (milliseconds to a few hundred). Three seconds without one means the
//     mapping is broken, not slow.
//   - Once checks arrive, pinhole answers each at once and ICE connects
//     within a few round trips; two seconds of checks without a connection
//     mean pinhole's replies do not get back.
//   - DTLS needs two round trips after ICE; its first retransmission is at
//     1 s, so three seconds without a handshake mean its flights are lost.
//   - Media follows the handshake within a keyframe interval; four seconds
//     cover encoders that start slowly.
const (
	DefaultNoPacketAfter = 3 * time.Second
	DefaultNoICEAfter    = 2 * time.Second
	DefaultNoDTLSAfter   = 3 * time.Second
	DefaultNoMediaAfter  = 4 * time.Second
)

// Verdict ids, also the label of the failures counter in /metrics. The
// README's diagnostics section lists each with its hop and headline.
const (
	VerdictOK               = "ok"
	VerdictPending          = "pending"
	VerdictNoAnswer         = "no-answer"
	VerdictNoCandidates     = "no-client-candidates"
	VerdictNoPacket         = "no-packet"
	VerdictPublicIPMismatch = "public-ip-mismatch"
	VerdictICEFailed        = "ice-failed"
	VerdictDTLSFailed       = "dtls-failed"
	VerdictCodecMismatch    = "codec-mismatch"
	VerdictVideoCodec       = "video-codec-mismatch"
	VerdictNoVideo          = "no-video"
	VerdictNoMedia          = "no-media"
	VerdictNoPublisher      = "no-publisher"
	VerdictConnectionLost   = "connection-lost"
)

// Hops, in the order a session passes them.
const (
	HopSignaling = "signaling"
	HopMapping   = "mapping"
	HopICE       = "ice"
	HopDTLS      = "dtls"
	HopMedia     = "media"
	// HopICEServer is the hop of STUN and TURN probe verdicts.
	HopICEServer = "ice-server"
)

// RequestEvent is the timeline kind handlers record with each WHIP/WHEP
// request: its detail is "Host: <host header>", the address the client
// used to reach pinhole's signaling.
const RequestEvent = "request"

// Options tune Diagnose.
type Options struct {
	// Now is the time a live session is judged at; zero means time.Now().
	Now time.Time
	// NoPacketAfter: no packet on the leased port this long after the
	// answer means the mapping is broken. Zero: DefaultNoPacketAfter.
	NoPacketAfter time.Duration
	// NoICEAfter: checks arriving this long without ICE connecting mean
	// pinhole's replies do not get back. Zero: DefaultNoICEAfter.
	NoICEAfter time.Duration
	// NoDTLSAfter: ICE connected this long without a DTLS handshake means
	// its flights are lost. Zero: DefaultNoDTLSAfter.
	NoDTLSAfter time.Duration
	// NoMediaAfter: connected (or audio flowing) this long without RTP (or
	// video) is a media problem. Zero: DefaultNoMediaAfter.
	NoMediaAfter time.Duration
}

func (o Options) withDefaults() Options {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.NoPacketAfter, DefaultNoPacketAfter)
	def(&o.NoICEAfter, DefaultNoICEAfter)
	def(&o.NoDTLSAfter, DefaultNoDTLSAfter)
	def(&o.NoMediaAfter, DefaultNoMediaAfter)
	return o
}

// sessionFacts is what Diagnose reads off a record, once.
type sessionFacts struct {
	s        store.Session
	first    map[string]store.Event // first event of each kind
	out      map[string]store.Event // first RTP sent, by kind (viewers)
	start    time.Time              // offer received
	end      time.Time              // closed (or now, while live)
	ended    bool
	everConn bool // reached the connected state
}

func newFacts(s store.Session, now time.Time) sessionFacts {
	f := sessionFacts{s: s, first: map[string]store.Event{}, out: map[string]store.Event{}, start: s.CreatedAt, end: now}
	for _, e := range s.Events {
		if _, ok := f.first[e.Kind]; !ok {
			f.first[e.Kind] = e
		}
		if e.Kind == "first-rtp-out" {
			if _, ok := f.out[e.Detail]; !ok {
				f.out[e.Detail] = e
			}
		}
	}
	if e, ok := f.first["offer"]; ok && (f.start.IsZero() || e.At.Before(f.start)) {
		f.start = e.At
	}
	for _, t := range s.Transitions {
		if t.State == store.StateConnected {
			f.everConn = true
		}
		if t.State == store.StateClosed {
			f.ended, f.end = true, t.At
		}
	}
	if s.State == store.StateClosed || s.State == store.StateFailed {
		f.ended = true
	}
	if e, ok := f.first["closed"]; ok {
		f.ended, f.end = true, e.At
	}
	return f
}

func (f sessionFacts) has(kind string) bool { _, ok := f.first[kind]; return ok }

// since is how long after a milestone the session ended or is judged.
func (f sessionFacts) since(kind string) time.Duration {
	e, ok := f.first[kind]
	if !ok {
		return 0
	}
	return f.end.Sub(e.At)
}

// rel is "+1234 ms" after the offer, for evidence lines.
func (f sessionFacts) rel(at time.Time) string {
	return fmt.Sprintf("+%d ms", at.Sub(f.start).Milliseconds())
}

// evidence of one event: "+20 ms answer: lease local UDP 10111, ...".
func (f sessionFacts) evidence(kind string) string {
	e, ok := f.first[kind]
	if !ok {
		return ""
	}
	if e.Detail == "" {
		return f.rel(e.At) + " " + kind
	}
	return f.rel(e.At) + " " + kind + ": " + e.Detail
}

// snapshot is the record as it stood at t: the events and transitions up
// to t, so a verdict can be replayed at any moment of the session.
func snapshot(s store.Session, t time.Time) store.Session {
	c := s
	c.Events = nil
	for _, e := range s.Events {
		if !e.At.After(t) {
			c.Events = append(c.Events, e)
		}
	}
	c.Transitions = nil
	for _, tr := range s.Transitions {
		if !tr.At.After(t) {
			c.Transitions = append(c.Transitions, tr)
		}
	}
	if n := len(c.Transitions); n > 0 {
		c.State = c.Transitions[n-1].State
	} else if len(s.Transitions) > 0 {
		c.State = store.StateNew
	}
	if c.State != store.StateClosed {
		c.CloseReason = ""
	}
	return c
}

// Diagnose turns a session record into its timeline, the path picture and
// a verdict naming the first broken hop (signaling, mapping, ICE, DTLS,
// media) with its evidence and fix. It is a pure function of the record,
// so it works the same for live sessions, for ended ones kept in the store,
// and in tests. The verdict is replayed at every moment the evidence
// changed, so the history shows when it was reached and revised.
func Diagnose(s store.Session, opts Options) api.Diagnosis {
	opts = opts.withDefaults()
	events := append([]store.Event(nil), s.Events...)
	for i := range events {
		// Request evidence written with the record carries no time of
		// its own: it is as old as the record.
		if events[i].At.IsZero() {
			events[i].At = s.CreatedAt
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].At.Before(events[j].At) })
	s.Events = events
	f := newFacts(s, opts.Now)

	d := api.Diagnosis{
		SessionID:   s.ID,
		Room:        s.Room,
		Role:        string(s.Role),
		State:       string(s.State),
		Lease:       api.Lease{LocalPort: s.Lease.LocalPort, PublicAddr: s.Lease.PublicAddr},
		RemoteAddrs: s.RemoteAddrs,
		Selected:    s.SelectedPair,
		Codecs:      s.Codecs,
		Counters:    api.Counters(s.Counters),
		CloseReason: s.CloseReason,
		Timeline:    []api.TimelineEntry{},
	}
	var verdict api.Verdict
	d.Hops, verdict = judge(f, opts)
	d.VerdictHistory = history(s, f, opts)
	if n := len(d.VerdictHistory); n > 0 {
		verdict.SinceStartMillis = d.VerdictHistory[n-1].SinceStartMillis
	}
	d.Verdict = verdict
	d.Path = path(f, d.Hops, verdict)

	ms := func(at time.Time) float64 { return float64(at.Sub(f.start).Microseconds()) / 1000 }
	for _, e := range events {
		d.Timeline = append(d.Timeline, api.TimelineEntry{At: e.At, Kind: e.Kind, Detail: e.Detail, SinceStartMillis: ms(e.At)})
	}
	for _, c := range d.VerdictHistory {
		d.Timeline = append(d.Timeline, api.TimelineEntry{At: c.At, Kind: "verdict", SinceStartMillis: c.SinceStartMillis,
			Detail: fmt.Sprintf("%s (%s) at %s: %s", c.ID, c.Status, orNone(c.Hop), c.Headline)})
	}
	sort.SliceStable(d.Timeline, func(i, j int) bool { return d.Timeline[i].At.Before(d.Timeline[j].At) })
	return d
}

// judge runs the hops in order; the first broken or pending one gives the
// verdict and the hops after it are skipped: they could not have happened.
func judge(f sessionFacts, opts Options) ([]api.Hop, api.Verdict) {
	hops := []func(sessionFacts, Options) (api.Hop, *api.Verdict){
		signalingHop, mappingHop, iceHop, dtlsHop, mediaHop,
	}
	var out []api.Hop
	var verdict *api.Verdict
	for _, hop := range hops {
		h, v := hop(f, opts)
		if verdict != nil {
			out = append(out, api.Hop{Name: h.Name, Status: api.StatusSkipped})
			continue
		}
		out = append(out, h)
		if v != nil {
			v.Hop = h.Name
			verdict = v
		}
	}
	if verdict == nil {
		verdict = healthyVerdict(f)
	}
	v := *verdict
	v.Code, v.Summary = v.ID, v.Headline
	if v.Evidence == nil {
		v.Evidence = []string{}
	}
	return out, v
}

// history replays the verdict at each moment it could have changed: every
// event, and every deadline a threshold sets after one.
func history(s store.Session, f sessionFacts, o Options) []api.VerdictChange {
	var times []time.Time
	for _, e := range s.Events {
		times = append(times, e.At)
		for _, d := range []time.Duration{o.NoPacketAfter, o.NoICEAfter, o.NoDTLSAfter, o.NoMediaAfter} {
			times = append(times, e.At.Add(d))
		}
	}
	times = append(times, f.end)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var out []api.VerdictChange
	var last time.Time
	for _, t := range times {
		if t.After(f.end) || t.Before(f.start) || (!last.IsZero() && t.Equal(last)) {
			continue
		}
		last = t
		_, v := judge(newFacts(snapshot(s, t), t), o)
		if n := len(out); n > 0 && out[n-1].ID == v.ID && out[n-1].Status == v.Status && out[n-1].Hop == v.Hop {
			continue
		}
		out = append(out, api.VerdictChange{At: t, SinceStartMillis: float64(t.Sub(f.start).Microseconds()) / 1000,
			ID: v.ID, Status: v.Status, Hop: v.Hop, Headline: v.Headline})
	}
	return out
}

func pending(headline string, evidence ...string) *api.Verdict {
	return &api.Verdict{Status: api.StatusPending, ID: VerdictPending, Headline: headline, Evidence: nonEmpty(evidence)}
}

func fail(id, headline, fix string, evidence ...string) *api.Verdict {
	return &api.Verdict{Status: api.StatusFail, ID: id, Headline: headline, Fix: fix, Evidence: nonEmpty(evidence)}
}

func nonEmpty(ss []string) []string {
	out := []string{}
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func signalingHop(f sessionFacts, _ Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: HopSignaling}
	if f.has("answer") {
		h.Status, h.Detail = api.StatusOK, "offer received, answer sent: "+f.first["answer"].Detail
		return h, nil
	}
	if !f.ended {
		h.Status = api.StatusPending
		return h, pending("offer received, answer not sent yet", f.evidence("offer"))
	}
	h.Status, h.Detail = api.StatusFail, "no answer was sent"
	reason := f.s.CloseReason
	if reason == "" {
		reason = "unknown"
	}
	return h, fail(VerdictNoAnswer, "the offer was not answered: "+reason,
		"check that the offer has media pinhole serves (VP8, VP9, H.264, AV1, Opus) and that a UDP port was free (GET /api/v1/ports)",
		f.evidence("offer"), f.evidence("closed"))
}

// clientCandidates returns the offer event's candidate count and list.
func clientCandidates(f sessionFacts) (n int, list string) {
	e, ok := f.first["offer"]
	if !ok {
		return 0, ""
	}
	_, _ = fmt.Sscanf(e.Detail, "%d client candidates", &n)
	if _, rest, ok := strings.Cut(e.Detail, ": "); ok {
		list = rest
	}
	return n, list
}

// requestHost is the Host header of the WHIP/WHEP request, "" if unknown.
func requestHost(f sessionFacts) string {
	e, ok := f.first[RequestEvent]
	if !ok {
		return ""
	}
	h, _ := strings.CutPrefix(e.Detail, "Host: ")
	return strings.TrimSpace(h)
}

// hostIP is the IP literal of a Host header ("" for a name).
func hostIP(host string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(host); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

func mappingHop(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: HopMapping}
	local, public := f.s.Lease.LocalPort, f.s.Lease.PublicAddr
	if e, ok := f.first["first-packet"]; ok {
		h.Status = api.StatusOK
		h.Detail = fmt.Sprintf("first packet on %s, %s after the answer", e.Detail, e.At.Sub(f.first["answer"].At).Round(time.Millisecond))
		return h, nil
	}
	if f.transport() == "tcp" {
		// ICE-TCP on the HTTP port bypassed the UDP mapping: it is not
		// broken as far as this session can tell, just unused.
		h.Status = api.StatusOK
		h.Detail = fmt.Sprintf("no UDP packet reached local UDP %d; media over ICE-TCP on the HTTP port instead", local)
		return h, nil
	}
	waited := f.since("answer")
	if !f.ended && waited < o.NoPacketAfter {
		h.Status = api.StatusPending
		return h, pending(fmt.Sprintf("waiting for the first packet on local UDP %d (%s since the answer)", local, waited.Round(100*time.Millisecond)),
			f.evidence("answer"))
	}
	h.Status = api.StatusFail
	n, cands := clientCandidates(f)
	// A self-test offers no candidates on purpose (see SelfTest): its
	// client's checks must come through the mapping.
	if n == 0 && !f.has("trickle") && !f.has("selftest") {
		h.Detail = "the client offered no ICE candidates"
		return h, fail(VerdictNoCandidates,
			"the client offered no ICE candidates and trickled none, so it never sent a packet to local UDP "+fmt.Sprint(local),
			"the client must gather before sending the offer (or trickle with PATCH); a browser that gathers nothing has no usable network interface or blocks WebRTC (privacy extension, policy)",
			f.evidence("offer"))
	}
	within := fmt.Sprintf("within %s of the answer", o.NoPacketAfter)
	if f.ended && waited < o.NoPacketAfter {
		within = fmt.Sprintf("before the session ended %s after the answer", waited.Round(time.Millisecond))
	}
	h.Detail = fmt.Sprintf("no packet reached local UDP %d %s", local, within)
	ev := []string{f.evidence("answer"), fmt.Sprintf("%s: no packet on local UDP %d", f.rel(f.end), local),
		"the client's candidates: " + orNone(cands)}
	if public == "" {
		return h, fail(VerdictNoPacket, h.Detail,
			fmt.Sprintf("set --public-ip (and --public-ports if the router changes the port) to the address clients reach, and forward UDP to this host:%d", local),
			ev...)
	}
	pubAP, _ := netip.ParseAddrPort(public)
	host := requestHost(f)
	if host != "" {
		ev = append(ev, f.evidence(RequestEvent))
	}
	// The request's Host header is where the client reached pinhole's
	// signaling. When it is an IP literal other than the advertised one,
	// the answer sent the client somewhere else: --public-ip is the suspect.
	if ip, ok := hostIP(host); ok && pubAP.IsValid() && ip != pubAP.Addr() && !ip.IsLoopback() {
		if !isPublic(ip) && isPublic(pubAP.Addr()) {
			// A client inside the box's own network reached it directly:
			// the public address is right, the client needs a way to it.
			h.Detail += "; the client reached signaling at the private address " + ip.String()
			return h, fail(VerdictNoPacket,
				fmt.Sprintf("no packet reached local UDP %d %s: the client reached pinhole at the private address %s (Host header), inside this network, "+
					"and was sent to the public %s, which its router does not loop back (or the forward is missing)", local, within, ip, public),
				fmt.Sprintf("for clients inside this network, enable NAT loopback (hairpin) on the router or also advertise the private address (--public-ip %s,%s); "+
					"if clients outside fail too, check the forward UDP %s -> this host:%d", pubAP.Addr(), ip, public, local),
				ev...)
		}
		h.Detail += "; the client reached signaling at " + ip.String() + ", the answer advertised " + pubAP.Addr().String()
		return h, fail(VerdictPublicIPMismatch,
			fmt.Sprintf("no packet reached local UDP %d %s: the client reached pinhole at %s (Host header) but the answer advertised %s, so --public-ip is probably wrong",
				local, within, ip, pubAP.Addr()),
			fmt.Sprintf("set --public-ip to the address clients reach (%s if that is the router's or tunnel's public address; check with `curl ifconfig.me` on the router's side), "+
				"and forward UDP %s:%d -> this host:%d", ip, ip, pubAP.Port(), local),
			ev...)
	}
	same := "the client reached signaling at the advertised address"
	if host == "" {
		same = "the request's Host header is unknown"
	} else if _, ok := hostIP(host); !ok {
		same = "the client reached signaling by the name " + host + ", which pinhole cannot compare with the advertised address"
	}
	portNote := fmt.Sprintf("public port %d is paired with local %d by --public-ports", pubAP.Port(), local)
	if int(pubAP.Port()) == local {
		portNote = fmt.Sprintf("public port %d is the local port", local)
	}
	return h, fail(VerdictNoPacket,
		fmt.Sprintf("no packet reached local UDP %d %s: the mapping public %s -> this host's UDP %d does not forward UDP, "+
			"or the router forwards %s to another local port (--public-ports wrong); from here the two cannot be told apart",
			local, within, public, local, public),
		fmt.Sprintf("check the port forward (router DNAT, FRP udp proxy, cloud security group, firewall) for UDP %s -> this host:%d; "+
			"check that --public-ports pairs each public port with the local port the router forwards it to (in order); "+
			"to tell a missing forward from a wrong pairing, run the self-test (if the router loops back) or send UDP to %s from outside "+
			"(`nc -u %s %d`) and watch `tcpdump -ni any udp portrange %d-%d` on this host; the client's candidates: %s",
			public, local, public, pubAP.Addr(), pubAP.Port(), local-10, local+10, orNone(cands)),
		append(ev, same, portNote)...)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func iceHop(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: HopICE}
	if f.has("ice-connected") || f.everConn {
		h.Status = api.StatusOK
		h.Detail = "ICE connected"
		if f.s.SelectedPair != "" {
			h.Detail += ": " + f.s.SelectedPair
		}
		return h, nil
	}
	checking := f.since("first-packet")
	if !f.has("ice-failed") && !f.ended && checking < o.NoICEAfter {
		h.Status = api.StatusPending
		return h, pending("packets arrived, ICE is still checking", f.evidence("first-packet"))
	}
	h.Status = api.StatusFail
	_, cands := clientCandidates(f)
	from := strings.Join(f.s.RemoteAddrs, ", ")
	if from == "" {
		if e, ok := f.first["first-packet"]; ok {
			_, from, _ = strings.Cut(e.Detail, " from ")
			from, _, _ = strings.Cut(from, " ")
		}
	}
	h.Detail = "ICE failed after packets arrived from " + orNone(from)
	headline := fmt.Sprintf("packets arrived (from %s) but ICE failed: client candidates %s", orNone(from), orNone(cands))
	if !f.has("ice-failed") && !f.ended {
		h.Detail = fmt.Sprintf("checks arrive from %s, ICE not connected after %s", orNone(from), checking.Round(100*time.Millisecond))
		headline = fmt.Sprintf("packets arrived (from %s) but ICE failed to connect within %s: the client's checks reach local UDP %d, pinhole's replies do not get back",
			orNone(from), o.NoICEAfter, f.s.Lease.LocalPort)
	}
	return h, fail(VerdictICEFailed, headline,
		fmt.Sprintf("the client's checks reach local UDP %d but the answers do not get back, or come back from another address: "+
			"make sure replies from this host leave through the same mapping (%s), with no second NAT or asymmetric route, "+
			"and that no firewall drops UDP from local port %d to the client", f.s.Lease.LocalPort, orNone(f.s.Lease.PublicAddr), f.s.Lease.LocalPort),
		f.evidence("first-packet"), f.evidence("ice-checking"), f.evidence("ice-failed"),
		fmt.Sprintf("%s: ICE not connected, %d packets in", f.rel(f.end), f.s.Counters.PacketsIn))
}

func dtlsHop(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: HopDTLS}
	if f.has("dtls-connected") || f.everConn {
		h.Status, h.Detail = api.StatusOK, "DTLS handshake done"
		return h, nil
	}
	waited := f.since("ice-connected")
	if !f.has("dtls-failed") && !f.ended && waited < o.NoDTLSAfter {
		h.Status = api.StatusPending
		return h, pending("ICE connected, DTLS handshake in progress", f.evidence("ice-connected"))
	}
	h.Status, h.Detail = api.StatusFail, "DTLS failed"
	headline := "ICE connected but DTLS failed"
	if !f.has("dtls-failed") {
		h.Detail = fmt.Sprintf("no DTLS handshake %s after ICE connected", waited.Round(100*time.Millisecond))
		headline = fmt.Sprintf("ICE connected but DTLS failed: no handshake within %s; small packets pass, the handshake's large ones do not", o.NoDTLSAfter)
	}
	return h, fail(VerdictDTLSFailed, headline,
		"the handshake needs datagrams of about 1200 bytes: check the MTU of tunnels on the path (FRP, VPN, PPPoE) and that no middlebox drops large UDP; "+
			"a fingerprint mismatch means the SDP was altered between client and pinhole",
		f.evidence("ice-connected"), f.evidence("dtls-failed"), fmt.Sprintf("%s: no DTLS handshake", f.rel(f.end)))
}

// connectedAt is when the session became connected (DTLS done), zero if never.
func (f sessionFacts) connectedAt() time.Time {
	at := f.first["dtls-connected"].At
	if c, ok := f.first["ice-connected"]; ok && at.IsZero() {
		at = c.At
	}
	for _, t := range f.s.Transitions {
		if t.State == store.StateConnected && (at.IsZero() || t.At.Before(at)) {
			at = t.At
		}
	}
	return at
}

// wantsVideo: the viewer negotiated a video codec (it offered video).
func (f sessionFacts) wantsVideo() bool {
	for _, c := range f.s.Codecs {
		if strings.HasPrefix(strings.ToLower(c), "video/") {
			return true
		}
	}
	return false
}

func mediaHop(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: HopMedia}
	if f.s.Role == store.RoleViewer {
		return viewerMedia(f, o)
	}
	if _, ok := f.first["first-rtp-in"]; ok {
		h.Status, h.Detail = api.StatusOK, "media received from the publisher"
		return h, nil
	}
	waited := f.end.Sub(f.connectedAt())
	if !f.ended && waited < o.NoMediaAfter {
		h.Status = api.StatusPending
		return h, pending("connected, waiting for the first RTP packet", f.evidence("dtls-connected"))
	}
	h.Status, h.Detail = api.StatusFail, "no RTP arrived from the publisher"
	return h, fail(VerdictNoMedia, fmt.Sprintf("connected, but the publisher sent no RTP within %s", o.NoMediaAfter),
		"check that the publisher's tracks are enabled and its encoder runs (camera permission, muted track, OBS output started)",
		f.evidence("dtls-connected"), f.evidence("track"), fmt.Sprintf("%s: no RTP in", f.rel(f.end)))
}

func viewerMedia(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: HopMedia}
	mismatch, hasMismatch := f.first["codec-mismatch"]
	audio := f.out["audio"] // set when video is missing: f.out holds one of the two
	_, videoOut := f.out["video"]
	if len(f.out) > 0 {
		if videoOut || !f.wantsVideo() {
			h.Status, h.Detail = api.StatusOK, "media sent to the viewer ("+strings.Join(outKinds(f), ", ")+")"
			return h, nil
		}
		// Audio flows, video does not: the user hears sound and sees nothing.
		h.Detail = "audio is sent to the viewer, video is not"
		if hasMismatch && strings.Contains(mismatch.Detail, "video/") {
			h.Status = api.StatusFail
			return h, fail(VerdictVideoCodec, "audio flows but no video: "+mismatch.Detail+"; the viewer hears sound and sees nothing",
				"publish video with a codec the viewer supports (VP8 works everywhere; H.264 needs a matching profile), or let the viewer offer the publisher's codec",
				f.evidence("following"), f.evidence("codec-mismatch"), f.rel(audio.At)+" first audio sent to the viewer", "no video sent")
		}
		waited := f.end.Sub(audio.At)
		if !f.ended && waited < o.NoMediaAfter {
			h.Status = api.StatusPending
			return h, pending("audio flows, waiting for the first video frame", f.rel(audio.At)+" first audio sent to the viewer")
		}
		h.Status = api.StatusFail
		return h, fail(VerdictNoVideo,
			fmt.Sprintf("audio flows but no video reached the viewer within %s: the viewer hears sound and sees nothing", o.NoMediaAfter),
			"the publisher sends no video (camera off, no video track) or no keyframe arrived: check the publisher's diagnosis for a video track; "+
				"an encoder that ignores keyframe requests (PLI) needs a short keyframe interval (OBS: keyframe interval 1-2 s)",
			f.evidence("following"), f.rel(audio.At)+" first audio sent to the viewer", fmt.Sprintf("%s: no video sent; negotiated %s", f.rel(f.end), strings.Join(f.s.Codecs, ", ")))
	}
	if hasMismatch {
		h.Status, h.Detail = api.StatusFail, mismatch.Detail
		return h, fail(VerdictCodecMismatch, "connected, no media: "+mismatch.Detail,
			"publish with a codec the viewer supports (VP8 and Opus work everywhere), or let the viewer offer the publisher's codec",
			f.evidence("following"), f.evidence("codec-mismatch"))
	}
	waited := f.end.Sub(f.connectedAt())
	if !f.ended && waited < o.NoMediaAfter {
		h.Status = api.StatusPending
		return h, pending("connected, waiting for the first RTP packet", f.evidence("dtls-connected"), f.evidence("following"))
	}
	if !f.has("following") {
		h.Status, h.Detail = api.StatusPending, "no publisher in the room"
		v := &api.Verdict{Status: api.StatusPending, ID: VerdictNoPublisher,
			Headline: "connected, no media: no publisher is sending in room " + f.s.Room,
			Fix:      "start a publisher (WHIP) in this room; the viewer gets media as soon as one arrives",
			Evidence: nonEmpty([]string{f.evidence("dtls-connected"), "no publisher followed"})}
		if f.ended {
			v.Status = api.StatusFail
		}
		return h, v
	}
	h.Status, h.Detail = api.StatusFail, "no RTP was forwarded to the viewer"
	return h, fail(VerdictNoMedia, "connected, no media: the publisher this viewer follows sent nothing it could forward",
		"check the publisher's diagnosis: it may be connected without sending (camera off, encoder stalled)",
		f.evidence("following"), fmt.Sprintf("%s: no RTP sent", f.rel(f.end)))
}

func outKinds(f sessionFacts) []string {
	var ks []string
	for _, k := range []string{"audio", "video"} {
		if _, ok := f.out[k]; ok {
			ks = append(ks, k)
		}
	}
	return ks
}

// transport is the detail of the last "transport" event: "udp" or "tcp",
// the transport ICE's selected pair runs over now; empty before one.
func (f sessionFacts) transport() string {
	tr := ""
	for _, e := range f.s.Events {
		if e.Kind == "transport" {
			tr = e.Detail
		}
	}
	return tr
}

// healthyVerdict is the verdict when every hop passed: media flowed. A
// session that then dropped is still reported, with what ended it. Media
// over ICE-TCP is healthy too, but the verdict says so and why.
func healthyVerdict(f sessionFacts) *api.Verdict {
	v := healthyUDPVerdict(f)
	if v.Status != api.StatusOK || f.transport() != "tcp" {
		return v
	}
	local, public := f.s.Lease.LocalPort, orNone(f.s.Lease.PublicAddr)
	why := "no UDP check from the client arrived"
	v.Fix = fmt.Sprintf("TCP works but stalls on every lost packet (head-of-line blocking): forward UDP %s -> this host:%d (and the rest of --public-ports) so that clients use UDP; "+
		"if other clients of this server get UDP, this client's network blocks UDP (corporate, guest or hotel networks often do) and TCP is the best it can have", public, local)
	if f.has("first-packet") {
		why = "UDP packets arrived, but the client's ICE chose its TCP pair"
		v.Fix = "UDP reaches this host, so the forward works: the client's ICE preferred TCP (its UDP checks may not get answers back, or it has no UDP route); check the client's firewall and that replies leave through the same mapping"
	}
	v.Headline = "media flowed over TCP (ICE-TCP on the HTTP port): " + why + strings.TrimPrefix(v.Headline, "media flowed")
	v.Evidence = append(v.Evidence, nonEmpty([]string{f.evidence("transport"), f.evidence("tcp-fallback")})...)
	return v
}

// healthyUDPVerdict is healthyVerdict without the transport.
func healthyUDPVerdict(f sessionFacts) *api.Verdict {
	v := &api.Verdict{Status: api.StatusOK, ID: VerdictOK, Headline: "media flowed"}
	if !f.ended {
		if f.s.State == store.StateDisconnected {
			v.Headline = "media flowed; the connection is disconnected now (ICE consent lost), it may recover"
		}
		return v
	}
	reason := f.s.CloseReason
	lost := f.has("ice-failed") || f.has("ice-disconnected") || strings.Contains(reason, "connection failed")
	if lost && !strings.Contains(reason, "deleted") {
		v.Status, v.ID, v.Hop = api.StatusFail, VerdictConnectionLost, HopICE
		v.Headline = fmt.Sprintf("media flowed, then the connection was lost after %s (%s)", f.since("ice-connected").Round(time.Second), orNone(reason))
		v.Fix = "the client vanished or its network changed (Wi-Fi to mobile, sleep): reconnect or use an ICE restart; if it happens to everyone at once, check the mapping's UDP timeout (keep it above 30 s)"
		v.Evidence = nonEmpty([]string{f.evidence("ice-connected"), f.evidence("ice-disconnected"), f.evidence("closed")})
		return v
	}
	v.Headline = "media flowed; the session ended: " + orNone(reason)
	return v
}
