package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// session is one live peer connection bound to one lease.
type session struct {
	id, room, want string
	role           Role
	offer          string
	inspected      offerInfo // the offer as inspectOffer left it for Pion (sdp.go)
	e              *Engine
	hub            *hub

	lease *portLease
	pc    *webrtc.PeerConnection
	pub   *publisher
	view  *viewer

	// sigMu serialises signalling (answer, trickle, restart) on pc.
	sigMu sync.Mutex
	// life is held by start for the whole setup and taken by close before
	// teardown, so a session closed while it is being set up (shutdown,
	// room deletion, setup timeout) is torn down only once its fields are
	// all written. started is set when setup has finished.
	life    sync.Mutex
	started atomic.Bool
	// keyframes counts a viewer's video sink going live (keyframeOut).
	keyframes atomic.Int32

	// ctx is the session's life, derived from the engine's: cancelled when
	// teardown starts (by Close, or by the engine shutting down). done is
	// closed once teardown has finished; closeErr is what it reported.
	ctx      context.Context
	cancel   context.CancelFunc
	closing  atomic.Bool
	done     chan struct{}
	closeErr error
	wg       sync.WaitGroup // goroutines reading from pc
	setup    *time.Timer

	connected  atomic.Bool
	packetsIn  atomic.Uint64
	bytesIn    atomic.Uint64
	lastRTPIn  atomic.Int64
	firstRTPIn atomic.Bool
	plisSent   atomic.Uint64
	lastCount  Counters // tick goroutine only
	created    time.Time

	// Preemption (preempt.go): fate orders "connected" against "claimed"
	// (by a preemption or the setup timeout), so a session that connected
	// is never closed as unproven, and one claimed is never marked
	// connected. iceUp is set when ICE connects; answered is when the
	// answer was ready (UnixNano, 0 while in setup); noPubSince is since
	// when a connected viewer has had nothing to receive (0: it has).
	fate       sync.Mutex
	claimed    bool
	iceUp      atomic.Bool
	answered   atomic.Int64
	noPubSince atomic.Int64

	// Remote candidates (candidates.go): loopback and this host's own
	// addresses are kept only for a client on this host; candidates counts
	// every remote candidate received, under sigMu, against the cap.
	trustLocal bool
	candidates int
	// kept and dropped are the offer's candidates as filtered (for the
	// timeline).
	kept, dropped []string
	// firstFrom is the source of the first packet on the port, remembered
	// to say whether ICE later validated it; firstNoted is set once said.
	firstFrom  atomic.Pointer[netip.AddrPort]
	firstNoted atomic.Bool
	// transport is what the selected pair runs over, "udp" or "tcp"
	// (tcp.go), once ICE selected one.
	transport atomic.Pointer[string]
}

func newSession(e *Engine, req SessionRequest) *session {
	ctx, cancel := context.WithCancel(e.ctx)
	return &session{
		id: req.ID, room: req.Room, role: req.Role, want: req.PublisherID, offer: req.Offer,
		e: e, ctx: ctx, cancel: cancel, done: make(chan struct{}), created: time.Now(),
		trustLocal: req.TrustLocalCandidates,
	}
}

func (s *session) event(ev Event) {
	ev.SessionID, ev.Room, ev.Role = s.id, s.room, s.role
	s.e.emit(ev)
}

func (s *session) emitTimeline(name, detail string) {
	s.event(Event{Kind: EventTimeline, Name: name, Detail: detail})
}

// start leases a port, builds the peer connection and answers the offer.
func (s *session) start(ctx context.Context) (*Answer, error) {
	s.life.Lock()
	defer s.life.Unlock()
	ans, err := s.setupLocked(ctx)
	if err != nil {
		return nil, err
	}
	if s.ctx.Err() != nil {
		// Closed while being set up: the answer would describe a session
		// that no longer exists.
		return nil, ErrClosed
	}
	s.answered.Store(time.Now().UnixNano())
	s.started.Store(true)
	return ans, nil
}

