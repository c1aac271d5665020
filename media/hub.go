package media

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// keyframeInterval is the least time between two keyframe requests to a
// publisher. Joining viewers and viewers' own PLI/FIR are coalesced to at
// most one request per interval (with one deferred request so the last
// asker is never forgotten): a keyframe is 10-30 times a delta frame, and an
// encoder asked for one on every viewer's whim would spend its bitrate on
// them. It is above libwebrtc's kMinKeyframeSendIntervalMs (300 ms, in
// video/encoder_rtcp_feedback.cc), below which a browser publisher silently
// drops a request: the 100 ms margin absorbs jitter between the moment
// pinhole sends a PLI and the moment the browser receives it.
const keyframeInterval = 400 * time.Millisecond

// While a sink of a publisher waits for a keyframe, pinhole asks again each
// keyframeInterval (a request can be dropped: refused by the encoder's own
// limit, lost on the way, made while the encoder was busy), then, after
// reaskFast unanswered re-asks (two seconds), backs off by doubling up to
// reaskMaxInterval, for publishers that ignore requests and send keyframes
// on their own schedule (OBS, ffmpeg). It stops as soon as no sink waits.
const (
	reaskFast        = 5
	reaskMaxInterval = 3200 * time.Millisecond
)

// reaskInterval is the wait before the next re-ask after tries of them.
func reaskInterval(tries int) time.Duration {
	d := keyframeInterval
	for i := reaskFast; i < tries && d < reaskMaxInterval; i++ {
		d *= 2
	}
	return min(d, reaskMaxInterval)
}

// hub is one room's forwarding plane: its publishers, its viewers and who
// follows whom. Membership changes take mu; the packet path does not.
type hub struct {
	room    string
	mu      sync.Mutex
	pubs    []*publisher // in arrival order: the last is the newest
	viewers map[string]*viewer
}

// publisher is the forwarding side of a WHIP session.
type publisher struct {
	s      *session
	tracks map[webrtc.RTPCodecType]*forwarder // guarded by hub.mu

	videoSSRC atomic.Uint32
	// video is the forwarded video track, read by the keyframe logic
	// without hub.mu.
	video atomic.Pointer[forwarder]

	// Keyframe requests (see requestKeyframe). kfTimer is the one pending
	// decision: a deferred request or a re-ask check.
	kfMu     sync.Mutex
	kfLast   time.Time // last PLI sent
	kfWant   bool      // a request waits for the rate limit
	kfTries  int       // re-asks since the last explicit request
	kfTimer  *time.Timer
	kfDue    time.Time // when kfTimer fires, if kfArmed
	kfArmed  bool
	kfClosed bool
}

// viewer is the forwarding side of a WHEP session.
type viewer struct {
	s         *session
	want      string     // publisher id asked for, "" = newest
	following *publisher // guarded by hub.mu
	sinks     map[webrtc.RTPCodecType]*sinkTrack
}

// forwarder reads one publisher track and writes every packet to the sinks
// attached to it. The sink list is copy-on-write, so the packet path takes
// no lock to read it.
type forwarder struct {
	kind   webrtc.RTPCodecType
	codec  webrtc.RTPCodecParameters
	ck     codecKind
	remote *webrtc.TrackRemote
	sinks  atomic.Pointer[[]*sinkTrack]
	// hist keeps the last packets of a video track for viewers' NACKs.
	hist *history
	// gop keeps the current group of pictures of a video track for
	// viewers that join (nil: audio, or the cache is disabled).
	gop *gopCache
	// gopMu serialises the GOP cache's users: the forwarder loop (put, a
	// video packet's live writes, the bursts between packets) and kick,
	// which starts a burst as soon as a sink can take it. Held across a
	// packet's writes, so a burst begun by kick ends exactly where the live
	// packets resume. Uncontended but for a kick: ~20 ns a packet.
	gopMu sync.Mutex
	// catching are the sinks being sent the GOP; burst and burstOut are
	// the bursts' scratch space (gopMu).
	catching []catchUp
	burst    rtp.Packet
	burstOut rtp.Header
	// burstBudget replaces gopBurstBudget when not 0 (tests).
	burstBudget time.Duration
}

