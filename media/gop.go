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
// Only the forwarder goroutine writes and reads the packets (put, burst),
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

// burst writes the cached GOP, keyframe first, to a sink waiting for a
// keyframe: the sink rebases its sequence numbers and timestamps on the
// keyframe as it would on a live one, so the burst and the live packets
// after it form one continuous stream. scratch and out are the forwarder's.
// It stops at the first packet the sink refuses (not ready, viewer gone).
func (c *gopCache) burst(t *sinkTrack, codec *webrtc.RTPCodecParameters, scratch *rtp.Packet, out *rtp.Header) int {
	for i := range c.pkts {
		g := &c.pkts[i]
		scratch.Header = rtp.Header{Version: 2, Marker: g.marker, SequenceNumber: g.seq, Timestamp: g.ts, SSRC: c.ssrc}
		scratch.Payload = c.arena[g.off : g.off+g.n]
		if !t.write(scratch, codec, i == 0, out) {
			return i
		}
	}
	return len(c.pkts)
}
