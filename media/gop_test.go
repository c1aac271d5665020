package media

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
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

// recordWriter stands where Pion's SRTP write stream is and keeps the
// sequence numbers written.
type recordWriter struct{ seqs *[]uint16 }

func (w recordWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	*w.seqs = append(*w.seqs, h.SequenceNumber)
	return len(p), nil
}
func (w recordWriter) Write(b []byte) (int, error) { return len(b), nil }

// A joiner's GOP burst, spread over the following live packets
// (gopBurstBudget; here the budget is always spent, so each live packet
// carries gopBurstMin burst packets), hands over to the live stream with no
// gap and no repeat; a sink already live sees every live packet once.
func TestGOPBurstPaced(t *testing.T) {
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	f := &forwarder{kind: webrtc.RTPCodecTypeVideo, codec: vp8, ck: codecVP8, gop: newGOPCache(time.Minute), burstBudget: -1}
	var liveSeqs, joinSeqs []uint16
	sink := func(seqs *[]uint16) *sinkTrack {
		s := newSinkTrack(webrtc.RTPCodecTypeVideo, "s")
		s.bound.Store(&binding{ssrc: 9, stream: recordWriter{seqs}, codecs: []webrtc.RTPCodecParameters{vp8}})
		s.ready.Store(true)
		f.addSink(s)
		return s
	}
	live := sink(&liveSeqs)
	var out rtp.Header
	forward := func(seq uint16) {
		payload := []byte{0x10, 0x01, 0, 0} // VP8 descriptor S=1, inter frame
		if seq == 100 {
			payload[1] = 0x00 // the keyframe
		}
		p := &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 7}, Payload: payload}
		key := isKeyframeStart(f.ck, p.Payload)
		f.gop.put(p, key)
		for _, s := range f.sinkList() {
			s.write(p, &f.codec, key, &out)
		}
		f.serveWaiting(f.sinkList())
	}
	seq := uint16(100)
	for ; seq < 160; seq++ {
		forward(seq)
	}
	joiner := sink(&joinSeqs)
	for ; seq < 200; seq++ {
		forward(seq)
		if seq == 160 && len(joinSeqs) != gopBurstMin {
			t.Fatalf("first live packet after the join carried %d burst packets, want %d", len(joinSeqs), gopBurstMin)
		}
	}
	if joiner.holding() || len(f.catching) != 0 {
		t.Fatal("the burst never caught up")
	}
	for i, s := range joinSeqs {
		if s != uint16(100+i) {
			t.Fatalf("joiner's packet %d has seq %d, want %d (all: %v)", i, s, 100+i, joinSeqs)
		}
	}
	if len(joinSeqs) != 100 || len(liveSeqs) != 100 || live.holding() {
		t.Fatalf("joiner got %d packets, live sink %d, want 100 each", len(joinSeqs), len(liveSeqs))
	}
}

// A sink that becomes able to take its burst (kick, when the viewer
// connects) is sent the cached GOP at once, without waiting for the
// track's next packet, and the live packets then follow with no gap and
// no repeat.
func TestGOPBurstKick(t *testing.T) {
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	f := &forwarder{kind: webrtc.RTPCodecTypeVideo, codec: vp8, ck: codecVP8, gop: newGOPCache(time.Minute), burstBudget: time.Minute}
	var out rtp.Header
	forward := func(seq uint16) {
		payload := []byte{0x10, 0x01, 0, 0}
		if seq == 100 {
			payload[1] = 0x00
		}
		p := &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 7}, Payload: payload}
		key := isKeyframeStart(f.ck, p.Payload)
		f.gopMu.Lock()
		f.gop.put(p, key)
		for _, s := range f.sinkList() {
			s.write(p, &f.codec, key, &out)
		}
		f.serveWaiting(f.sinkList())
		f.gopMu.Unlock()
	}
	for seq := uint16(100); seq < 110; seq++ {
		forward(seq)
	}
	var seqs []uint16
	joiner := newSinkTrack(webrtc.RTPCodecTypeVideo, "s")
	joiner.bound.Store(&binding{ssrc: 9, stream: recordWriter{&seqs}, codecs: []webrtc.RTPCodecParameters{vp8}})
	var notes []keyframeNote
	joiner.onKeyframe = func(k keyframeNote) { notes = append(notes, k) }
	f.addSink(joiner) // attached while connecting: nothing yet
	forward(110)
	if len(seqs) != 0 {
		t.Fatalf("a sink not yet connected was sent %v", seqs)
	}
	joiner.ready.Store(true)
	f.kickNow()
	if len(seqs) != 11 || joiner.holding() {
		t.Fatalf("after the kick the joiner has %v (holding %v), want seq 100-110 and live", seqs, joiner.holding())
	}
	if len(notes) != 1 || notes[0].n != 11 || notes[0].ts != 100*3000 {
		t.Fatalf("keyframe notes %+v, want one burst of 11 packets from the keyframe at RTP timestamp %d", notes, 100*3000)
	}
	forward(111)
	forward(112)
	for i, s := range seqs {
		if s != uint16(100+i) {
			t.Fatalf("joiner's packet %d has seq %d, want %d (all: %v)", i, s, 100+i, seqs)
		}
	}
	if len(seqs) != 13 {
		t.Fatalf("joiner got %v, want seq 100-112", seqs)
	}
}