func newHub(room string) *hub {
	return &hub{room: room, viewers: map[string]*viewer{}}
}

func (f *forwarder) setSinks(s []*sinkTrack) { f.sinks.Store(&s) }

func (f *forwarder) addSink(t *sinkTrack) {
	cur := f.sinkList()
	if slices.Contains(cur, t) {
		return
	}
	t.resetSource()
	t.src.Store(f)
	f.setSinks(append(slices.Clone(cur), t))
}

func (f *forwarder) removeSink(t *sinkTrack) {
	cur := f.sinkList()
	i := slices.Index(cur, t)
	if i < 0 {
		return
	}
	t.src.CompareAndSwap(f, nil)
	f.setSinks(slices.Delete(slices.Clone(cur), i, i+1))
}

func (f *forwarder) sinkList() []*sinkTrack {
	if p := f.sinks.Load(); p != nil {
		return *p
	}
	return nil
}

// parallelSinks is the audience from which a track's packets are written
// by several goroutines, shardSinks viewers each, at most one per core the
// runtime uses (GOMAXPROCS; at least two, as before). A write costs 10-30 us
// (SRTP, interceptors, sendto, which on loopback also runs the receiver's
// network stack), so with 50 viewers written one after another the last
// gets its copy more than a millisecond after the first, and a keyframe's
// packets queue behind each other. Shards of 8 bound one goroutine's share
// of a packet to ~0.2 ms; the Go scheduler spreads them over the cores and
// a writer blocked in sendto no longer holds the others back. Below 16
// viewers one goroutine is cheaper than the wake-ups.
const (
	parallelSinks = 16
	shardSinks    = 8
)

// fanJob is one shard of one packet's fan-out.
type fanJob struct {
	pkt   *rtp.Packet
	key   bool
	sinks []*sinkTrack
}

// fanPool is a forwarder's writer goroutines; the forwarder hands each a
// shard of a packet's sinks and writes the first shard itself. The jobs go
// by value through unbuffered-per-helper channels: nothing is allocated
// per packet.
type fanPool struct {
	jobs []chan fanJob
	done chan struct{}
}

// grow makes sure the pool has at least n helpers.
func (p *fanPool) grow(f *forwarder, n int) {
	if p.done == nil {
		// Buffered so helpers never wait for the forwarder to collect.
		p.done = make(chan struct{}, 64)
	}
	for len(p.jobs) < n {
		c := make(chan fanJob, 1)
		p.jobs = append(p.jobs, c)
		go f.helper(c, p.done)
	}
}

func (p *fanPool) close() {
	for _, c := range p.jobs {
		close(c)
	}
	for range p.jobs {
		<-p.done
	}
}

// run is the forwarding loop of one publisher track. It owns buf, pkt and
// out, so nothing is allocated per packet.
func (f *forwarder) run(s *session) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var out rtp.Header
	var pool fanPool
	defer pool.close()
	// More writers than the runtime runs at once only add switches.
	writers := max(2, runtime.GOMAXPROCS(0))
	for {
		n, _, err := f.remote.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		s.rtpIn(n)
		if len(pkt.Payload) == 0 {
			continue // padding-only probe: nothing for a viewer to decode
		}
		if f.hist != nil {
			f.hist.put(&pkt)
		}
		key := f.kind == webrtc.RTPCodecTypeVideo && isKeyframeStart(f.ck, pkt.Payload)
		if f.gop != nil {
			f.gopMu.Lock()
			f.gop.put(&pkt, key)
		}
		sinks := f.sinkList()
		if len(sinks) < parallelSinks {
			for _, t := range sinks {
				t.write(&pkt, &f.codec, key, &out)
			}
		} else {
			// pkt (and buf under it) stays untouched until every helper is done.
			shards := min((len(sinks)+shardSinks-1)/shardSinks, writers)
			size := (len(sinks) + shards - 1) / shards
			pool.grow(f, shards-1)
			for i := 1; i < shards; i++ {
				pool.jobs[i-1] <- fanJob{pkt: &pkt, key: key, sinks: sinks[min(i*size, len(sinks)):min((i+1)*size, len(sinks))]}
			}
			for _, t := range sinks[:size] {
				t.write(&pkt, &f.codec, key, &out)
			}
			for i := 1; i < shards; i++ {
				<-pool.done
			}
		}
		if f.gop != nil {
			f.serveWaiting(sinks)
			f.gopMu.Unlock()
		}
	}
}

