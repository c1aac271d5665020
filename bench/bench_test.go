package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// Sample counts. Every loop below is bounded by one of these and every
// wait by `wait`; together `make bench` stays within a few minutes on a
// 2-core machine.
const (
	answerSamples    = 150 // POSTs per answer-latency case
	openSessions     = 100 // sessions already open in the "open=100" cases
	concurrentSetups = 200 // viewers set up at once in BenchmarkConcurrentSetup
	setupConcurrency = 50  // ... this many requests in flight
	mediaSamples     = 40  // joining viewers timed in BenchmarkTimeToMedia
	memorySessions   = 100 // viewer sessions opened in BenchmarkMemory
	churnSessions    = 80  // sessions created and ended in BenchmarkChurn
	churnWorkers     = 4
	fanoutWindow     = 8 * time.Second // measured period of BenchmarkFanout
)

func ctxWait(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	tb.Cleanup(cancel)
	return ctx
}

// bounded gives a whole benchmark a deadline, so no scenario can hang
// `make bench` even if the server stops answering.
func bounded(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// liveRoom is a room with a mediatest publisher streaming the real clip
// (VP8 + Opus, ~450 kbit/s) and n-1 connected viewers.
func liveRoom(tb testing.TB, srv *server, room string, n int) {
	tb.Helper()
	ctx := ctxWait(tb)
	pub := mediatest.NewPublisher(tb, mediatest.PublisherOptions{Video: mediatest.CodecVP8, Audio: true})
	if _, err := mediatest.Negotiate(ctx, srv.hc, srv.base+srv.whipPath(room), pub, nil); err != nil {
		tb.Fatalf("publisher: %v", err)
	}
	pub.Start()
	if err := pub.WaitConnected(ctx); err != nil {
		tb.Fatal(err)
	}
	if srv.mediamtx {
		waitStream(tb, ctx, srv, room)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 10)
	for i := 1; i < n; i++ {
		v := mediatest.NewViewer(tb, mediatest.ViewerOptions{VideoCodecs: []string{mediatest.CodecVP8}})
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := mediatest.Negotiate(ctx, srv.hc, srv.base+srv.whepPath(room), v, nil); err != nil {
				errs <- err
				return
			}
			if err := v.WaitConnected(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("opening sessions: %v", err)
	}
}

// waitStream waits until mediamtx serves the room's stream: it refuses
// readers (404) until its publisher's tracks have arrived, after the
// publisher's peer connection is up. pinhole takes viewers at any time.
func waitStream(tb testing.TB, ctx context.Context, srv *server, room string) {
	tb.Helper()
	for ctx.Err() == nil {
		v := mediatest.NewViewer(tb, mediatest.ViewerOptions{VideoCodecs: []string{mediatest.CodecVP8}})
		r, err := mediatest.Negotiate(ctx, srv.hc, srv.base+srv.whepPath(room), v, nil)
		_ = v.Close()
		if err == nil {
			_ = srv.del(ctx, &resource{url: r.URL})
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("room %s: no stream to read: %v", room, ctx.Err())
}

// BenchmarkAnswer measures POST offer -> 201 answer over HTTP on loopback,
// for WHIP and WHEP, on an idle server and with 100 sessions open (one
// publisher streaming the clip and 99 connected viewers in room "busy").
// WHEP POSTs go to the busy room (the viewer attaches to the live
// publisher); WHIP POSTs go to a room of their own (a second publisher in
// the busy room would take its 99 viewers over). Offers are made before
// the clock starts; each session is deleted before the next POST.
func BenchmarkAnswer(b *testing.B) {
	for _, open := range []int{0, openSessions} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			srv := startServer(b, serverOptions{Ports: open + 20})
			if open > 0 {
				liveRoom(b, srv, "busy", open)
			}
			for _, role := range []string{"whip", "whep"} {
				b.Run(role, func(b *testing.B) { answerLatency(b, srv, role) })
			}
		})
	}
}

func answerLatency(b *testing.B, srv *server, role string) {
	ctx := bounded(b, 2*time.Minute)
	offers := make([]string, answerSamples)
	for i := range offers {
		var peer interface {
			Offer(context.Context) (string, error)
			Close() error
		}
		if role == "whip" {
			peer = mediatest.NewPublisher(b, mediatest.PublisherOptions{Video: mediatest.CodecVP8, Audio: true})
		} else {
			peer = mediatest.NewViewer(b, mediatest.ViewerOptions{})
		}
		o, err := peer.Offer(ctx)
		if err != nil {
			b.Fatal(err)
		}
		_ = peer.Close()
		offers[i] = o
	}
	path := "/whip/solo"
	if role == "whep" {
		path = "/whep/busy"
	}
	lat := make([]time.Duration, 0, answerSamples)
	b.ResetTimer()
	for _, o := range offers {
		r, d, err := srv.post(ctx, path, o)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
		if err := srv.del(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportLatency(b, "answer", lat)
}

func reportLatency(b *testing.B, name string, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(ms(quantile(lat, 0.5)), name+"-p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), name+"-p99-ms")
}

// BenchmarkConcurrentSetup sets up 200 viewers of a live room (the clip),
// at most 50 POSTs in flight, and reports the answer latency quantiles and
// how long until all 200 are connected and have a keyframe.
func BenchmarkConcurrentSetup(b *testing.B) {
	srv := startServer(b, serverOptions{Ports: concurrentSetups + 20})
	liveRoom(b, srv, "crowd", 1)
	ctx := bounded(b, 3*time.Minute)
	viewers := make([]*delayViewer, concurrentSetups)
	offers := make([]string, concurrentSetups)
	base := time.Now()
	for i := range viewers {
		v, err := newDelayViewer(base, true)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(v.close)
		viewers[i] = v
		if offers[i], err = gatheredOffer(ctx, v.pc); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, concurrentSetups)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrentSetups)
	b.ResetTimer()
	t0 := time.Now()
	for w := 0; w < setupConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= concurrentSetups {
					return
				}
				r, d, err := srv.post(ctx, "/whep/crowd", offers[i])
				if err != nil {
					errs <- err
					return
				}
				lat[i] = d
				if err := viewers[i].pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	answered := time.Since(t0)
	close(errs)
	for err := range errs {
		b.Fatalf("%v\nserver log:\n%s", err, srv.logTail())
	}
	for _, v := range viewers {
		if err := v.waitKey(ctx); err != nil {
			b.Fatal(err)
		}
	}
	all := time.Since(t0)
	b.StopTimer()
	reportLatency(b, "answer", lat)
	b.ReportMetric(ms(answered), "all-answered-ms")
	b.ReportMetric(ms(all), "all-keyframe-ms")
}

// BenchmarkTimeToMedia joins viewers one after another to a room whose
// publisher streams the real clip (VP8, keyframe every 1 s, + Opus) and
// times, from the viewer's POST: the answer, ICE connected, DTLS
// connected, the first RTP packet and the first complete keyframe (all
// its packets up to the marker) at the viewer: the moment a browser could
// show a picture. Each viewer is deleted before the next one joins,
// 300-600 ms later (spread so joins land anywhere in the clip's GOP, and
// apart enough that each join gets its own keyframe request: pinhole
// coalesces requests within 250 ms, which BenchmarkConcurrentSetup shows).
func BenchmarkTimeToMedia(b *testing.B) {
	srv := startServer(b, serverOptions{Ports: 20})
	liveRoom(b, srv, "live", 1)
	ctx := bounded(b, 2*time.Minute)
	time.Sleep(500 * time.Millisecond) // the publisher's stream is flowing
	var answer, iceT, dtlsT, rtpT, keyT []time.Duration
	b.ResetTimer()
	for i := 0; i < mediaSamples; i++ {
		v, err := newDelayViewer(time.Now(), true)
		if err != nil {
			b.Fatal(err)
		}
		offer, err := gatheredOffer(ctx, v.pc)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		v.base = t0
		r, d, err := srv.post(ctx, "/whep/live", offer)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
			b.Fatal(err)
		}
		if err := v.waitKeyComplete(ctx); err != nil {
			b.Fatal(err)
		}
		m := v.milestones()
		answer = append(answer, d)
		iceT = append(iceT, m.ice)
		dtlsT = append(dtlsT, m.dtls)
		rtpT = append(rtpT, m.firstRTP)
		keyT = append(keyT, m.keyComplete)
		if err := srv.del(ctx, r); err != nil {
			b.Fatal(err)
		}
		v.close()
		time.Sleep(time.Duration(300+i*7919%300) * time.Millisecond)
	}
	b.StopTimer()
	reportLatency(b, "answer", answer)
	reportLatency(b, "ice", iceT)
	reportLatency(b, "dtls", dtlsT)
	reportLatency(b, "rtp", rtpT)
	reportLatency(b, "keyframe", keyT)
}

// fanoutResult is one measured window of a fan-out run.
type fanoutResult struct {
	delays       []time.Duration // sorted
	received     int
	expected     int
	wall         time.Duration
	cpu          time.Duration
	rssPerViewer float64 // kB
	harnessCPU   time.Duration
}

// selfCPU is the benchmark process's own CPU time (clients, harness).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var (
	directOnce sync.Once
	direct     fanoutResult
)

// BenchmarkFanout streams a synthetic 2.5 Mbit/s, 30 fps VP8 stream plus
// 64 kbit/s Opus from one publisher to 1, 10 and 50 viewers and measures,
// over an 8 s window: the server's CPU time (from /proc/<pid>/stat of the
// server process) per viewer-second, packets received by viewers per
// second, the one-way delay of every packet from the publisher's WriteRTP
// to the viewer's Read (p50, p99), what pinhole adds to that compared with
// the same publisher and viewer connected directly ("direct"), and loss.
func BenchmarkFanout(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		r := directBaseline(b)
		reportFanout(b, r, 1, false)
	})
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) {
			d := directBaseline(b)
			r := fanout(b, n)
			reportFanout(b, r, n, true)
			b.ReportMetric(us(quantile(r.delays, 0.5)-quantile(d.delays, 0.5)), "added-p50-us")
			b.ReportMetric(us(quantile(r.delays, 0.99)-quantile(d.delays, 0.99)), "added-p99-us")
		})
	}
	// joins: the 50-viewer window with fanoutJoiners more viewers joining
	// at once a quarter into it. Each joiner is sent the GOP cache on the
	// forwarder goroutine; what that costs the 50 already watching shows in
	// their delay (the joiners themselves are not measured).
	b.Run("viewers=50/joins", func(b *testing.B) {
		d := directBaseline(b)
		r := fanoutJoin(b, startServer(b, serverOptions{Ports: 50 + fanoutJoiners + 10}), 50, fanoutJoiners)
		reportFanout(b, r, 50, true)
		b.ReportMetric(us(quantile(r.delays, 0.5)-quantile(d.delays, 0.5)), "added-p50-us")
		b.ReportMetric(us(quantile(r.delays, 0.99)-quantile(d.delays, 0.99)), "added-p99-us")
	})
}

