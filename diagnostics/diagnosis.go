package diagnostics

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/store"
)

// Diagnosis defaults. They are how long a healthy session takes at most to
// pass each hop, with a wide margin: a client's first connectivity check
// arrives within a second of the answer; ten seconds without one means the
// path is broken, not slow. Media follows connection within a keyframe
// interval; five seconds covers encoders that start slowly.
const (
	DefaultNoPacketAfter = 10 * time.Second
	DefaultNoMediaAfter  = 5 * time.Second
)

// Verdict codes, also the label of the failures counter in /metrics.
const (
	VerdictOK             = "ok"
	VerdictPending        = "pending"
	VerdictNoAnswer       = "no-answer"
	VerdictNoCandidates   = "no-client-candidates"
	VerdictNoPacket       = "no-packet"
	VerdictICEFailed      = "ice-failed"
	VerdictDTLSFailed     = "dtls-failed"
	VerdictCodecMismatch  = "codec-mismatch"
	VerdictNoMedia        = "no-media"
	VerdictNoPublisher    = "no-publisher"
	VerdictConnectionLost = "connection-lost"
)

// Options tune Diagnose.
type Options struct {
	// Now is the time a live session is judged at; zero means time.Now().
	Now time.Time
	// NoPacketAfter: a session with no packet on its leased port this long
	// after the answer has a broken mapping. Zero: DefaultNoPacketAfter.
	NoPacketAfter time.Duration
	// NoMediaAfter: a connected session with no RTP this long after
	// connecting has a media problem. Zero: DefaultNoMediaAfter.
	NoMediaAfter time.Duration
}

// sessionFacts is what Diagnose reads off a record, once.
type sessionFacts struct {
	s        store.Session
	first    map[string]store.Event // first event of each kind
	start    time.Time              // offer received
	end      time.Time              // closed (or now, while live)
	ended    bool
	everConn bool // reached the connected state
}