// kick starts the GOP burst of a sink that has just become able to take
// one (connected, its sender started), on a goroutine of its own, instead
// of at the track's next packet: that is a frame interval away, and up to
// ~50 ms from a browser still at its start bitrate. Its first slice runs
// now, the rest between live packets as usual. Safe on a nil forwarder.
func (f *forwarder) kick() {
	if f == nil || f.gop == nil || !f.gop.fresh() {
		return
	}
	go f.kickNow()
}

func (f *forwarder) kickNow() {
	f.gopMu.Lock()
	defer f.gopMu.Unlock()
	f.serveWaiting(f.sinkList())
}

// serveWaiting sends the cached GOP to the sinks waiting for a keyframe,
// once the packet just received has gone to all the others, so a burst
// delays their next packet, never this one, and by at most gopBurstBudget:
// a burst longer than that goes on after the next packets (gopCache.serve).
// The cache holds the last packet received, and the waiting sinks dropped
// it, so each burst ends exactly where the live packets resume: no gap, no
// duplicate. gopMu, held by the forwarder from a packet's put to here and
// by kick, is what makes that handoff exact.
func (f *forwarder) serveWaiting(sinks []*sinkTrack) {
	scratch, out := &f.burst, &f.burstOut
	if f.gop == nil {
		return
	}
	if f.gop.servable() {
		for _, t := range sinks {
			if t.waitingForKey() && !f.catchingUp(t) {
				f.catching = append(f.catching, catchUp{t: t})
			}
		}
	}
	if len(f.catching) == 0 {
		return
	}
	budget := gopBurstBudget
	if f.burstBudget != 0 {
		budget = f.burstBudget
	}
	deadline := time.Now().Add(budget)
	kept := f.catching[:0]
	for i := range f.catching {
		cu := f.catching[i]
		if cu.t.src.Load() == f && !f.gop.serve(&cu, &f.codec, scratch, out, deadline) {
			kept = append(kept, cu)
		}
	}
	clear(f.catching[len(kept):])
	f.catching = kept
}

// catchingUp reports whether t's burst is under way.
func (f *forwarder) catchingUp(t *sinkTrack) bool {
	for i := range f.catching {
		if f.catching[i].t == t {
			return true
		}
	}
	return false
}

// helper writes the shards it is given, signalling done after each; it
// exits, signalling done once more, when jobs is closed.
func (f *forwarder) helper(jobs <-chan fanJob, done chan<- struct{}) {
	var out rtp.Header
	for j := range jobs {
		for _, t := range j.sinks {
			t.write(j.pkt, &f.codec, j.key, &out)
		}
		done <- struct{}{}
	}
	done <- struct{}{}
}

// addPublisher registers p; viewers following "the newest" switch to it,
// and viewers waiting for exactly p attach.
func (h *hub) addPublisher(p *publisher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pubs = append(h.pubs, p)
	for _, v := range h.viewers {
		if v.want == "" || v.want == p.s.id {
			h.followLocked(v, p)
		}
	}
}

// addTrack attaches a newly arrived publisher track to its followers.
//
// A publisher forwards one track of each kind: a second one (a simulcast
// layer, a second camera) is refused, and the caller only drains it.
// Viewers have one sink per kind, so two forwarders would interleave two
// streams into one.
func (h *hub) addTrack(p *publisher, f *forwarder) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.tracks == nil {
		p.tracks = map[webrtc.RTPCodecType]*forwarder{}
	}
	if p.tracks[f.kind] != nil {
		return false
	}
	p.tracks[f.kind] = f
	if f.kind == webrtc.RTPCodecTypeVideo {
		p.videoSSRC.Store(uint32(f.remote.SSRC()))
		p.video.Store(f)
	}
	for _, v := range h.viewers {
		if v.following == p {
			h.attachLocked(v, p, f)
		}
	}
	// The track's first packets are its first keyframe (an encoder starts
	// with one), so its viewers need no request now; one would only make a
	// second keyframe, which a browser at its start bitrate paces out over
	// ~100 ms while they wait. The re-ask covers a track that starts
	// without one.
	if f.kind == webrtc.RTPCodecTypeVideo && len(f.sinkList()) > 0 {
		p.expectKeyframe()
	}
	return true
}

