package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// mediamtxFlag names a mediamtx binary to run BenchmarkCompare's scenarios
// against as well (make bench-compare MEDIAMTX=/path/to/mediamtx). Empty:
// pinhole alone.
var mediamtxFlag = flag.String("mediamtx", "", "mediamtx binary to compare with (BenchmarkCompare)")

// compareFlag runs BenchmarkCompare at all; make bench-compare sets it, so
// `make bench` (-bench .) does not repeat its scenarios.
var compareFlag = flag.Bool("compare", false, "run BenchmarkCompare (make bench-compare)")

// Compare sizes: the figures issue 11 compares, each bounded in count.
const (
	joinRounds      = 8  // rounds of joinAtOnce viewers in Compare/Join10
	joinAtOnce      = 10 // viewers POSTing at the same moment
	crowdViewers    = 200
	crowdInFlight   = 50
	crowdWarmup     = 10
	cpuWindow       = 5 * time.Second // CPU measured over this, media flowing
	compareFanViews = 50
)

// compareTargets are the servers BenchmarkCompare runs each scenario on,
// one after the other (never at once: they would share the 2 cores).
func compareTargets() []string {
	if *mediamtxFlag == "" {
		return []string{"pinhole"}
	}
	return []string{"pinhole", "mediamtx"}
}

// startTarget starts pinhole or mediamtx on loopback with room for n
// sessions.
func startTarget(tb testing.TB, name string, n int) *server {
	tb.Helper()
	if name == "mediamtx" {
		return startMediaMTX(tb, *mediamtxFlag)
	}
	return startServer(tb, serverOptions{Ports: n + 20})
}

// mediamtxConfig keeps mediamtx on loopback with only its WebRTC server:
// HTTP (WHIP/WHEP) and the one ICE UDP port bound to 127.0.0.1, the
// address announced as 127.0.0.1 and no other (no interface addresses, no
// STUN), every other protocol and listener off. The default user "any" may
// publish and read any path, as pinhole's anonymous WHIP/WHEP does.
const mediamtxConfig = `logLevel: warn
logDestinations: [stdout]
api: false
metrics: false
pprof: false
playback: false
rtsp: false
rtmp: false
hls: false
srt: false
moq: false
webrtc: true
webrtcAddress: 127.0.0.1:%d
webrtcLocalUDPAddress: 127.0.0.1:%d
webrtcLocalTCPAddress: ""
webrtcIPsFromInterfaces: false
webrtcAdditionalHosts: [127.0.0.1]
webrtcICEServers2: []
paths:
  all_others:
`