// fanoutJoiners is how many viewers join during BenchmarkFanout's joins
// window.
const fanoutJoiners = 10

func reportFanout(b *testing.B, r fanoutResult, n int, server bool) {
	b.ReportMetric(us(quantile(r.delays, 0.5)), "delay-p50-us")
	b.ReportMetric(us(quantile(r.delays, 0.99)), "delay-p99-us")
	b.ReportMetric(float64(r.received)/r.wall.Seconds(), "pkts/s")
	b.ReportMetric(100*(1-float64(r.received)/float64(r.expected)), "loss-%")
	b.ReportMetric(100*r.harnessCPU.Seconds()/r.wall.Seconds(), "harness-cpu-%")
	if server {
		b.ReportMetric(ms(r.cpu)/(float64(n)*r.wall.Seconds()), "cpu-ms/viewer-s")
		b.ReportMetric(100*r.cpu.Seconds()/r.wall.Seconds(), "server-cpu-%")
		b.ReportMetric(r.rssPerViewer, "rss-kB/viewer")
	}
}

// directBaseline runs the fan-out measurement with one viewer connected
// straight to the publisher, once per test binary run.
func directBaseline(b *testing.B) fanoutResult {
	directOnce.Do(func() {
		ctx := bounded(b, time.Minute)
		base := time.Now()
		pub, err := newSynthPublisher(base)
		if err != nil {
			b.Fatal(err)
		}
		defer pub.close()
		v, err := newDelayViewer(base, false)
		if err != nil {
			b.Fatal(err)
		}
		defer v.close()
		offer, err := gatheredOffer(ctx, pub.pc)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			b.Fatal(err)
		}
		ans, err := v.pc.CreateAnswer(nil)
		if err != nil {
			b.Fatal(err)
		}
		done := webrtc.GatheringCompletePromise(v.pc)
		if err := v.pc.SetLocalDescription(ans); err != nil {
			b.Fatal(err)
		}
		<-done
		if err := pub.pc.SetRemoteDescription(*v.pc.LocalDescription()); err != nil {
			b.Fatal(err)
		}
		pub.start()
		if err := v.waitKey(ctx); err != nil {
			b.Fatal(err)
		}
		direct = measureWindow(b, nil, pub, []*delayViewer{v}, nil)
	})
	if direct.expected == 0 {
		b.Fatal("direct baseline failed")
	}
	return direct
}