func newFacts(s store.Session, now time.Time) sessionFacts {
	f := sessionFacts{s: s, first: map[string]store.Event{}, start: s.CreatedAt, end: now}
	events := append([]store.Event(nil), s.Events...)
	sort.SliceStable(events, func(i, j int) bool { return events[i].At.Before(events[j].At) })
	f.s.Events = events
	for _, e := range events {
		if _, ok := f.first[e.Kind]; !ok {
			f.first[e.Kind] = e
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

// Diagnose turns a session record into its timeline and a verdict naming the
// first broken hop (signaling, mapping, ICE, DTLS, media) with the fix. It is
// a pure function of the record, so it works the same for live sessions, for
// ended ones kept in the store, and in tests.
func Diagnose(s store.Session, opts Options) api.Diagnosis {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.NoPacketAfter <= 0 {
		opts.NoPacketAfter = DefaultNoPacketAfter
	}
	if opts.NoMediaAfter <= 0 {
		opts.NoMediaAfter = DefaultNoMediaAfter
	}
	f := newFacts(s, now)

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
	for _, e := range f.s.Events {
		d.Timeline = append(d.Timeline, api.TimelineEntry{
			At: e.At, Kind: e.Kind, Detail: e.Detail,
			SinceStartMillis: float64(e.At.Sub(f.start).Microseconds()) / 1000,
		})
	}

	hops := []func(sessionFacts, Options) (api.Hop, *api.Verdict){
		signalingHop, mappingHop, iceHop, dtlsHop, mediaHop,
	}
	var verdict *api.Verdict
	for _, hop := range hops {
		if verdict != nil {
			// Hops after the first broken or pending one are not judged:
			// they could not have happened.
			h, _ := hop(f, opts)
			d.Hops = append(d.Hops, api.Hop{Name: h.Name, Status: api.StatusSkipped})
			continue
		}
		h, v := hop(f, opts)
		d.Hops = append(d.Hops, h)
		if v != nil {
			v.Hop = h.Name
			verdict = v
		}
	}
	if verdict == nil {
		verdict = healthyVerdict(f)
	}
	d.Verdict = *verdict
	return d
}

func signalingHop(f sessionFacts, _ Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: "signaling"}
	if f.has("answer") {
		h.Status, h.Detail = api.StatusOK, "offer received, answer sent: "+f.first["answer"].Detail
		return h, nil
	}
	if !f.ended {
		h.Status = api.StatusPending
		return h, &api.Verdict{Status: api.StatusPending, Code: VerdictPending, Summary: "offer received, answer not sent yet"}
	}
	h.Status, h.Detail = api.StatusFail, "no answer was sent"
	reason := f.s.CloseReason
	if reason == "" {
		reason = "unknown"
	}
	return h, &api.Verdict{Status: api.StatusFail, Code: VerdictNoAnswer,
		Summary: "the offer was not answered: " + reason,
		Fix:     "check that the offer has media pinhole serves (VP8, VP9, H.264, AV1, Opus) and that a UDP port was free (GET /api/v1/ports)"}
}

// clientCandidates returns the offer event's candidate list ("" if none).
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

func mappingHop(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: "mapping"}
	local, public := f.s.Lease.LocalPort, f.s.Lease.PublicAddr
	if e, ok := f.first["first-packet"]; ok {
		h.Status = api.StatusOK
		h.Detail = fmt.Sprintf("first packet on %s, %s after the answer", e.Detail, e.At.Sub(f.first["answer"].At).Round(time.Millisecond))
		return h, nil
	}
	waited := f.since("answer")
	if !f.ended && waited < o.NoPacketAfter {
		h.Status = api.StatusPending
		return h, &api.Verdict{Status: api.StatusPending, Code: VerdictPending,
			Summary: fmt.Sprintf("waiting for the first packet on local UDP %d (%s since the answer)", local, waited.Round(time.Second))}
	}
	h.Status = api.StatusFail
	n, cands := clientCandidates(f)
	// A self-test offers no candidates on purpose (see SelfTest): its
	// client's checks must come through the mapping.
	if n == 0 && !f.has("trickle") && !f.has("selftest") {
		h.Detail = "the client offered no ICE candidates"
		return h, &api.Verdict{Status: api.StatusFail, Code: VerdictNoCandidates,
			Summary: "the client offered no ICE candidates and trickled none, so it never sent a packet to local UDP " + fmt.Sprint(local),
			Fix:     "the client must gather before sending the offer (or trickle with PATCH); a browser that gathers nothing has no usable network interface or blocks WebRTC (privacy extension, policy)"}
	}
	within := fmt.Sprintf("within %s", o.NoPacketAfter)
	if f.ended && waited < o.NoPacketAfter {
		within = fmt.Sprintf("before the session ended %s after the answer", waited.Round(time.Millisecond))
	}
	h.Detail = fmt.Sprintf("no packet reached local UDP %d %s", local, within)
	v := &api.Verdict{Status: api.StatusFail, Code: VerdictNoPacket}
	if public != "" {
		v.Summary = fmt.Sprintf("no packet reached local UDP %d %s: the mapping public %s -> this host's UDP %d does not forward UDP", local, within, public, local)
		v.Fix = fmt.Sprintf("check the port forward (router DNAT, FRP udp proxy, cloud security group, firewall) for UDP %s -> this host:%d; "+
			"if it exists, check that --public-ip and --public-ports name the address and port that reach local %d (public ports pair with local ports in order), "+
			"and that the client may send UDP out (its candidates: %s)", public, local, local, orNone(cands))
	} else {
		v.Summary = fmt.Sprintf("no packet reached local UDP %d %s", local, within)
		v.Fix = fmt.Sprintf("set --public-ip (and --public-ports if the router changes the port) to the address clients reach, and forward UDP to this host:%d; the client's candidates: %s", local, orNone(cands))
	}
	return h, v
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func iceHop(f sessionFacts, _ Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: "ice"}
	if f.has("ice-connected") || f.everConn {
		h.Status = api.StatusOK
		h.Detail = "ICE connected"
		if f.s.SelectedPair != "" {
			h.Detail += ": " + f.s.SelectedPair
		}
		return h, nil
	}
	if !f.has("ice-failed") && !f.ended {
		h.Status = api.StatusPending
		return h, &api.Verdict{Status: api.StatusPending, Code: VerdictPending, Summary: "packets arrived, ICE is still checking"}
	}
	h.Status = api.StatusFail
	_, cands := clientCandidates(f)
	from := strings.Join(f.s.RemoteAddrs, ", ")
	h.Detail = "ICE failed after packets arrived from " + orNone(from)
	return h, &api.Verdict{Status: api.StatusFail, Code: VerdictICEFailed,
		Summary: fmt.Sprintf("packets arrived (from %s) but ICE failed: client candidates %s", orNone(from), orNone(cands)),
		Fix: fmt.Sprintf("the client's checks reach local UDP %d but the answers do not get back, or come back from another address: "+
			"make sure replies from this host leave through the same mapping (%s), with no second NAT or asymmetric route, "+
			"and that no firewall drops UDP from local port %d to the client", f.s.Lease.LocalPort, orNone(f.s.Lease.PublicAddr), f.s.Lease.LocalPort)}
}

func dtlsHop(f sessionFacts, _ Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: "dtls"}
	if f.has("dtls-connected") || f.everConn {
		h.Status, h.Detail = api.StatusOK, "DTLS handshake done"
		return h, nil
	}
	if !f.has("dtls-failed") && !f.ended {
		h.Status = api.StatusPending
		return h, &api.Verdict{Status: api.StatusPending, Code: VerdictPending, Summary: "ICE connected, DTLS handshake in progress"}
	}
	h.Status, h.Detail = api.StatusFail, "DTLS failed"
	return h, &api.Verdict{Status: api.StatusFail, Code: VerdictDTLSFailed,
		Summary: "ICE connected but DTLS failed",
		Fix: "the handshake needs datagrams of about 1200 bytes: check the MTU of tunnels on the path (FRP, VPN, PPPoE) and that no middlebox drops large UDP; " +
			"a fingerprint mismatch means the SDP was altered between client and pinhole"}
}