// removePublisher detaches p's followers; those following "the newest" move
// to the newest one left.
func (h *hub) removePublisher(p *publisher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := slices.Index(h.pubs, p)
	if i < 0 {
		return
	}
	h.pubs = slices.Delete(h.pubs, i, i+1)
	var next *publisher
	if len(h.pubs) > 0 {
		next = h.pubs[len(h.pubs)-1]
	}
	for _, v := range h.viewers {
		if v.following != p {
			continue
		}
		h.unfollowLocked(v)
		if v.want == "" && next != nil {
			h.followLocked(v, next)
		}
	}
	p.stopKeyframes()
}

// addViewer registers v and attaches it to the publisher it wants.
func (h *hub) addViewer(v *viewer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.viewers[v.s.id] = v
	for i := len(h.pubs) - 1; i >= 0; i-- {
		if p := h.pubs[i]; v.want == "" || v.want == p.s.id {
			h.followLocked(v, p)
			return
		}
	}
}

func (h *hub) removeViewer(v *viewer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unfollowLocked(v)
	delete(h.viewers, v.s.id)
}

// empty reports whether the hub has no member left.
func (h *hub) empty() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pubs) == 0 && len(h.viewers) == 0
}

// publisherIDs returns the live publishers, newest first.
func (h *hub) publisherIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.pubs))
	for i := len(h.pubs) - 1; i >= 0; i-- {
		out = append(out, h.pubs[i].s.id)
	}
	return out
}

func (h *hub) followLocked(v *viewer, p *publisher) {
	if v.following == p {
		return
	}
	h.unfollowLocked(v)
	v.following = p
	v.s.emitTimeline("following", p.s.id)
	video := false
	for _, f := range p.tracks {
		if h.attachLocked(v, p, f) && f.kind == webrtc.RTPCodecTypeVideo {
			video = true
		}
	}
	// A viewer still connecting is asked for a keyframe when it connects
	// (viewerConnected): one sent now would arrive before its SRTP keys.
	if video && v.s.connected.Load() {
		p.joinKeyframe()
	}
}

// attachLocked attaches v's sink of f's kind to f, unless v did not offer a
// codec that can carry f's: then the mismatch goes into v's timeline.
func (h *hub) attachLocked(v *viewer, p *publisher, f *forwarder) bool {
	t := v.sinks[f.kind]
	if t == nil {
		return false
	}
	if !t.accepts(f.codec.RTPCodecCapability) {
		v.s.emitTimeline("codec-mismatch", "publisher "+p.s.id+" sends "+f.codec.MimeType+
			", which this viewer did not offer")
		return false
	}
	f.addSink(t)
	return true
}

func (h *hub) unfollowLocked(v *viewer) {
	p := v.following
	if p == nil {
		return
	}
	for kind, f := range p.tracks {
		if t := v.sinks[kind]; t != nil {
			f.removeSink(t)
		}
	}
	v.following = nil
}

// viewerConnected opens v's sinks now that its SRTP keys exist and gets
// it the keyframe it needs to start decoding.
func (h *hub) viewerConnected(v *viewer) {
	for _, t := range v.sinks {
		t.ready.Store(true)
		// Pion bound the sink when the answer was set (an answerer
		// starts its senders then), so a burst can go out now. Not from
		// Bind: Pion installs the sender's write path only after Bind
		// returns, and writes before that vanish.
		if t.bound.Load() != nil {
			t.src.Load().kick()
		}
	}
	if v.sinks[webrtc.RTPCodecTypeVideo] == nil {
		return
	}
	h.mu.Lock()
	p := v.following
	h.mu.Unlock()
	if p != nil {
		p.joinKeyframe()
	}
}