func (s *session) setupLocked(ctx context.Context) (*Answer, error) {
	// The offer's candidates were filtered by Engine.open before Pion sees
	// them: Pion starts checking every remote candidate it is given.
	kept, dropped := s.kept, s.dropped
	s.candidates = len(kept) + len(dropped)
	s.emitTimeline("offer", fmt.Sprintf("%d client candidates: %s", len(kept), strings.Join(kept, "; ")))
	if len(dropped) > 0 {
		s.emitTimeline("candidates-dropped", droppedNote("offer", len(kept)+len(dropped), dropped))
	}
	lease, err := s.e.lease(s) // may preempt an unproven session: preempt.go
	if err != nil {
		return nil, err
	}
	s.lease = lease
	api, err := s.e.apiFor(lease, s.role)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{s.e.cert}})
	if err != nil {
		return nil, err
	}
	s.pc = pc
	s.watchState()
	if s.e.cfg.SetupTimeout > 0 {
		s.setup = time.AfterFunc(s.e.cfg.SetupTimeout, func() {
			if s.claimUnproven() {
				s.close(fmt.Sprintf("setup timeout: not connected within %s", s.e.cfg.SetupTimeout))
			}
		})
	}

	if s.role == RolePublisher {
		s.pub = &publisher{s: s}
		pc.OnTrack(s.onTrack)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.inspected.pion}); err != nil {
		return nil, detail(ErrBadOffer, "%v", err)
	}
	if s.role == RoleViewer {
		if err := s.addSinks(); err != nil {
			return nil, err
		}
	}
	answer, err := s.answer(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkAnswer(s.inspected, s.role, answer); err != nil {
		return nil, err
	}
	// Only now the session joins its room: a failed setup never shows up
	// among the publishers or viewers.
	if s.role == RolePublisher {
		s.hub.addPublisher(s.pub)
	} else {
		s.hub.addViewer(s.view)
	}
	pubAddr := publicAddr(s.e.cfg.PublicIPs, lease.PublicPort)
	if pubAddr == "" {
		pubAddr = firstCandidateAddr(answer)
	}
	s.emitTimeline("answer", fmt.Sprintf("lease local UDP %d, public %s; candidates: %s",
		lease.LocalPort, pubAddr, strings.Join(candidateLines(answer), "; ")))
	return &Answer{SDP: answer, LocalPort: lease.LocalPort, PublicAddr: pubAddr, Codecs: answerCodecs(answer), ICEUfrag: iceUfrag(answer)}, nil
}

// answer creates the answer, waits for gathering (all candidates go in the
// answer: pinhole does not trickle, RFC 9725 section 4.3.1) and rewrites
// candidate ports to the public port.
func (s *session) answer(ctx context.Context) (string, error) {
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	ans, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return "", detail(ErrUnsupportedTracks, "%v", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(ans); err != nil {
		return "", detail(ErrBadOffer, "%v", err)
	}
	timer := time.NewTimer(gatherTimeout)
	defer timer.Stop()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-timer.C:
		return "", errors.New("ICE gathering did not complete")
	}
	local := s.pc.LocalDescription()
	if local == nil {
		return "", errors.New("no local description")
	}
	out := rewriteCandidatePorts(local.SDP, s.lease.LocalPort, s.lease.PublicPort)
	if tcp := s.e.tcp.Load(); tcp != nil {
		out = tcp.rewritePort(out)
	}
	return out, nil
}

// keyframeOut notes in the timeline how a video sink got its picture: the
// first time for a viewer, and after a switch of publisher. Only the first
// two are noted: a long session switching often must not fill its
// timeline.
func (s *session) keyframeOut(k keyframeNote) {
	if s.keyframes.Add(1) > 2 {
		return
	}
	if k.n > 0 {
		s.emitTimeline("keyframe-out", fmt.Sprintf("from the GOP cache: %d packets in %s, keyframe RTP timestamp %d",
			k.n, time.Since(k.at).Round(100*time.Microsecond), k.ts))
		return
	}
	s.emitTimeline("keyframe-out", fmt.Sprintf("live keyframe, RTP timestamp %d", k.ts))
}

// addSinks gives a viewer one outgoing track per kind it offered to receive.
func (s *session) addSinks() error {
	s.view = &viewer{s: s, want: s.want, sinks: map[webrtc.RTPCodecType]*sinkTrack{}}
	for _, t := range s.pc.GetTransceivers() {
		kind := t.Kind()
		if s.view.sinks[kind] != nil || (kind != webrtc.RTPCodecTypeAudio && kind != webrtc.RTPCodecTypeVideo) {
			continue
		}
		if t.Direction() == webrtc.RTPTransceiverDirectionInactive {
			continue
		}
		track := newSinkTrack(kind, "pinhole-"+s.room)
		track.onFirstWrite = func() { s.emitTimeline("first-rtp-out", kind.String()) }
		if kind == webrtc.RTPCodecTypeVideo {
			track.onKeyframe = s.keyframeOut
		}
		sender, err := s.pc.AddTrack(track)
		if err != nil {
			return detail(ErrUnsupportedTracks, "%s: %v", kind, err)
		}
		s.view.sinks[kind] = track
		s.readRTCP(sender, track)
	}
	if len(s.view.sinks) == 0 {
		return detail(ErrUnsupportedTracks, "the offer receives no audio or video")
	}
	return nil
}

