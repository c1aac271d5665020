package media

import (
	"fmt"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discardWriter stands where Pion's SRTP write stream is: the benchmark
// below measures pinhole's own per-packet work (header rewrite, history,
// sink list), not Pion's encryption or the sendto syscall, which the
// end-to-end benchmarks in ./bench include.
type discardWriter struct{}

func (discardWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) { return len(p), nil }
func (discardWriter) Write(b []byte) (int, error)                   { return len(b), nil }

// BenchmarkForwardPacket is one publisher video packet through the
// forwarder's loop body to every attached viewer sink: parse, history copy,
// keyframe check, GOP cache copy, per-sink rewrite and write. allocs/op must stay 0: the
// hot path allocates nothing per packet.
func BenchmarkForwardPacket(b *testing.B) {
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("sinks=%d", n), func(b *testing.B) {
			f := &forwarder{kind: webrtc.RTPCodecTypeVideo, codec: vp8, ck: codecVP8, hist: newHistory(), gop: newGOPCache(0)}
			for i := 0; i < n; i++ {
				t := newSinkTrack(webrtc.RTPCodecTypeVideo, "s")
				t.bound.Store(&binding{ssrc: uint32(1000 + i), stream: discardWriter{}, codecs: []webrtc.RTPCodecParameters{vp8}})
				t.ready.Store(true)
				f.addSink(t)
			}
			payload := make([]byte, 1100)
			payload[0] = 0x10 // VP8 descriptor S=1; frame tag 0: a keyframe first
			raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 7}, Payload: payload}).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			var pkt rtp.Packet
			var out rtp.Header
			// Grow the GOP cache's buffers first: in steady state it
			// reuses them, which is what allocs/op must show.
			for i := 0; i < gopMaxPackets; i++ {
				if pkt.Unmarshal(raw) != nil {
					b.Fatal("unmarshal")
				}
				f.gop.put(&pkt, i%256 == 0)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				raw[2], raw[3] = byte(i>>8), byte(i) // sequence number
				if pkt.Unmarshal(raw) != nil {
					b.Fatal("unmarshal")
				}
				f.hist.put(&pkt)
				key := isKeyframeStart(f.ck, pkt.Payload)
				f.gop.put(&pkt, key)
				for _, t := range f.sinkList() {
					t.write(&pkt, &f.codec, key, &out)
				}
				// A keyframe (frame tag P=0) every 256 packets, the others
				// inter frames (P=1): a GOP the cache keeps copying.
				raw[13] = 0x01
				if (i+1)%256 == 0 {
					raw[13] = 0x00
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sink-packet")
		})
	}
}
