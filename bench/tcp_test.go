package bench

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// BenchmarkTCPFallback compares a viewer over ICE-TCP on the HTTP port
// (issue 12) with one over UDP, on loopback, against one server and one
// publisher (UDP): setup (answer to ICE connected, DTLS connected, first
// complete keyframe) over tcpSamples joins each, then the one-way delay of
// every packet over a fanoutWindow with one viewer of each kind. Target: a
// TCP viewer adds at most 1 ms p50 over a UDP one.
func BenchmarkTCPFallback(b *testing.B) {
	const tcpSamples = 10
	ctx := bounded(b, 3*time.Minute)
	srv := startServer(b, serverOptions{Ports: 2*tcpSamples + 10})
	base := time.Now()
	pub := publishSynth(ctx, b, srv, "/whip/tcp", base)
	defer func() { clientNetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4} }()
	kinds := []struct {
		name  string
		types []webrtc.NetworkType
	}{
		{"udp", []webrtc.NetworkType{webrtc.NetworkTypeUDP4}},
		{"tcp", []webrtc.NetworkType{webrtc.NetworkTypeTCP4}},
	}
	// join opens a viewer of the current kind. A sample's milestones count
	// from its POST; a kept viewer's delays from the publisher's base.
	join := func(sample bool) (*delayViewer, *resource) {
		v, err := newDelayViewer(base, true)
		if err != nil {
			b.Fatal(err)
		}
		o, err := gatheredOffer(ctx, v.pc)
		if err != nil {
			b.Fatal(err)
		}
		if sample {
			v.base = time.Now()
		}
		r, _, err := srv.post(ctx, "/whep/tcp", o)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
			b.Fatal(err)
		}
		if err := v.waitKeyComplete(ctx); err != nil {
			b.Fatal(err)
		}
		return v, r
	}
	b.ResetTimer()
	var viewers []*delayViewer
	for _, k := range kinds {
		clientNetworkTypes = k.types
		var iceT, dtlsT, keyT []time.Duration
		for i := 0; i < tcpSamples; i++ {
			v, r := join(true)
			m := v.milestones()
			iceT, dtlsT, keyT = append(iceT, m.ice), append(dtlsT, m.dtls), append(keyT, m.keyComplete)
			if err := srv.del(ctx, r); err != nil {
				b.Fatal(err)
			}
			v.close()
			time.Sleep(200 * time.Millisecond)
		}
		reportLatency(b, k.name+"-ice", iceT)
		reportLatency(b, k.name+"-dtls", dtlsT)
		reportLatency(b, k.name+"-keyframe", keyT)
		v, _ := join(false)
		b.Cleanup(v.close)
		viewers = append(viewers, v)
	}
	time.Sleep(time.Second) // NACK/TWCC state settled, buffers warm
	// One window for both viewers, so they see the same packets.
	measureWindow(b, srv, pub, viewers, nil)
	b.StopTimer()
	var p50 [2]time.Duration
	for i, v := range viewers {
		d, _ := v.result()
		slices.Sort(d)
		p50[i] = quantile(d, 0.5)
		b.ReportMetric(us(p50[i]), kinds[i].name+"-delay-p50-us")
		b.ReportMetric(us(quantile(d, 0.99)), kinds[i].name+"-delay-p99-us")
	}
	b.ReportMetric(us(p50[1]-p50[0]), "tcp-added-p50-us")
}