func mediaHop(f sessionFacts, o Options) (api.Hop, *api.Verdict) {
	h := api.Hop{Name: "media"}
	want := "first-rtp-in"
	if f.s.Role == store.RoleViewer {
		want = "first-rtp-out"
	}
	if e, ok := f.first[want]; ok {
		h.Status = api.StatusOK
		if f.s.Role == store.RoleViewer {
			h.Detail = "media sent to the viewer (" + strings.TrimSpace(e.Detail) + ")"
		} else {
			h.Detail = "media received from the publisher"
		}
		return h, nil
	}
	if e, ok := f.first["codec-mismatch"]; ok {
		h.Status, h.Detail = api.StatusFail, e.Detail
		return h, &api.Verdict{Status: api.StatusFail, Code: VerdictCodecMismatch,
			Summary: "connected, no media: " + e.Detail,
			Fix:     "publish with a codec the viewer supports (VP8 and Opus work everywhere), or let the viewer offer the publisher's codec"}
	}
	connectedAt := f.first["dtls-connected"].At
	if c, ok := f.first["ice-connected"]; ok && connectedAt.IsZero() {
		connectedAt = c.At
	}
	for _, t := range f.s.Transitions {
		if t.State == store.StateConnected && (connectedAt.IsZero() || t.At.Before(connectedAt)) {
			connectedAt = t.At
		}
	}
	waited := f.end.Sub(connectedAt)
	if !f.ended && waited < o.NoMediaAfter {
		h.Status = api.StatusPending
		return h, &api.Verdict{Status: api.StatusPending, Code: VerdictPending, Summary: "connected, waiting for the first RTP packet"}
	}
	if f.s.Role == store.RoleViewer && !f.has("following") {
		h.Status, h.Detail = api.StatusPending, "no publisher in the room"
		st := api.StatusPending
		if f.ended {
			st = api.StatusFail
		}
		return h, &api.Verdict{Status: st, Code: VerdictNoPublisher,
			Summary: "connected, no media: no publisher is sending in room " + f.s.Room,
			Fix:     "start a publisher (WHIP) in this room; the viewer gets media as soon as one arrives"}
	}
	h.Status = api.StatusFail
	if f.s.Role == store.RoleViewer {
		h.Detail = "no RTP was forwarded to the viewer"
		return h, &api.Verdict{Status: api.StatusFail, Code: VerdictNoMedia,
			Summary: "connected, no media: the publisher this viewer follows sent nothing it could forward",
			Fix:     "check the publisher's diagnosis: it may be connected without sending (camera off, encoder stalled)"}
	}
	h.Detail = "no RTP arrived from the publisher"
	return h, &api.Verdict{Status: api.StatusFail, Code: VerdictNoMedia,
		Summary: fmt.Sprintf("connected, but the publisher sent no RTP within %s", o.NoMediaAfter),
		Fix:     "check that the publisher's tracks are enabled and its encoder runs (camera permission, muted track, OBS output started)"}
}

// healthyVerdict is the verdict when every hop passed: media flowed. A
// session that then dropped is still reported, with what ended it.
func healthyVerdict(f sessionFacts) *api.Verdict {
	v := &api.Verdict{Status: api.StatusOK, Code: VerdictOK, Summary: "media flowed"}
	if !f.ended {
		if f.s.State == store.StateDisconnected {
			v.Summary = "media flowed; the connection is disconnected now (ICE consent lost), it may recover"
		}
		return v
	}
	reason := f.s.CloseReason
	lost := f.has("ice-failed") || f.has("ice-disconnected") || strings.Contains(reason, "connection failed")
	if lost && !strings.Contains(reason, "deleted") {
		v.Status, v.Code, v.Hop = api.StatusFail, VerdictConnectionLost, "ice"
		v.Summary = fmt.Sprintf("media flowed, then the connection was lost after %s (%s)", f.since("ice-connected").Round(time.Second), orNone(reason))
		v.Fix = "the client vanished or its network changed (Wi-Fi to mobile, sleep): reconnect or use an ICE restart; if it happens to everyone at once, check the mapping's UDP timeout (keep it above 30 s)"
		return v
	}
	v.Summary = "media flowed; the session ended: " + orNone(reason)
	return v
}