// readRTCP drains a viewer's RTCP (the report interceptor works on it as
// it passes), answers its NACKs from the publisher's history and forwards
// its keyframe requests to the publisher.
func (s *session) readRTCP(sender *webrtc.RTPSender, t *sinkTrack) {
	video := t.kind == webrtc.RTPCodecTypeVideo
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 1500)
		resend := make([]byte, historyMaxPayload)
		var out rtp.Header
		for {
			n, _, err := sender.Read(buf)
			if err != nil {
				return
			}
			if !video {
				continue
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				switch p := p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					s.hub.viewerWantsKeyframe(s.view)
				case *rtcp.TransportLayerNack:
					t.retransmit(p, resend, &out)
				}
			}
		}
	}()
}

// onTrack starts forwarding a publisher track.
func (s *session) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	f := &forwarder{kind: remote.Kind(), codec: remote.Codec(), remote: remote}
	f.ck = kindOf(f.codec.MimeType)
	if f.kind == webrtc.RTPCodecTypeVideo {
		f.hist = newHistory()
		f.gop = newGOPCache(s.e.cfg.GOPCacheAge)
	}
	s.emitTimeline("track", fmt.Sprintf("%s %s", remote.Kind(), f.codec.MimeType))
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// Drain RTCP (sender reports) so the receiver's interceptors run.
		buf := make([]byte, 1500)
		for {
			if _, _, err := recv.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		if s.ctx.Err() != nil {
			return
		}
		if !s.hub.addTrack(s.pub, f) {
			s.emitTimeline("track-ignored", fmt.Sprintf("a second %s track (%s) is not forwarded", f.kind, f.codec.MimeType))
		}
		f.run(s) // an ignored track has no sinks: run only drains it
	}()
}

// rtpIn counts a packet from a publisher.
func (s *session) rtpIn(n int) {
	s.packetsIn.Add(1)
	s.bytesIn.Add(uint64(n))
	s.lastRTPIn.Store(time.Now().UnixNano())
	if !s.firstRTPIn.Load() && s.firstRTPIn.CompareAndSwap(false, true) {
		s.emitTimeline("first-rtp-in", "")
	}
}

// onPortPacket runs on the lease's read goroutine for the first packet and
// each new source address. A source is not a remote address yet: anyone
// can send to the port. It becomes one when ICE validates it (see
// onValidated); the first packet still proves the mapping forwards.
func (s *session) onPortPacket(port int, from netip.AddrPort, first bool) {
	if first {
		s.firstFrom.Store(&from)
		s.emitTimeline("first-packet", fmt.Sprintf("local UDP %d from %s (not yet validated by ICE)", port, from))
	}
}

// onValidated records the remote address of a selected candidate pair: a
// source ICE has validated with the session's credentials. The first time,
// it notes whether the first packet's source was that one.
func (s *session) onValidated(c *webrtc.ICECandidate) {
	a, err := netip.ParseAddr(c.Address)
	if err != nil || s.lease == nil {
		return
	}
	from := netip.AddrPortFrom(a.Unmap(), c.Port)
	if s.lease.Validate(from) {
		s.event(Event{Kind: EventRemoteAddr, Detail: from.String()})
	}
	if first := s.firstFrom.Load(); first != nil && s.firstNoted.CompareAndSwap(false, true) {
		d := fmt.Sprintf("ICE validated %s; the first packet's source %s is the same", from, *first)
		if *first != from {
			d = fmt.Sprintf("ICE validated %s; the first packet came from %s, which ICE has not validated", from, *first)
		}
		s.emitTimeline("remote-validated", d)
	}
}

// unvalidatedNote says how many packets on the port came from sources ICE
// never validated, and where the first packet came from.
func (s *session) unvalidatedNote() string {
	n := s.lease.conn.unvalidated.Load()
	if first := s.firstFrom.Load(); first != nil && !s.firstNoted.Load() {
		return fmt.Sprintf("; %d packets from sources ICE did not validate, the first from %s", n, *first)
	}
	return fmt.Sprintf("; %d packets from sources ICE did not validate", n)
}

