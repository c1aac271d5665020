package media_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// libwebrtcPublisher behaves like a browser publisher as far as keyframes
// go: an unbounded GOP (a keyframe first, then only when asked) and
// requests closer than 300 ms to the last one honoured ignored
// (kMinKeyframeSendIntervalMs in libwebrtc's encoder_rtcp_feedback.cc).
func libwebrtcPublisher() mediatest.PublisherOptions {
	return mediatest.PublisherOptions{
		Video: "vp8", Audio: true,
		KeyFramesOnRequest:  true,
		MinKeyFrameInterval: 300 * time.Millisecond,
	}
}

// withCache sets the engine's GOP cache age; negative disables it.
func withCache(age time.Duration) func(*media.Config) {
	return func(c *media.Config) { c.GOPCacheAge = age }
}

// waitVideoSamples waits until the publisher has sent n video frames.
func waitVideoSamples(tb testing.TB, p *mediatest.Publisher, n uint64) {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for p.Stats().VideoSamples < n {
		if time.Now().After(deadline) {
			tb.Fatalf("publisher sent %d video frames, want %d", p.Stats().VideoSamples, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// prepareViewer builds a viewer and its gathered offer.
func prepareViewer(tb testing.TB, opts mediatest.ViewerOptions) (*mediatest.Viewer, string) {
	tb.Helper()
	v := mediatest.NewViewer(tb, opts)
	offer, err := v.Offer(ctxT(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return v, offer
}

// join makes a prepared viewer watch room's newest publisher.
func (f *fixture) join(tb testing.TB, room string, v *mediatest.Viewer, offer string) string {
	tb.Helper()
	id := newID()
	ans, err := f.e.Watch(ctxT(tb), media.SessionRequest{ID: id, Room: room, Offer: offer})
	if err != nil {
		tb.Fatalf("Watch: %v", err)
	}
	if err := v.SetAnswer(ans.SDP); err != nil {
		tb.Fatalf("SetAnswer: %v", err)
	}
	return id
}

// checkStartsClean fails unless v's video started on a keyframe and went
// on as one stream: every packet one sequence number after the last, no
// repeat, timestamps never moving back, and frames decodable without a gap.
func checkStartsClean(tb testing.TB, name string, v *mediatest.Viewer) {
	tb.Helper()
	st := v.Stats()
	if !st.FirstVideoKey || st.KeyFrames == 0 {
		tb.Errorf("%s: video did not start on a keyframe (stats %+v)", name, st)
	}
	if st.SeqGaps != 0 || st.SeqRepeats != 0 || st.TSBackwards != 0 || st.Gaps != 0 {
		tb.Errorf("%s: stream not continuous: %d sequence gaps, %d repeats, %d timestamps back, %d decode gaps",
			name, st.SeqGaps, st.SeqRepeats, st.TSBackwards, st.Gaps)
	}
}

// Viewers joining a libwebrtc-like publisher a few hundred milliseconds
// apart all get video. The second viewer's join request used to be
// deferred to 250 ms after the first, refused by the publisher (under its
// 300 ms minimum) and never repeated: that viewer got audio and no video
// for good. Without the GOP cache the re-ask alone must get every viewer a
// keyframe; with it, the cache serves them.
func TestStaggeredViewersGetVideo(t *testing.T) {
	for _, tc := range []struct {
		viewers int
		// offset of viewer i's join from the first (0-400 ms); the last one
		// repeats. Joins 100-220 ms after the first are the ones whose
		// request was deferred into the publisher's refusal window.
		offsets []time.Duration
	}{
		{2, []time.Duration{0, 150 * time.Millisecond}},
		{10, []time.Duration{0, 100 * time.Millisecond, 115 * time.Millisecond, 130 * time.Millisecond,
			145 * time.Millisecond, 160 * time.Millisecond, 175 * time.Millisecond, 190 * time.Millisecond,
			205 * time.Millisecond, 220 * time.Millisecond}},
	} {
		for _, cache := range []struct {
			name string
			age  time.Duration
		}{{"nocache", -1}, {"cache", 0}} {
			t.Run(fmt.Sprintf("%dviewers/%s", tc.viewers, cache.name), func(t *testing.T) {
				f := newEngine(t, tc.viewers+1, withCache(cache.age))
				p, _, _ := f.publish(t, "r", libwebrtcPublisher())
				if err := p.WaitConnected(ctxT(t)); err != nil {
					t.Fatal(err)
				}
				// Past the publisher's first keyframe, as a viewer arriving
				// in a running room is; with the default one-second cache
				// age, that keyframe is still cached.
				waitVideoSamples(t, p, 15)
				// Offers first (ICE gathering takes a while), so the joins
				// themselves keep to their offsets.
				viewers := make([]*mediatest.Viewer, tc.viewers)
				offers := make([]string, tc.viewers)
				for i := range viewers {
					viewers[i], offers[i] = prepareViewer(t, mediatest.ViewerOptions{})
				}
				start := time.Now()
				for i, v := range viewers {
					time.Sleep(time.Until(start.Add(tc.offsets[i])))
					f.join(t, "r", v, offers[i])
				}
				ctx := ctxT(t)
				for i, v := range viewers {
					if err := v.WaitVideoFrames(ctx, 30); err != nil {
						t.Fatalf("viewer %d: %v (publisher %+v)", i, err, p.Stats())
					}
					if err := v.WaitAudioPackets(ctx, 10); err != nil {
						t.Fatalf("viewer %d: %v", i, err)
					}
				}
				for i, v := range viewers {
					checkStartsClean(t, fmt.Sprintf("viewer %d", i), v)
				}
				t.Logf("publisher %+v", p.Stats())
			})
		}
	}
}

// A keyframe request that goes unanswered (lost, or refused by the
// encoder) is asked again while the viewer waits, and the asking stops once
// the viewer has its keyframe.
func TestKeyframeReask(t *testing.T) {
	f := newEngine(t, 2, withCache(-1))
	opts := libwebrtcPublisher()
	opts.DropKeyFrameRequests = 2
	p, _, _ := f.publish(t, "r", opts)
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	waitVideoSamples(t, p, 15)
	v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{Video: true})
	if err := v.WaitVideoFrames(ctxT(t), 30); err != nil {
		t.Fatalf("%v (publisher %+v)", err, p.Stats())
	}
	checkStartsClean(t, "viewer", v)
	if st := p.Stats(); st.Honoured == 0 || st.Ignored < 2 {
		t.Fatalf("publisher %+v: want the 2 dropped requests asked again", st)
	}
	// Nobody waits now: at most a request already in flight may follow.
	before := p.Stats().PLIs + p.Stats().FIRs
	time.Sleep(3 * time.Second)
	if after := p.Stats().PLIs + p.Stats().FIRs; after > before+1 {
		t.Fatalf("%d keyframe requests after the viewer had its keyframe: re-ask did not stop", after-before)
	}
}

// With the GOP cache a viewer joining mid-GOP starts at once on the cached
// keyframe, with no request to the publisher (this one never sends another
// keyframe): keyframe first, then one continuous stream from the cached
// packets into the live ones. A stale cache makes the join ask instead.
func TestGOPCacheMidGOP(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		// A cache age far above the test's run time, so a slow machine's
		// setup cannot make the cached GOP stale.
		f := newEngine(t, 2, withCache(time.Minute))
		opts := libwebrtcPublisher()
		opts.IgnoreKeyFrameRequests = true
		p, _, _ := f.publish(t, "r", opts)
		if err := p.WaitConnected(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		waitVideoSamples(t, p, 20)
		v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
		if err := v.WaitVideoFrames(ctxT(t), 60); err != nil {
			t.Fatalf("%v (publisher %+v)", err, p.Stats())
		}
		waitMedia(t, v, 0, 10)
		checkStartsClean(t, "viewer", v)
		if st := v.Stats(); st.KeyFrames != 1 {
			t.Fatalf("viewer got %d keyframes, want the cached one only", st.KeyFrames)
		}
		if st := p.Stats(); st.PLIs+st.FIRs != 0 || st.VideoKeyFrames != 1 {
			t.Fatalf("publisher %+v: want one keyframe and no request", st)
		}
	})
	t.Run("stale", func(t *testing.T) {
		f := newEngine(t, 2, withCache(100*time.Millisecond))
		p, _, _ := f.publish(t, "r", libwebrtcPublisher())
		if err := p.WaitConnected(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		waitVideoSamples(t, p, 20)
		v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
		if err := v.WaitVideoFrames(ctxT(t), 30); err != nil {
			t.Fatalf("%v (publisher %+v)", err, p.Stats())
		}
		checkStartsClean(t, "viewer", v)
		if st := p.Stats(); st.Honoured == 0 {
			t.Fatalf("publisher %+v: a stale cache must make the join ask for a keyframe", st)
		}
	})
}

// BenchmarkJoinToKeyframe measures a viewer's wait from its connection to
// its first complete keyframe, joining a libwebrtc-like publisher 150 ms
// after the previous viewer left (so the previous join's request is recent,
// as when viewers arrive together), with and without the GOP cache.
//
//	go test -run '^$' -bench JoinToKeyframe -benchtime 20x ./media/
func BenchmarkJoinToKeyframe(b *testing.B) {
	for _, cache := range []struct {
		name string
		age  time.Duration
	}{{"nocache", -1}, {"cache", 0}} {
		b.Run(cache.name, func(b *testing.B) {
			f := newEngine(b, 4, withCache(cache.age))
			p, _, _ := f.publish(b, "r", libwebrtcPublisher())
			if err := p.WaitConnected(ctxT(b)); err != nil {
				b.Fatal(err)
			}
			waitVideoSamples(b, p, 15)
			var total, worst time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v, id, _ := f.watch(b, "r", "", mediatest.ViewerOptions{Video: true})
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := v.WaitKeyFrames(ctx, 1)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				st := v.Stats()
				d := st.FirstKeyFrameAt.Sub(st.ConnectedAt)
				total += d
				worst = max(worst, d)
				_ = v.Close()
				_ = f.e.CloseSession(id, "bench")
				f.rec.waitFor(b, "viewer closed", closedEvent(id))
				time.Sleep(150 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/join")
			b.ReportMetric(float64(worst.Microseconds())/1000, "ms-max/join")
		})
	}
}

// A viewer watching before its publisher sends any video starts on the
// publisher's first keyframe, which an encoder begins with anyway: pinhole
// asks for no other. It used to send a PLI as the video track arrived, and
// a browser publisher, still pacing at its start bitrate, took ~130 ms to
// send the keyframe that request made, which the viewer then waited for.
func TestViewerBeforeVideoNoRequest(t *testing.T) {
	f := newEngine(t, 2, withCache(time.Minute))
	p := mediatest.NewPublisher(t, libwebrtcPublisher())
	f.negotiate(t, "r", p)
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	if err := v.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	p.Start()
	waitMedia(t, v, 30, 10)
	checkStartsClean(t, "viewer", v)
	if st := p.Stats(); st.PLIs+st.FIRs != 0 || st.VideoKeyFrames != 1 {
		t.Fatalf("publisher %+v: want its first keyframe only and no request", st)
	}
}

// A publisher that offers RTX and would probe with it, as libwebrtc does at a
// call's start (RTX copies of packets already sent), is answered without
// RTX, and its viewers get its video, each packet once. With RTX answered,
// Pion handed the copies back as the original packets: pinhole wrote each
// to every viewer again (121 packets sent for 78 read), and a copy that came
// before the track's first packet was read had payload type 0, so Pion never
// started the track and the viewers got no video at all (1 run in 16 with
// -race on a loaded machine).
func TestRTXProbingPublisher(t *testing.T) {
	f := newEngine(t, 3, withCache(time.Minute))
	opts := libwebrtcPublisher()
	opts.ProbeWithRTX = true
	p, _, ans := f.publish(t, "r", opts)
	if strings.Contains(strings.ToLower(ans.SDP), "rtx/") {
		t.Fatalf("the answer negotiates RTX:\n%s", ans.SDP)
	}
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	live, liveID, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	waitMedia(t, live, 20, 0)
	// A joiner mid-GOP, served from the cache the copies went into.
	joiner, joinerID, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	waitMedia(t, joiner, 20, 0)
	checkStartsClean(t, "live viewer", live)
	checkStartsClean(t, "joiner", joiner)
	_ = p.Close()
	// Once nothing more arrives, and pinhole has reported its totals
	// (every second), what it sent each viewer is what the viewer read:
	// the viewer's SRTP replay check drops repeats unseen.
	for _, v := range []struct {
		name, id string
		v        *mediatest.Viewer
	}{{"live viewer", liveID, live}, {"joiner", joinerID, joiner}} {
		got := settle(t, v.v)
		time.Sleep(1500 * time.Millisecond)
		var sent uint64
		for _, ev := range f.rec.snapshot() {
			if ev.SessionID == v.id && ev.Kind == media.EventCounters {
				sent = ev.Counters.PacketsOut
			}
		}
		// A few may be lost on a loaded machine's loopback and not
		// recovered; repeats were dozens (one per probe).
		if sent > got+3 {
			t.Errorf("%s: pinhole sent %d packets, the viewer read %d (probes forwarded as repeats)", v.name, sent, got)
		}
	}
}

// settle waits until v has read no packet for half a second and returns
// how many it read.
func settle(tb testing.TB, v *mediatest.Viewer) uint64 {
	tb.Helper()
	deadline := time.Now().Add(wait)
	last := uint64(0)
	for time.Now().Before(deadline) {
		st := v.Stats()
		n := st.VideoPackets + st.AudioPackets
		if n == last && n > 0 {
			return n
		}
		last = n
		time.Sleep(500 * time.Millisecond)
	}
	tb.Fatalf("viewer still reading packets after %s", wait)
	return 0
}
