package media

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// The cache starts a GOP at a keyframe, keeps the packets of the same
// keyframe together (H.264 SPS/PPS then IDR both read as keyframe starts),
// drops a GOP that outgrows its bounds and reuses its buffers.
func TestGOPCache(t *testing.T) {
	c := newGOPCache(time.Minute)
	pkt := func(seq uint16, ts uint32, n int) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, SSRC: 7}, Payload: make([]byte, n)}
	}
	c.put(pkt(1, 100, 100), false)
	if c.servable() || c.fresh() {
		t.Fatal("servable before any keyframe")
	}
	c.put(pkt(2, 200, 100), true)  // SPS/PPS
	c.put(pkt(3, 200, 1000), true) // IDR start, same frame
	c.put(pkt(4, 300, 500), false)
	if !c.servable() || !c.fresh() || len(c.pkts) != 3 || c.pkts[0].seq != 2 {
		t.Fatalf("want a GOP of seq 2-4, got %+v", c.pkts)
	}
	c.put(pkt(5, 400, 800), true) // next keyframe: a new GOP
	if len(c.pkts) != 1 || c.pkts[0].seq != 5 {
		t.Fatalf("want a GOP of seq 5, got %+v", c.pkts)
	}
	for seq := uint16(6); c.valid; seq++ {
		c.put(pkt(seq, uint32(seq)*100, 1200), false)
	}
	if c.fresh() || c.servable() || cap(c.arena) > gopMaxBytes {
		t.Fatalf("an oversized GOP must be dropped within %d bytes (arena %d)", gopMaxBytes, cap(c.arena))
	}
	if allocs := testing.AllocsPerRun(100, func() {
		c.put(pkt(9, 900, 1200), true)
		c.put(pkt(10, 1000, 1200), false)
	}); allocs > 2 { // the two test packets themselves
		t.Fatalf("put allocates %v per run once warm", allocs)
	}
}