// watchState reports state changes and ends the session when ICE fails or
// the peer closes. Teardown runs on its own goroutine: Pion's callbacks must
// not close their own peer connection synchronously.
func (s *session) watchState() {
	s.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.event(Event{Kind: EventState, State: st.String()})
		switch st {
		case webrtc.PeerConnectionStateConnected:
			if s.markConnected() {
				if s.setup != nil {
					s.setup.Stop()
				}
				if s.view != nil {
					s.hub.viewerConnected(s.view)
				}
			}
		case webrtc.PeerConnectionStateFailed:
			go s.close("connection failed")
		case webrtc.PeerConnectionStateClosed:
			go s.close("peer connection closed")
		}
	})
	s.pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		switch st {
		case webrtc.ICEConnectionStateChecking:
			s.emitTimeline("ice-checking", "")
		case webrtc.ICEConnectionStateConnected:
			s.iceUp.Store(true)
			s.emitTimeline("ice-connected", "")
		case webrtc.ICEConnectionStateDisconnected:
			s.emitTimeline("ice-disconnected", "")
		case webrtc.ICEConnectionStateFailed:
			s.emitTimeline("ice-failed", fmt.Sprintf("%d packets reached local UDP %d", s.lease.PacketsIn(), s.lease.LocalPort)+s.unvalidatedNote())
		}
	})
	sctp := s.pc.SCTP()
	if sctp == nil {
		return
	}
	dtls := sctp.Transport()
	dtls.OnStateChange(func(st webrtc.DTLSTransportState) {
		switch st {
		case webrtc.DTLSTransportStateConnected:
			s.emitTimeline("dtls-connected", "")
		case webrtc.DTLSTransportStateFailed:
			s.emitTimeline("dtls-failed", "")
		}
	})
	dtls.ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		d := p.String()
		if p.Local != nil && p.Remote != nil {
			d = fmt.Sprintf("local %s:%d (%s) <-> remote %s:%d (%s)", p.Local.Address, p.Local.Port, p.Local.Typ,
				p.Remote.Address, p.Remote.Port, p.Remote.Typ) + s.tcpPairNote(p)
		}
		s.event(Event{Kind: EventSelectedPair, Detail: d})
		s.noteTransport(p)
		if p.Remote != nil {
			s.onValidated(p.Remote)
		}
	})
}

// trickle adds remote candidates (RFC 8840) to the session.
func (s *session) trickle(body string) error {
	f, err := parseSDPFrag(body)
	if err != nil {
		return err
	}
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	if rd := s.pc.RemoteDescription(); rd != nil && f.ufrag != "" {
		if cur := iceUfrag(rd.SDP); cur != "" && cur != f.ufrag {
			return detail(ErrBadFragment, "ice-ufrag %q does not match the session's %q: an ICE restart needs If-Match: \"*\"", f.ufrag, cur)
		}
	}
	keep, err := s.admitCandidatesLocked("trickle", f.candidates)
	if err != nil {
		return err
	}
	for _, c := range keep {
		init := webrtc.ICECandidateInit{Candidate: c.candidate}
		if c.mid != "" {
			mid := c.mid
			init.SDPMid = &mid
		} else {
			zero := uint16(0)
			init.SDPMLineIndex = &zero
		}
		if err := s.pc.AddICECandidate(init); err != nil {
			return detail(ErrBadFragment, "candidate %q: %v", truncate(c.candidate, 60), err)
		}
	}
	s.emitTimeline("trickle", fmt.Sprintf("%d candidates", len(keep)))
	return nil
}

// admitCandidatesLocked counts a fragment's candidates against the
// session's cap (refusing the whole fragment beyond it) and returns those
// pinhole will check, noting the others in one timeline event. sigMu held.
func (s *session) admitCandidatesLocked(where string, cands []fragCandidate) ([]fragCandidate, error) {
	if s.candidates+len(cands) > s.e.cfg.MaxCandidates {
		return nil, detail(ErrBadFragment, "%d more ICE candidates would bring the session to %d, more than the %d a session accepts",
			len(cands), s.candidates+len(cands), s.e.cfg.MaxCandidates)
	}
	keep := cands[:0:0]
	var dropped []string
	for _, c := range cands {
		why := s.e.host.dropReason(c.candidate, s.trustLocal)
		if why == "malformed" {
			return nil, detail(ErrBadFragment, "candidate %q does not parse", truncate(c.candidate, 60))
		}
		if why != "" {
			dropped = append(dropped, fmt.Sprintf("%s (%s)", candidateAddr(c.candidate), why))
			continue
		}
		keep = append(keep, c)
	}
	s.candidates += len(cands)
	if len(dropped) > 0 {
		s.emitTimeline("candidates-dropped", droppedNote(where, len(cands), dropped))
	}
	return keep, nil
}