// viewerWantsKeyframe forwards a viewer's PLI or FIR to its publisher.
func (h *hub) viewerWantsKeyframe(v *viewer) {
	h.mu.Lock()
	p := v.following
	h.mu.Unlock()
	if p != nil {
		p.requestKeyframe()
	}
}

// joinKeyframe gets a keyframe to a viewer that just attached: from the
// video forwarder's GOP cache when it holds a fresh one (the forwarder
// sends it at its next packet, with no request to the publisher), from
// the publisher otherwise. Either way the re-ask check follows, which asks
// the publisher if the viewer is still waiting then.
func (p *publisher) joinKeyframe() {
	if f := p.video.Load(); f != nil && f.gop != nil && f.gop.fresh() {
		p.expectKeyframe()
		return
	}
	p.requestKeyframe()
}

// expectKeyframe arms the re-ask check without asking now: a keyframe is
// on its way (cached, or the first of a new track), and the check asks the
// publisher only if a sink still waits when it fires.
func (p *publisher) expectKeyframe() {
	p.kfMu.Lock()
	if !p.kfClosed {
		p.armLocked(keyframeInterval)
	}
	p.kfMu.Unlock()
}

// requestKeyframe sends a PLI to the publisher now, or at the end of the
// current rate-limit interval, and keeps asking, every keyframeInterval
// and then less often, while any of its sinks waits for a keyframe.
func (p *publisher) requestKeyframe() {
	p.kfMu.Lock()
	if p.kfClosed {
		p.kfMu.Unlock()
		return
	}
	p.kfTries = 0
	wait := keyframeInterval - time.Since(p.kfLast)
	send := wait <= 0 && !p.kfWant
	if send {
		p.kfLast = time.Now()
		p.armLocked(keyframeInterval)
	} else {
		p.kfWant = true
		p.armLocked(max(wait, 0))
	}
	p.kfMu.Unlock()
	if send {
		// The callers hold hub.mu or run on Pion's goroutines: the RTCP
		// write goes elsewhere.
		go p.sendPLI()
	}
}

// armLocked makes the keyframe timer fire within d. Called with kfMu held.
func (p *publisher) armLocked(d time.Duration) {
	due := time.Now().Add(d)
	if p.kfArmed && !p.kfDue.After(due) {
		return
	}
	p.kfArmed, p.kfDue = true, due
	if p.kfTimer == nil {
		p.kfTimer = time.AfterFunc(d, p.keyframeTick)
		return
	}
	p.kfTimer.Reset(d)
}

// keyframeTick sends the deferred request, or a re-ask when a sink still
// waits for a keyframe, or stops when none does. An early or extra tick
// (a Reset racing a firing timer) only re-arms: the rate limit holds.
func (p *publisher) keyframeTick() {
	waiting := p.sinksWaiting()
	p.kfMu.Lock()
	p.kfArmed = false
	if p.kfClosed || (!p.kfWant && !waiting) {
		p.kfWant, p.kfTries = false, 0
		p.kfMu.Unlock()
		return
	}
	if wait := keyframeInterval - time.Since(p.kfLast); wait > 0 {
		p.armLocked(wait)
		p.kfMu.Unlock()
		return
	}
	if !p.kfWant {
		p.kfTries++
	}
	p.kfWant = false
	p.kfLast = time.Now()
	p.armLocked(reaskInterval(p.kfTries))
	p.kfMu.Unlock()
	p.sendPLI()
}

// sinksWaiting reports whether a connected sink of p's video waits for a
// keyframe.
func (p *publisher) sinksWaiting() bool {
	f := p.video.Load()
	if f == nil {
		return false
	}
	for _, t := range f.sinkList() {
		if t.waitingForKey() {
			return true
		}
	}
	return false
}

func (p *publisher) stopKeyframes() {
	p.kfMu.Lock()
	defer p.kfMu.Unlock()
	p.kfClosed = true
	if p.kfTimer != nil {
		p.kfTimer.Stop()
	}
}

func (p *publisher) sendPLI() {
	ssrc := p.videoSSRC.Load()
	if ssrc == 0 {
		return
	}
	if err := p.s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err == nil {
		p.s.plisSent.Add(1)
	}
}
