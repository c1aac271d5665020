package media

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// gopDefaultAge is how old the cached group of pictures may grow and still
// be sent to a joining viewer. One second covers viewers that arrive
// together (the reported case: browsers joining 100-250 ms apart, where the
// second one's keyframe request is refused by libwebrtc) and bounds what a
// burst costs: the browser plays the burst out at its RTP timestamps, so a
// viewer starts at most this far behind live, and at 2.5 Mbit/s the burst is
// about 300 packets. A joiner finding an older GOP asks for a keyframe.
const gopDefaultAge = time.Second

// gopMaxBytes and gopMaxPackets bound a cached GOP whatever its age: 2 MiB
// holds one second of an 8 Mbit/s screen share with its large keyframe, and
// 2048 packets one second of small packets at that rate. A GOP that outgrows
// them is dropped (a truncated one would end in a gap) until the next
// keyframe. The cache's memory is the arena (at most gopMaxBytes, grown on
// demand and reused) plus the packet index.
const (
	gopMaxBytes   = 2 << 20
	gopMaxPackets = 2048
	gopMinArena   = 64 << 10 // first arena: a few keyframes of a small stream
)

// gopCache keeps the current group of pictures of one publisher video
// track: its last keyframe and every packet since, in arrival order, so a
// viewer that starts waiting for a keyframe is sent that keyframe at once
// instead of after a request to the publisher and its round trip.
//
// Only the forwarder goroutine writes and reads the packets (put, serve),
// so they need no lock: a burst runs between two packets of the track,
// which is also what makes the handoff from cached to live packets exact.
// Other goroutines only ask fresh.
type gopCache struct {
	maxAge time.Duration
	epoch  time.Time // times below are durations since epoch (monotonic)

	arena []byte
	pkts  []gopPacket
	valid bool
	ssrc  uint32
	keyTS uint32
	start time.Duration
	// gen changes whenever the cached GOP does (a new one, a drop), so a
	// burst in progress notices its packets are gone.
	gen uint32

	// freshUntil is when the cached GOP stops being servable (since
	// epoch); 0 when there is none. Read by joining viewers' goroutines.
	freshUntil atomic.Int64
}

// gopPacket locates one cached packet in the arena.
type gopPacket struct {
	off, n int
	seq    uint16
	ts     uint32
	marker bool
}

// newGOPCache returns a cache keeping GOPs up to maxAge old (0: the
// default), or nil when maxAge is negative: no cache.
func newGOPCache(maxAge time.Duration) *gopCache {
	if maxAge < 0 {
		return nil
	}
	if maxAge == 0 {
		maxAge = gopDefaultAge
	}
	return &gopCache{maxAge: maxAge, epoch: time.Now()}
}

// put adds the packet the forwarder just received. A keyframe start begins
// a new GOP unless it belongs to the keyframe already cached (same RTP
// timestamp: H.264 sends SPS/PPS then the IDR, VP9 one packet per spatial
// layer, each of which reads as a keyframe start).
func (c *gopCache) put(p *rtp.Packet, key bool) {
	now := time.Since(c.epoch)
	if key && !(c.valid && p.SSRC == c.ssrc && p.Timestamp == c.keyTS) {
		c.arena, c.pkts = c.arena[:0], c.pkts[:0]
		c.valid, c.ssrc, c.keyTS, c.start = true, p.SSRC, p.Timestamp, now
		c.gen++
		c.freshUntil.Store(int64(now + c.maxAge))
	}
	if !c.valid {
		return
	}
	need := len(c.arena) + len(p.Payload)
	if p.SSRC != c.ssrc || now-c.start > c.maxAge || len(c.pkts) >= gopMaxPackets || need > gopMaxBytes {
		c.drop()
		return
	}
	if need > cap(c.arena) {
		grown := make([]byte, len(c.arena), min(max(2*cap(c.arena), need, gopMinArena), gopMaxBytes))
		copy(grown, c.arena)
		c.arena = grown
	}
	off := len(c.arena)
	c.arena = append(c.arena, p.Payload...)
	c.pkts = append(c.pkts, gopPacket{off: off, n: len(p.Payload), seq: p.SequenceNumber, ts: p.Timestamp, marker: p.Marker})
}

