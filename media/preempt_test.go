package media_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
	"github.com/pinhole-rtc/pinhole/internal/servertest"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/server"
)

// deadOffer is a real client's offer whose client is gone before the answer:
// nothing will ever answer pinhole's checks or send it a packet.
func deadOffer(tb testing.TB) string {
	tb.Helper()
	v := mediatest.NewViewer(tb, mediatest.ViewerOptions{})
	offer, err := v.Offer(ctxT(tb))
	if err != nil {
		tb.Fatal(err)
	}
	_ = v.Close()
	return offer
}

// openRetry opens a session as a well-behaved client does: on a full pool it
// waits what Retry-After says (at most a second here) and asks again, until
// the generous deadline. It returns the session id and how many tries it
// took.
func openRetry(tb testing.TB, open func(context.Context, media.SessionRequest) (*media.Answer, error), peer mediatest.Offerer, room string) (string, int) {
	tb.Helper()
	offer, err := peer.Offer(ctxT(tb))
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for tries := 1; tries <= 200; tries++ {
		id := newID()
		ans, err := open(ctxT(tb), media.SessionRequest{ID: id, Room: room, Offer: offer, TrustLocalCandidates: true})
		if err == nil {
			if err := peer.SetAnswer(ans.SDP); err != nil {
				tb.Fatalf("SetAnswer: %v", err)
			}
			return id, tries
		}
		var full *media.PoolFullError
		if !errors.As(err, &full) {
			tb.Fatalf("open: %v", err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still refused after %d tries: %v (retry after %s)", tries, err, full.RetryAfter)
		}
		time.Sleep(min(max(full.RetryAfter, 50*time.Millisecond), time.Second))
	}
	tb.Fatal("too many tries")
	return "", 0
}

// An attacker posting dead offers at 2 a second cannot keep a publisher and
// a viewer out: with 3 ports they get leases (preempting dead sessions),
// connect and carry media; no connected session is ever preempted, and
// everything is freed at the end.
func TestDeadOffersCannotStarve(t *testing.T) {
	base := leakcheck.Take(t)
	ports := freePorts(t, 3)
	rec := newRecorder()
	e, err := media.NewEngine(media.Config{
		Ports: ports, PublicIPs: []string{"127.0.0.1"}, PeersPerPort: 1,
		// Long enough that the old code holds every port for the whole test.
		SetupTimeout:  time.Minute,
		UnprovenGrace: time.Second,
	}, rec.on)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	dead := deadOffer(t)

	// The attacker: 30 dead offers, one every 500 ms (15 s), from "another
	// address": its loopback candidates are not trusted, so not even
	// pinhole's checks go anywhere.
	const deadOffers = 30
	var (
		mu       sync.Mutex
		deadIDs  []string
		answered int
	)
	stop := make(chan struct{})
	attackDone := make(chan struct{})
	go func() {
		defer close(attackDone)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < deadOffers; i++ {
			id := fmt.Sprintf("dead-%02d-%s", i, newID())
			_, err := e.Watch(context.Background(), media.SessionRequest{ID: id, Room: "attack", Offer: dead})
			mu.Lock()
			deadIDs = append(deadIDs, id)
			if err == nil {
				answered++
			}
			mu.Unlock()
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-attackDone
	})
	if !servertest.WaitFor(wait, func() bool { free, _ := e.Capacity(); return free == 0 }) {
		t.Fatal("the dead offers never filled the pool")
	}

	// The legitimate clients, while the attack goes on.
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true})
	pid, ptries := openRetry(t, e.Publish, p, "show")
	p.Start()
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	vid, vtries := openRetry(t, e.Watch, v, "show")
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	if err := v.WaitConnected(ctxT(t)); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	waitMedia(t, v, 20, 20)
	t.Logf("publisher leased after %d tries, viewer after %d", ptries, vtries)
	<-attackDone
	// Media still flows after the whole attack.
	st := v.Stats()
	waitMedia(t, v, int(st.VideoFrames)+10, int(st.AudioPackets)+10)

	connected := map[string]bool{}
	reasons := map[string]string{}
	rec.mu.Lock()
	for _, ev := range rec.events {
		if ev.Kind == media.EventState && ev.State == "connected" {
			connected[ev.SessionID] = true
		}
		if ev.Kind == media.EventClosed {
			reasons[ev.SessionID] = ev.Detail
		}
	}
	rec.mu.Unlock()
	for id := range connected {
		if r, ok := reasons[id]; ok {
			t.Errorf("connected session %s was closed during the attack: %q", id, r)
		}
	}
	if !connected[pid] || !connected[vid] || !e.Live(pid) || !e.Live(vid) {
		t.Fatalf("publisher or viewer not connected and live: %v", connected)
	}
	mu.Lock()
	preempted := 0
	for _, id := range deadIDs {
		if connected[id] {
			t.Errorf("dead session %s connected", id)
		}
		if strings.HasPrefix(reasons[id], "preempted: ") {
			preempted++
		}
	}
	t.Logf("%d dead offers, %d answered, %d preempted", len(deadIDs), answered, preempted)
	mu.Unlock()
	if preempted == 0 {
		t.Fatal("no dead session was preempted")
	}

	// Everything is freed: the legitimate sessions, the dead ones left.
	for _, id := range []string{pid, vid} {
		if err := e.CloseSession(id, "test done"); err != nil {
			t.Fatal(err)
		}
	}
	e.CloseRoom("attack", "test done")
	if free, total := e.Capacity(); free != total {
		t.Fatalf("free %d of %d at the end", free, total)
	}
	_ = p.Close()
	_ = v.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	leakcheck.Settle(t, base, 10*time.Second)
}