// startMediaMTX starts the mediamtx binary bin with mediamtxConfig and waits
// until its WebRTC HTTP listener answers. Only this child is signalled.
func startMediaMTX(tb testing.TB, bin string) *server {
	tb.Helper()
	httpPort := freeTCPPort(tb)
	udp := freeUDPPorts(tb, 1)
	cfg := filepath.Join(tb.TempDir(), "mediamtx.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, mediamtxConfig, httpPort, udp[0]), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, cfg)
	cmd.Dir = filepath.Dir(cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting mediamtx: %v", err)
	}
	s := &server{
		cmd: cmd, pid: cmd.Process.Pid, ports: udp, mediamtx: true,
		base:   fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		hc:     &http.Client{Timeout: wait, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		exited: make(chan struct{}),
	}
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.tail = append(s.tail, sc.Text())
			if len(s.tail) > 40 {
				s.tail = s.tail[len(s.tail)-40:]
			}
			s.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	tb.Cleanup(s.stop)
	deadline := time.Now().Add(wait)
	for {
		// Any HTTP answer (mediamtx has no health route) means it listens.
		if resp, err := s.hc.Get(s.base + "/"); err == nil {
			_ = resp.Body.Close()
			return s
		}
		select {
		case <-s.exited:
			tb.Fatalf("mediamtx exited at start:\n%s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mediamtx not listening after %s:\n%s", wait, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkCompare runs issue 11's scenarios on pinhole and, with
// -mediamtx, on mediamtx, the servers taking turns (each scenario on one,
// then the other, each in a fresh process). `make bench-compare` prints
// each figure as pinhole / mediamtx.
//
//   - Join10: a live room (the clip); joinRounds times, 10 viewers POST at
//     the same moment: quantiles of the answer and, from the POST, of the
//     viewer's ICE and DTLS connected, its first RTP packet and its first
//     complete keyframe.
//   - Crowd200: 200 viewers of a live room set up, 50 POSTs in flight:
//     answer quantiles; then, all 200 connected and watching, RSS growth
//     per session and server CPU per viewer-second over cpuWindow.
//   - Fanout50: the synthetic 2.5 Mbit/s stream to 50 viewers: CPU per
//     viewer-second, delay and loss (delay and loss only where the server
//     forwards pinhole's stamped payloads unchanged: pinhole).
func BenchmarkCompare(b *testing.B) {
	if !*compareFlag {
		b.Skip("run by make bench-compare (-args -compare)")
	}
	b.Run("Join10", func(b *testing.B) {
		for _, t := range compareTargets() {
			b.Run(t, func(b *testing.B) { compareJoin(b, startTarget(b, t, joinAtOnce)) })
		}
	})
	b.Run("Crowd200", func(b *testing.B) {
		for _, t := range compareTargets() {
			b.Run(t, func(b *testing.B) { compareCrowd(b, startTarget(b, t, crowdViewers+crowdWarmup)) })
		}
	})
	b.Run("Fanout50", func(b *testing.B) {
		for _, t := range compareTargets() {
			b.Run(t, func(b *testing.B) {
				srv := startTarget(b, t, compareFanViews)
				r := fanoutOn(b, srv, compareFanViews)
				b.ReportMetric(ms(r.cpu)/(float64(compareFanViews)*r.wall.Seconds()), "cpu-ms/viewer-s")
				b.ReportMetric(100*r.cpu.Seconds()/r.wall.Seconds(), "server-cpu-%")
				b.ReportMetric(r.rssPerViewer, "rss-kB/viewer")
				if !srv.mediamtx {
					d := directBaseline(b)
					b.ReportMetric(us(quantile(r.delays, 0.99)), "delay-p99-us")
					b.ReportMetric(us(quantile(r.delays, 0.99)-quantile(d.delays, 0.99)), "added-p99-us")
					b.ReportMetric(100*(1-float64(r.received)/float64(r.expected)), "loss-%")
				}
			})
		}
	})
}

// joined is a viewer set up by postViewers.
type joined struct {
	v      *delayViewer
	r      *resource
	answer time.Duration
}

// postViewers POSTs one offer per viewer to room, all in flight at once
// (at most inFlight), and applies each answer. Each viewer's base is its
// POST, so its milestones are times since then.
func postViewers(b *testing.B, ctx context.Context, srv *server, room string, vs []*delayViewer, inFlight int) []joined {
	offers := make([]string, len(vs))
	for i, v := range vs {
		o, err := gatheredOffer(ctx, v.pc)
		if err != nil {
			b.Fatal(err)
		}
		offers[i] = o
	}
	out := make([]joined, len(vs))
	errs := make(chan error, len(vs))
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v.base = time.Now()
			r, d, err := srv.post(ctx, srv.whepPath(room), offers[i])
			if err != nil {
				errs <- err
				return
			}
			out[i] = joined{v: v, r: r, answer: d}
			if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("%v\nserver log:\n%s", err, srv.logTail())
	}
	return out
}

func newViewers(b *testing.B, n int) []*delayViewer {
	vs := make([]*delayViewer, n)
	for i := range vs {
		v, err := newDelayViewer(time.Now(), true)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(v.close)
		vs[i] = v
	}
	return vs
}

func compareJoin(b *testing.B, srv *server) {
	liveRoom(b, srv, "join", 1)
	ctx := bounded(b, 2*time.Minute)
	time.Sleep(500 * time.Millisecond) // the clip is flowing
	var answer, iceT, dtlsT, rtpT, keyT []time.Duration
	b.ResetTimer()
	for round := 0; round < joinRounds; round++ {
		vs := newViewers(b, joinAtOnce)
		js := postViewers(b, ctx, srv, "join", vs, joinAtOnce)
		for _, j := range js {
			if err := j.v.waitKeyComplete(ctx); err != nil {
				b.Fatal(err)
			}
			m := j.v.milestones()
			answer = append(answer, j.answer)
			iceT = append(iceT, m.ice)
			dtlsT = append(dtlsT, m.dtls)
			rtpT = append(rtpT, m.firstRTP)
			keyT = append(keyT, m.keyComplete)
		}
		for _, j := range js {
			if err := srv.del(ctx, j.r); err != nil {
				b.Fatal(err)
			}
			j.v.close()
		}
		time.Sleep(time.Duration(300+round*7919%300) * time.Millisecond)
	}
	b.StopTimer()
	reportLatency(b, "answer", answer)
	reportLatency(b, "ice", iceT)
	reportLatency(b, "dtls", dtlsT)
	reportLatency(b, "rtp", rtpT)
	reportLatency(b, "keyframe", keyT)
}

func compareCrowd(b *testing.B, srv *server) {
	liveRoom(b, srv, "crowd", 1)
	ctx := bounded(b, 3*time.Minute)
	// A warm-up crowd, opened and closed, keeps one-time costs (pools,
	// code pages) out of the per-session RSS.
	for _, j := range postViewers(b, ctx, srv, "crowd", newViewers(b, crowdWarmup), crowdWarmup) {
		if err := j.v.waitKey(ctx); err != nil {
			b.Fatal(err)
		}
		_ = srv.del(ctx, j.r)
		j.v.close()
	}
	time.Sleep(2 * time.Second)
	rss0 := srv.rssKB(b)
	vs := newViewers(b, crowdViewers)
	b.ResetTimer()
	js := postViewers(b, ctx, srv, "crowd", vs, crowdInFlight)
	lat := make([]time.Duration, len(js))
	for i, j := range js {
		lat[i] = j.answer
		if err := j.v.waitKey(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	time.Sleep(2 * time.Second) // every viewer watching, buffers filled
	cpu0, t0 := srv.cpu(b), time.Now()
	time.Sleep(cpuWindow)
	cpu, wall := srv.cpu(b)-cpu0, time.Since(t0)
	rss1 := srv.rssKB(b)
	reportLatency(b, "answer", lat)
	b.ReportMetric((rss1-rss0)/crowdViewers, "rss-kB/session")
	b.ReportMetric(ms(cpu)/(crowdViewers*wall.Seconds()), "clip-cpu-ms/viewer-s")
}
