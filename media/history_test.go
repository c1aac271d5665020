package media

import (
	"bytes"
	"sync"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sentPackets records what a sink hands to its binding's write stream (the
// boundary with Pion's SRTP writer), so the rewrite of retransmissions can
// be checked packet by packet.
type sentPackets struct {
	mu   sync.Mutex
	pkts []rtp.Packet
}

func (s *sentPackets) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts = append(s.pkts, rtp.Packet{Header: *h, Payload: bytes.Clone(payload)})
	return len(payload), nil
}

func (s *sentPackets) Write(b []byte) (int, error) { return len(b), nil }

func TestHistoryKeepsTheLastPackets(t *testing.T) {
	h := newHistory()
	buf := make([]byte, historyMaxPayload)
	for seq := 0; seq < historySize+10; seq++ {
		h.put(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(65530 + seq), SSRC: 7, Timestamp: uint32(seq)}, Payload: []byte{byte(seq)}})
	}
	base := uint16(65530) // the history wraps with the sequence numbers
	last := base + historySize + 9
	if n, ts, _, ok := h.get(7, last, buf); !ok || n != 1 || buf[0] != byte((historySize+9)%256) || ts != historySize+9 {
		t.Fatalf("newest packet: ok %v n %d payload %d ts %d", ok, n, buf[0], ts)
	}
	if _, _, _, ok := h.get(7, last-historySize+1, buf); !ok {
		t.Fatal("oldest kept packet missing")
	}
	if _, _, _, ok := h.get(7, last-historySize, buf); ok {
		t.Fatal("a packet older than the history was returned")
	}
	if _, _, _, ok := h.get(8, last, buf); ok {
		t.Fatal("a packet of another SSRC was returned")
	}
}

// A viewer's NACK is answered from the publisher's history with the
// viewer's own SSRC, payload type and sequence/timestamp offsets.
func TestSinkRetransmitsFromHistory(t *testing.T) {
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	f := &forwarder{kind: webrtc.RTPCodecTypeVideo, codec: vp8, ck: codecVP8, hist: newHistory()}
	sent := &sentPackets{}
	sink := newSinkTrack(webrtc.RTPCodecTypeVideo, "s")
	viewerVP8 := vp8
	viewerVP8.PayloadType = 120
	sink.bound.Store(&binding{ssrc: 4242, stream: sent, codecs: []webrtc.RTPCodecParameters{viewerVP8}})
	sink.ready.Store(true)
	f.addSink(sink)

	var out rtp.Header
	for i := 0; i < 10; i++ {
		p := &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SSRC: 99, SequenceNumber: uint16(1000 + i), Timestamp: 5000, Marker: i == 9},
			Payload: []byte{0x10, byte(i)}, // VP8, S=1, frame tag: key frame
		}
		f.hist.put(p)
		if !sink.write(p, &f.codec, i == 0, &out) {
			t.Fatalf("packet %d not forwarded", i)
		}
	}
	sink.retransmit(&rtcp.TransportLayerNack{MediaSSRC: 4242, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{1003, 1009, 2000})},
		make([]byte, historyMaxPayload), &out)

	sent.mu.Lock()
	defer sent.mu.Unlock()
	if len(sent.pkts) != 12 {
		t.Fatalf("sent %d packets, want 10 forwarded + 2 retransmitted", len(sent.pkts))
	}
	for i, want := range []uint16{1003, 1009} {
		got := sent.pkts[10+i]
		orig := sent.pkts[want-1000]
		if got.SequenceNumber != want || got.SSRC != 4242 || got.PayloadType != 120 ||
			got.Timestamp != orig.Timestamp || got.Marker != orig.Marker || !bytes.Equal(got.Payload, orig.Payload) {
			t.Errorf("retransmission %d: %+v, want a copy of %+v", i, got, orig)
		}
	}
	if sink.resent.Load() != 2 {
		t.Errorf("resent = %d, want 2", sink.resent.Load())
	}
}