// A connected viewer with nothing to receive is closed after
// NoPublisherTimeout; one following a live publisher is not.
func TestViewerWithoutPublisherClosed(t *testing.T) {
	const timeout = 2 * time.Second
	f := newEngine(t, 3, func(c *media.Config) { c.NoPublisherTimeout = timeout })
	f.publish(t, "live", mediatest.PublisherOptions{Video: "vp8", Audio: true})
	watching, wid, _ := f.watch(t, "live", "", mediatest.ViewerOptions{})
	lonely, lid, _ := f.watch(t, "empty", "", mediatest.ViewerOptions{})
	if err := lonely.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	waitMedia(t, watching, 10, 10)
	ev := f.rec.waitFor(t, "lonely viewer closed", closedEvent(lid))
	if !strings.HasPrefix(ev.Detail, "no publisher: ") {
		t.Fatalf("lonely viewer closed for %q", ev.Detail)
	}
	// The watching viewer outlives another whole timeout and more.
	time.Sleep(timeout + 2*time.Second)
	if !f.e.Live(wid) {
		t.Fatal("a viewer with a publisher was closed")
	}
	st := watching.Stats()
	waitMedia(t, watching, int(st.VideoFrames)+5, int(st.AudioPackets)+5)
}

// Retry-After on a full pool, through the HTTP stack: the documented 30 s
// when every port carries connected media; the time until the oldest
// unproven session can be preempted otherwise.
func TestRetryAfterTellsTheTruth(t *testing.T) {
	hc := &http.Client{Timeout: wait}
	retryAfter := func(t *testing.T, env *servertest.Env) int {
		t.Helper()
		v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
		_, err := mediatest.Negotiate(ctxT(t), hc, env.Srv.URL+"/whep/room", v, nil)
		var he *mediatest.HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("on a full pool: %v, want 503", err)
		}
		n, err := strconv.Atoi(he.Header.Get("Retry-After"))
		if err != nil {
			t.Fatalf("Retry-After %q", he.Header.Get("Retry-After"))
		}
		return n
	}

	t.Run("connected media", func(t *testing.T) {
		env := servertest.New(t, 2, testnet.MediaLo, testnet.MediaHi, func(c *server.Config) {
			c.Media.UnprovenGrace = time.Second
			c.Media.NoPublisherTimeout = time.Minute
		})
		p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true})
		if _, err := mediatest.Negotiate(ctxT(t), hc, env.Srv.URL+"/whip/room", p, nil); err != nil {
			t.Fatal(err)
		}
		p.Start()
		v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
		if _, err := mediatest.Negotiate(ctxT(t), hc, env.Srv.URL+"/whep/room", v, nil); err != nil {
			t.Fatal(err)
		}
		waitMedia(t, v, 10, 10)
		if got := retryAfter(t, env); got != 30 {
			t.Fatalf("Retry-After %d with every port carrying media, want the documented 30", got)
		}
	})

	t.Run("unproven", func(t *testing.T) {
		const grace = 20 * time.Second
		env := servertest.New(t, 2, testnet.MediaLo, testnet.MediaHi, func(c *server.Config) {
			c.Media.UnprovenGrace = grace
			c.Media.SetupTimeout = time.Minute
		})
		dead := deadOffer(t)
		start := time.Now()
		for i := 0; i < 2; i++ {
			resp, body := env.Do(http.MethodPost, "/whep/room", dead, "Content-Type", "application/sdp")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("dead offer %d: %d %s", i, resp.StatusCode, body)
			}
		}
		got := retryAfter(t, env)
		elapsed := time.Since(start)
		// The oldest was answered after start and becomes preemptible grace
		// later; the 503 was written before now.
		lo := int((grace - elapsed) / time.Second)
		if got < lo || got > int(grace/time.Second) {
			t.Fatalf("Retry-After %d, want from %d to %d (the oldest unproven session becomes preemptible %s after its answer)",
				got, lo, int(grace/time.Second), grace)
		}
	})
}