func fanout(b *testing.B, n int) fanoutResult {
	return fanoutOn(b, startServer(b, serverOptions{Ports: n + 10}), n)
}

// fanoutOn runs the fan-out measurement with n viewers on srv (pinhole or,
// in BenchmarkCompare, mediamtx).
func fanoutOn(b *testing.B, srv *server, n int) fanoutResult {
	return fanoutJoin(b, srv, n, 0)
}

// fanoutJoin is fanoutOn with joiners more viewers POSTing at once a
// quarter into the measured window.
func fanoutJoin(b *testing.B, srv *server, n, joiners int) fanoutResult {
	ctx := bounded(b, 2*time.Minute)
	base := time.Now()
	pub := publishSynth(ctx, b, srv, srv.whipPath("fan"), base)
	time.Sleep(time.Second)
	rss0 := srv.rssKB(b)
	viewers := make([]*delayViewer, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 10)
	for i := range viewers {
		v, err := newDelayViewer(base, true)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(v.close)
		viewers[i] = v
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o, err := gatheredOffer(ctx, v.pc)
			if err != nil {
				errs <- err
				return
			}
			r, _, err := srv.post(ctx, srv.whepPath("fan"), o)
			if err != nil {
				errs <- err
				return
			}
			if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, v := range viewers {
		if err := v.waitKey(ctx); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(time.Second) // NACK/TWCC state settled, buffers warm
	var mid func()
	if joiners > 0 {
		late := newViewers(b, joiners)
		mid = func() {
			for _, j := range postViewers(b, ctx, srv, "fan", late, joiners) {
				if err := j.v.waitKey(ctx); err != nil {
					b.Error(err)
				}
			}
		}
	}
	res := measureWindow(b, srv, pub, viewers, mid)
	res.rssPerViewer = (srv.rssKB(b) - rss0) / float64(n)
	return res
}

// measureWindow picks a window of future packet indices lasting about
// fanoutWindow, waits for the publisher to send them (reading the server's
// CPU time as the first and last are sent), lets late packets and
// retransmissions arrive, and collects every viewer's delays.
//
// mid, if not nil, runs a quarter into the window, on this goroutine (it
// may fail the benchmark); it must return within the window.
func measureWindow(b *testing.B, srv *server, pub *synthPublisher, viewers []*delayViewer, mid func()) fanoutResult {
	// ~10 video packets per frame at 30 fps, 50 audio packets: measure the
	// rate instead of trusting the arithmetic.
	i0 := pub.index.Load()
	time.Sleep(500 * time.Millisecond)
	rate := float64(pub.index.Load()-i0) / 0.5
	lo := pub.index.Load() + uint32(rate/10)
	hi := lo + uint32(rate*fanoutWindow.Seconds())
	for _, v := range viewers {
		v.window(lo, hi)
	}
	waitIndex := func(i uint32) {
		deadline := time.Now().Add(2 * fanoutWindow)
		for pub.index.Load() < i && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	var res fanoutResult
	waitIndex(lo)
	t0 := time.Now()
	var cpu0 time.Duration
	if srv != nil {
		cpu0 = srv.cpu(b)
	}
	self0 := selfCPU()
	if mid != nil {
		time.Sleep(fanoutWindow / 4)
		mid()
	}
	waitIndex(hi)
	res.wall = time.Since(t0)
	res.harnessCPU = selfCPU() - self0
	if srv != nil {
		res.cpu = srv.cpu(b) - cpu0
	}
	time.Sleep(500 * time.Millisecond)
	for _, v := range viewers {
		d, n := v.result()
		res.delays = append(res.delays, d...)
		res.received += n
		res.expected += int(hi - lo)
	}
	slices.Sort(res.delays)
	return res
}

// BenchmarkMemory opens 100 viewer sessions on a room whose publisher
// streams the clip and reports the growth of the server's RSS and of its
// live heap (after GC, from gctrace) per session. A warm-up of 10 sessions
// opened and closed first keeps one-time costs (pools, code pages) out.
func BenchmarkMemory(b *testing.B) {
	srv := startServer(b, serverOptions{Ports: memorySessions + 20})
	liveRoom(b, srv, "mem", 1)
	ctx := bounded(b, 2*time.Minute)
	openViewers := func(n int) []*resourceViewer {
		out := make([]*resourceViewer, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 10)
		for i := range out {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				out[i] = openViewer(b, ctx, srv, "/whep/mem")
			}()
		}
		wg.Wait()
		for _, rv := range out {
			if rv == nil {
				b.Fatalf("opening viewers failed; server log:\n%s", srv.logTail())
			}
			if err := rv.v.waitKey(ctx); err != nil {
				b.Fatal(err)
			}
		}
		return out
	}
	for _, rv := range openViewers(10) {
		_ = srv.del(ctx, rv.r)
		rv.v.close()
	}
	time.Sleep(2 * time.Second)
	heap0, stack0 := srv.liveHeapAfterGC(b)
	rss0 := srv.rssKB(b)
	b.ResetTimer()
	vs := openViewers(memorySessions)
	time.Sleep(5 * time.Second) // media flows; per-stream buffers fill
	b.StopTimer()
	heap1, stack1 := srv.liveHeapAfterGC(b)
	rss1 := srv.rssKB(b)
	n := float64(len(vs))
	b.ReportMetric((rss1-rss0)/n, "rss-kB/session")
	b.ReportMetric((heap1-heap0)*1024/n, "heap-kB/session")
	b.ReportMetric((stack1-stack0)*1024/n, "stack-kB/session")
}

// resourceViewer is a viewer and its WHEP resource.
type resourceViewer struct {
	v *delayViewer
	r *resource
}

func openViewer(b *testing.B, ctx context.Context, srv *server, path string) *resourceViewer {
	v, err := newDelayViewer(time.Now(), true)
	if err != nil {
		b.Error(err)
		return nil
	}
	b.Cleanup(v.close)
	o, err := gatheredOffer(ctx, v.pc)
	if err != nil {
		b.Error(err)
		return nil
	}
	r, _, err := srv.post(ctx, path, o)
	if err != nil {
		b.Error(err)
		return nil
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
		b.Error(err)
		return nil
	}
	return &resourceViewer{v: v, r: r}
}

// BenchmarkChurn creates and ends viewer sessions as fast as 4 clients can:
// POST, connect (ICE + DTLS), DELETE, 80 in all. It reports sessions per
// second and how many ports are still leased 5 s after the last DELETE
// (leases back to free: 0 expected).
func BenchmarkChurn(b *testing.B) {
	srv := startServer(b, serverOptions{Ports: 40})
	ctx := bounded(b, 2*time.Minute)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, churnWorkers)
	b.ResetTimer()
	t0 := time.Now()
	for w := 0; w < churnWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= churnSessions {
				if err := churnOne(ctx, srv); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(churnSessions/elapsed.Seconds(), "sessions/s")
	b.ReportMetric(float64(srv.waitLeases(b, 0, 5*time.Second)), "leases-leaked")
}

func churnOne(ctx context.Context, srv *server) error {
	v, err := newDelayViewer(time.Now(), true)
	if err != nil {
		return err
	}
	defer v.close()
	o, err := gatheredOffer(ctx, v.pc)
	if err != nil {
		return err
	}
	r, _, err := srv.post(ctx, "/whep/churn", o)
	if err != nil {
		return err
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
		return err
	}
	select {
	case <-v.connected:
	case <-ctx.Done():
		return fmt.Errorf("churn: not connected: %w", ctx.Err())
	}
	return srv.del(ctx, r)
}