// drop forgets the GOP (its buffers are kept for the next one).
func (c *gopCache) drop() {
	c.valid = false
	c.gen++
	c.arena, c.pkts = c.arena[:0], c.pkts[:0]
	c.freshUntil.Store(0)
}

// fresh reports, from any goroutine, whether a viewer attaching now would
// be served from the cache. It can turn false before the forwarder's next
// packet (the GOP outgrew its bounds); the keyframe re-ask in hub.go covers
// that.
func (c *gopCache) fresh() bool {
	until := c.freshUntil.Load()
	return until != 0 && int64(time.Since(c.epoch)) < until
}

// servable reports, on the forwarder goroutine, whether there is a GOP to
// burst.
func (c *gopCache) servable() bool {
	return c.valid && len(c.pkts) > 0
}

// gopBurstBudget is how long a forwarder spends on GOP bursts between two
// live packets of its track. A burst is up to a second of video (~300
// packets at 2.5 Mbit/s) and each write costs 10-30 us in Pion and the
// kernel: sent whole, it held every other viewer's next packet for ~6 ms,
// and ten viewers joining together for ~60 ms. In slices of 250 us (about
// ten packets, below the 0.36 ms between a keyframe's paced packets) the
// others' added delay stays within a packet interval, and a joiner still
// gains ten packets per live one: its keyframe is out within a few live
// packets, a whole second's GOP within ~30.
const gopBurstBudget = 250 * time.Microsecond

// gopBurstMin is how many burst packets a sink is sent per live packet
// whatever the budget, so a burst catches up (3 packets gained per live
// one) even when a starved CPU has used the budget up at the first write.
const gopBurstMin = 4

// catchUp is one sink being sent the cached GOP: gen is the GOP, next the
// index of the next packet to send. Forwarder goroutine only.
type catchUp struct {
	t    *sinkTrack
	gen  uint32
	next int
}

// serve continues cu's burst until the sink has caught up with the live
// packets (done), or until deadline (not done: the forwarder resumes it
// after its next packet). Every cached packet but the last is sent held
// (the sink keeps dropping live packets); the last is the packet the
// forwarder just received and dropped for this sink, so once it is sent
// the sink is live with no gap and no duplicate. The sink waits for a
// keyframe (waitingForKey) until then, so the publisher's keyframe re-ask
// goes on meanwhile: a burst still unfinished after keyframeInterval (a
// starved CPU) gets a live keyframe asked for, which overtakes it, and a
// sink whose GOP went away mid-burst (outgrown, too old) is left to that.
func (c *gopCache) serve(cu *catchUp, codec *webrtc.RTPCodecParameters, scratch *rtp.Packet, out *rtp.Header, deadline time.Time) (done bool) {
	sent := 0
	t := cu.t
	if !t.holding() {
		return true // went live on a live keyframe
	}
	if cu.next == 0 {
		cu.gen = c.gen
	}
	if !c.servable() || cu.gen != c.gen {
		return true
	}
	for cu.next < len(c.pkts) {
		if sent >= gopBurstMin && time.Now().After(deadline) {
			return false
		}
		sent++
		g := &c.pkts[cu.next]
		last := cu.next == len(c.pkts)-1
		scratch.Header = rtp.Header{Version: 2, Marker: g.marker, SequenceNumber: g.seq, Timestamp: g.ts, SSRC: c.ssrc}
		scratch.Payload = c.arena[g.off : g.off+g.n]
		mode := sendHeld
		if last {
			mode = sendLast
		}
		if !t.send(scratch, codec, cu.next == 0 || last, mode, out) {
			return true // not ready or gone: if it comes back, it is served anew
		}
		cu.next++
	}
	return true
}