// restart performs an ICE restart (RFC 9725 section 4.3.2): the remote offer
// is the last one with the fragment's credentials, answered with fresh ones.
func (s *session) restart(body string) (string, error) {
	f, err := parseSDPFrag(body)
	if err != nil {
		return "", err
	}
	if f.ufrag == "" || f.pwd == "" {
		return "", detail(ErrBadFragment, "an ICE restart needs a=ice-ufrag and a=ice-pwd")
	}
	s.sigMu.Lock()
	rd := s.pc.RemoteDescription()
	if rd == nil {
		s.sigMu.Unlock()
		return "", detail(ErrBadFragment, "no remote description to restart")
	}
	keep, err := s.admitCandidatesLocked("ice-restart", f.candidates)
	if err != nil {
		s.sigMu.Unlock()
		return "", err
	}
	offer := replaceICECredentials(rd.SDP, f.ufrag, f.pwd)
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		s.sigMu.Unlock()
		return "", detail(ErrBadFragment, "%v", err)
	}
	s.sigMu.Unlock()
	ans, err := s.answer(context.Background())
	if err != nil {
		return "", err
	}
	for _, c := range keep {
		mid := c.mid
		_ = s.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.candidate, SDPMid: &mid})
	}
	s.emitTimeline("ice-restart", "")
	return answerFragment(ans), nil
}

// iceUfrags reads the ufrags of the current local and remote descriptions.
func (s *session) iceUfrags() (local, remote string) {
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	if s.pc == nil {
		return "", ""
	}
	if d := s.pc.LocalDescription(); d != nil {
		local = iceUfrag(d.SDP)
	}
	if d := s.pc.RemoteDescription(); d != nil {
		remote = iceUfrag(d.SDP)
	}
	return local, remote
}

func iceUfrag(sdpText string) string {
	for _, line := range strings.Split(sdpText, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

func firstCandidateAddr(answer string) string {
	for _, c := range candidateLines(answer) {
		f := strings.Fields(c)
		if len(f) >= 6 {
			port, _ := strconv.Atoi(f[5])
			return net.JoinHostPort(f[4], strconv.Itoa(port))
		}
	}
	return ""
}

// counters sums what the session received and sent. It is read only once
// setup has finished (started) or teardown holds life.
func (s *session) counters() Counters {
	c := Counters{PacketsIn: s.packetsIn.Load(), BytesIn: s.bytesIn.Load()}
	if s.view != nil {
		for _, t := range s.view.sinks {
			c.PacketsOut += t.packets.Load()
			c.BytesOut += t.bytes.Load()
		}
	}
	return c
}

func (s *session) reportCounters() {
	if !s.started.Load() {
		return
	}
	c := s.counters()
	if c == s.lastCount {
		return
	}
	s.lastCount = c
	s.event(Event{Kind: EventCounters, Counters: c})
}

// idle reports whether a connected publisher has sent no RTP for d.
func (s *session) idle(now time.Time, d time.Duration) bool {
	if d <= 0 || s.role != RolePublisher || !s.connected.Load() {
		return false
	}
	last := s.lastRTPIn.Load()
	if last == 0 {
		last = s.created.UnixNano()
	}
	return now.Sub(time.Unix(0, last)) > d
}

// close ends the session exactly once, in reverse order of acquisition:
// leave the room, close the peer connection, wait for its readers, free the
// lease, then report. It returns the teardown's errors, joined; concurrent
// and later callers wait for the first and get the same. Callers from Pion
// callbacks must use a goroutine: Pion must not close its own peer
// connection synchronously.
func (s *session) close(reason string) error {
	if !s.closing.CompareAndSwap(false, true) {
		<-s.done
		return s.closeErr
	}
	s.cancel()
	s.life.Lock() // waits for a setup in progress
	defer s.life.Unlock()
	var errs []error
	if s.setup != nil {
		s.setup.Stop()
	}
	if s.pub != nil {
		s.hub.removePublisher(s.pub)
	}
	if s.view != nil {
		s.hub.removeViewer(s.view)
	}
	if s.pc != nil {
		if err := s.pc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing peer connection: %w", err))
		}
	}
	s.wg.Wait()
	if s.lease != nil {
		if err := s.lease.Close(); err != nil {
			errs = append(errs, fmt.Errorf("releasing UDP %d: %w", s.lease.LocalPort, err))
		}
	}
	s.e.forget(s)
	s.event(Event{Kind: EventCounters, Counters: s.counters()})
	s.event(Event{Kind: EventClosed, Detail: reason})
	s.closeErr = errors.Join(errs...)
	close(s.done)
	return s.closeErr
}
