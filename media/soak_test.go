package media_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// soakSessions is how many engine sessions TestSoak creates and ends. 2,000
// is enough churn to show a leak of one lease, goroutine or fd per hundred
// sessions; go test -soak.sessions=200 for a quick look.
var soakSessions = flag.Int("soak.sessions", 2000, "sessions TestSoak creates and ends")

// soakWorkers bounds how many sessions are being set up or torn down at
// once: enough to make the engine's locks and the pool contend, few enough
// for a 2-core machine under -race.
const soakWorkers = 12

// soakConfig makes every ending fast: a client that never applies the answer
// is dropped after four seconds (less ends healthy sessions whose DTLS
// handshake is slow under load), a client whose socket vanished is declared
// failed about two seconds after its last packet. Shorter ICE timeouts make
// healthy sessions fail spuriously on a loaded 2-core machine under -race.
func soakConfig(c *media.Config) {
	c.SetupTimeout = 4 * time.Second
	c.ICEDisconnectedTimeout = time.Second
	c.ICEFailedTimeout = time.Second
	c.ICEKeepalive = 200 * time.Millisecond
	c.Logger = slog.New(slog.DiscardHandler)
}

// closedWatch tells when an engine session has ended, and counts how often
// each one was reported closed (exactly once is the contract).
type closedWatch struct {
	mu      sync.Mutex
	waiting map[string]chan struct{}
	closes  map[string]int
	reasons map[string]string
}

func newClosedWatch() *closedWatch {
	return &closedWatch{waiting: map[string]chan struct{}{}, closes: map[string]int{}, reasons: map[string]string{}}
}

func (w *closedWatch) on(ev media.Event) {
	if ev.Kind != media.EventClosed {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closes[ev.SessionID]++
	w.reasons[ev.SessionID] = ev.Detail
	if ch := w.waiting[ev.SessionID]; ch != nil {
		close(ch)
		delete(w.waiting, ev.SessionID)
	}
}

// expect registers id before its session is created, so the close cannot be
// missed.
func (w *closedWatch) expect(id string) <-chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiting[id] = ch
	w.mu.Unlock()
	return ch
}

// reason returns why the engine ended a session ("" while it is live).
func (w *closedWatch) reason(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reasons[id]
}

func (w *closedWatch) forget(id string) {
	w.mu.Lock()
	delete(w.waiting, id)
	w.mu.Unlock()
}

func (w *closedWatch) check(tb testing.TB, ids []string) {
	tb.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		if n := w.closes[id]; n != 1 {
			tb.Errorf("session %s reported closed %d times, want once", id, n)
		}
	}
}

// soakClient is a mediatest publisher or viewer.
type soakClient interface {
	Offer(context.Context) (string, error)
	SetAnswer(string) error
	WaitConnected(context.Context) error
	PeerConnection() *webrtc.PeerConnection
	Close() error
}

// soak drives one engine with bounded concurrency.
type soak struct {
	t     *testing.T
	e     *media.Engine
	watch *closedWatch

	mu  sync.Mutex
	ids []string

	retries atomic.Int64

	// Endings that take a timeout (setup, ICE failure) are awaited in the
	// background so a worker can start the next session meanwhile; the
	// port stays leased until then, which the pool's size bounds.
	bg      sync.WaitGroup
	bgErr   error
	bgErrMu sync.Mutex
}

// later runs fn in the background and keeps its first error.
func (s *soak) later(fn func() error) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := fn(); err != nil {
			s.bgErrMu.Lock()
			if s.bgErr == nil {
				s.bgErr = err
			}
			s.bgErrMu.Unlock()
		}
	}()
}

// newClient builds a client; audio only keeps the clip loading and SDP
// small, the session's life cycle is the same as with video. vanish, when
// set, gives the client its own socket through an ICE mux that the test can
// close to make the client disappear without a DTLS close_notify.
func (s *soak) newClient(publisher bool, vanish *ice.UDPMuxDefault) soakClient {
	netw := mediatest.Network{}
	if vanish != nil {
		netw.Configure = func(se *webrtc.SettingEngine) { se.SetICEUDPMux(vanish) }
	}
	if publisher {
		return mediatest.NewPublisher(s.t, mediatest.PublisherOptions{Audio: true, Network: netw})
	}
	return mediatest.NewViewer(s.t, mediatest.ViewerOptions{Audio: true, Network: netw})
}

// open creates an engine session for c in room, retrying while the pool is
// full (other workers' sessions are ending). It returns the session id and
// a channel closed when the engine reports the session ended.
func (s *soak) open(ctx context.Context, c soakClient, room string, publisher bool) (string, <-chan struct{}, *media.Answer, error) {
	offer, err := c.Offer(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	for {
		id := newID()
		closed := s.watch.expect(id)
		req := media.SessionRequest{ID: id, Room: room, Offer: offer, TrustLocalCandidates: true}
		var ans *media.Answer
		if publisher {
			ans, err = s.e.Publish(ctx, req)
		} else {
			ans, err = s.e.Watch(ctx, req)
		}
		if errors.Is(err, media.ErrNoPortAvailable) {
			s.watch.forget(id)
			s.retries.Add(1)
			select {
			case <-time.After(20 * time.Millisecond):
				continue
			case <-ctx.Done():
				return "", nil, nil, ctx.Err()
			}
		}
		if err != nil {
			s.watch.forget(id)
			return "", nil, nil, err
		}
		s.mu.Lock()
		s.ids = append(s.ids, id)
		s.mu.Unlock()
		return id, closed, ans, nil
	}
}

func waitClosed(ctx context.Context, ch <-chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: session not closed: %w", what, ctx.Err())
	}
}

// connect opens a session and completes ICE and DTLS with it.
func (s *soak) connect(ctx context.Context, room string, publisher bool, vanish *ice.UDPMuxDefault) (soakClient, string, <-chan struct{}, error) {
	c := s.newClient(publisher, vanish)
	id, closed, ans, err := s.open(ctx, c, room, publisher)
	if err != nil {
		_ = c.Close()
		return nil, "", nil, err
	}
	if err := c.SetAnswer(ans.SDP); err != nil {
		_ = c.Close()
		return nil, "", nil, err
	}
	if err := c.WaitConnected(ctx); err != nil {
		_ = c.Close()
		return nil, "", nil, fmt.Errorf("connect on port %d: %w (engine side: %q)", ans.LocalPort, err, s.watch.reason(id))
	}
	return c, id, closed, nil
}

// The session kinds of the mix. Each returns how many engine sessions it
// created and ended.
func (s *soak) normalClose(ctx context.Context, i int) (int, error) {
	c, id, closed, err := s.connect(ctx, "soak", i%2 == 0, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := s.e.CloseSession(id, "DELETE"); err != nil {
		return 1, fmt.Errorf("DELETE: %w (engine ended it: %q)", err, s.watch.reason(id))
	}
	return 1, waitClosed(ctx, closed, "DELETE")
}

// clientClose: the client hangs up (DTLS close_notify), the engine notices.
func (s *soak) clientClose(ctx context.Context, i int) (int, error) {
	c, _, closed, err := s.connect(ctx, "soak", i%2 == 0, nil)
	if err != nil {
		return 0, err
	}
	_ = c.Close()
	return 1, waitClosed(ctx, closed, "client close")
}

// vanished: the client's socket dies without a word, as when its machine
// drops off the network; ICE fails and the engine frees the port.
func (s *soak) vanished(ctx context.Context, i int) (int, error) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock})
	c, _, closed, err := s.connect(ctx, "soak", i%2 == 0, mux)
	if err != nil {
		_ = mux.Close()
		return 0, err
	}
	_ = mux.Close()
	s.later(func() error {
		defer c.Close()
		return waitClosed(ctx, closed, "vanished client")
	})
	return 1, nil
}

// neverConnected: the client takes no answer; the setup timeout ends it.
func (s *soak) neverConnected(ctx context.Context, i int) (int, error) {
	c := s.newClient(i%2 == 0, nil)
	_, closed, _, err := s.open(ctx, c, "soak", i%2 == 0)
	_ = c.Close()
	if err != nil {
		return 0, err
	}
	s.later(func() error { return waitClosed(ctx, closed, "setup timeout") })
	return 1, nil
}

// roomDeleted: a connected publisher and viewer and a viewer still setting
// up lose their room.
func (s *soak) roomDeleted(ctx context.Context, i int) (int, error) {
	room := fmt.Sprintf("soak-del-%d", i)
	pub, pubID, pubClosed, err := s.connect(ctx, room, true, nil)
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	view, viewID, viewClosed, err := s.connect(ctx, room, false, nil)
	if err != nil {
		return 1, err
	}
	defer view.Close()
	pending := s.newClient(false, nil)
	defer pending.Close()
	pendID, pendClosed, _, err := s.open(ctx, pending, room, false)
	if err != nil {
		return 2, err
	}
	if n := s.e.CloseRoom(room, "room deleted"); n != 3 {
		return 3, fmt.Errorf("CloseRoom ended %d sessions, want 3; ended before: publisher %q, viewer %q, pending %q",
			n, s.watch.reason(pubID), s.watch.reason(viewID), s.watch.reason(pendID))
	}
	for _, ch := range []<-chan struct{}{pubClosed, viewClosed, pendClosed} {
		if err := waitClosed(ctx, ch, "room deleted"); err != nil {
			return 3, err
		}
	}
	if got := s.e.Publishers(room); len(got) != 0 {
		return 3, fmt.Errorf("deleted room still lists publishers %v", got)
	}
	return 3, nil
}

// concurrentDelete: several DELETEs of the same resource race; each gets
// nil or ErrSessionNotFound, at least one succeeds, the session ends once.
func (s *soak) concurrentDelete(ctx context.Context, i int) (int, error) {
	c, id, closed, err := s.connect(ctx, "soak", i%2 == 0, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var wg sync.WaitGroup
	var ok atomic.Int32
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := s.e.CloseSession(id, "DELETE"); {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, media.ErrSessionNotFound):
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 1, fmt.Errorf("concurrent DELETE: %w", err)
	}
	if ok.Load() == 0 {
		return 1, errors.New("no concurrent DELETE succeeded")
	}
	if s.e.Live(id) {
		return 1, errors.New("session live after DELETE returned")
	}
	return 1, waitClosed(ctx, closed, "concurrent DELETE")
}

// Churn: sessions of every kind of ending are created and ended, a dozen
// at a time, until soakSessions have been; then every lease is free and
// goroutines and open fds are back where they were with the engine idle.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test skipped in -short mode")
	}
	ports := freePorts(t, 6*soakWorkers)
	watch := newClosedWatch()
	cfg := media.Config{Ports: ports, PublicIPs: []string{"127.0.0.1"}}
	soakConfig(&cfg)
	e, err := media.NewEngine(cfg, watch.on)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := &soak{t: t, e: e, watch: watch}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Warm up once so that what Pion starts lazily on first use (and
	// keeps) is in the baseline.
	if _, err := s.normalClose(ctx, 0); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	base := leakcheck.Take(t)

	kinds := []struct {
		name string
		run  func(context.Context, int) (int, error)
	}{
		{"normal-close", s.normalClose},
		{"normal-close", s.normalClose},
		{"client-close", s.clientClose},
		{"vanished", s.vanished},
		{"never-connected", s.neverConnected},
		{"never-connected", s.neverConnected},
		{"room-deleted", s.roomDeleted},
		{"concurrent-delete", s.concurrentDelete},
	}
	var (
		next, done atomic.Int64
		perKind    sync.Map // name -> *atomic.Int64
		wg         sync.WaitGroup
		firstErr   error
		errOnce    sync.Once
	)
	for _, k := range kinds {
		perKind.LoadOrStore(k.name, new(atomic.Int64))
	}
	start := time.Now()
	for range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && done.Load() < int64(*soakSessions) {
				i := int(next.Add(1))
				k := kinds[i%len(kinds)]
				n, err := k.run(ctx, i)
				done.Add(int64(n))
				v, _ := perKind.Load(k.name)
				v.(*atomic.Int64).Add(int64(n))
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("%s #%d: %w", k.name, i, err); cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	s.bg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if s.bgErr != nil {
		t.Fatal(s.bgErr)
	}
	rate := float64(done.Load()) / elapsed.Seconds()
	if free, total := e.Capacity(); free != total {
		t.Fatalf("after churn %d of %d leases free", free, total)
	}
	for _, st := range e.Ports() {
		if st.Leased || len(st.Holders) > 0 {
			t.Fatalf("port %d still leased by %v", st.LocalPort, st.Holders)
		}
	}
	after := leakcheck.Settle(t, base, 30*time.Second)
	s.mu.Lock()
	ids := s.ids
	s.mu.Unlock()
	watch.check(t, ids)
	mix := ""
	perKind.Range(func(k, v any) bool {
		mix += fmt.Sprintf(" %s=%d", k, v.(*atomic.Int64).Load())
		return true
	})
	t.Logf("soak: %d sessions in %s = %.1f sessions/s sustained (%d workers, %d ports, %d pool-full retries);%s",
		done.Load(), elapsed.Round(time.Millisecond), rate, soakWorkers, len(ports), s.retries.Load(), mix)
	t.Logf("soak: baseline %s; after churn %s", base, after)
}

// Shutdown while sessions are being created: workers keep offering until
// the engine says ErrClosed; Close returns with every lease free and every
// port bindable, and nothing of the engine's is left running.
func TestShutdownWhileCreating(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	base := leakcheck.Take(t)
	ports := freePorts(t, 8)
	cfg := media.Config{Ports: ports, PublicIPs: []string{"127.0.0.1"}}
	soakConfig(&cfg)
	watch := newClosedWatch()
	e, err := media.NewEngine(cfg, watch.on)
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, e: e, watch: watch}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		created    atomic.Int64
		wg         sync.WaitGroup
		mu         sync.Mutex
		clients    []soakClient
		unexpected []error
	)
	for w := range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				publisher := (w+i)%2 == 0
				c := s.newClient(publisher, nil)
				mu.Lock()
				clients = append(clients, c)
				mu.Unlock()
				offer, err := c.Offer(ctx)
				if err != nil {
					return
				}
				req := media.SessionRequest{ID: newID(), Room: fmt.Sprintf("r%d", w%3), Offer: offer, TrustLocalCandidates: true}
				var ans *media.Answer
				if publisher {
					ans, err = e.Publish(ctx, req)
				} else {
					ans, err = e.Watch(ctx, req)
				}
				switch {
				case err == nil:
					created.Add(1)
					s.mu.Lock()
					s.ids = append(s.ids, req.ID)
					s.mu.Unlock()
					// Every session ends soon so the pool keeps churning:
					// hung up by the client, timed out, or deleted.
					switch i % 4 {
					case 0:
						// Connects, then hangs up at once.
						_ = c.SetAnswer(ans.SDP)
						go func() { time.Sleep(50 * time.Millisecond); _ = c.Close() }()
					case 1:
					default:
						if err := e.CloseSession(req.ID, "DELETE"); err != nil && !errors.Is(err, media.ErrSessionNotFound) {
							mu.Lock()
							unexpected = append(unexpected, err)
							mu.Unlock()
						}
					}
				case errors.Is(err, media.ErrClosed):
					return
				case errors.Is(err, media.ErrNoPortAvailable):
					time.Sleep(10 * time.Millisecond)
				default:
					// Recorded, not fatal at once: the shutdown is still
					// worth watching.
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
				}
			}
		}()
	}
	// Shut down mid-flight, once the pool has been full and churned.
	deadline := time.Now().Add(20 * time.Second)
	for created.Load() < int64(5*len(ports)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if free, total := e.Capacity(); free != total {
		t.Errorf("after Close %d of %d leases free", free, total)
	}
	for _, p := range ports {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: p})
		if err != nil {
			t.Errorf("port %d still bound after Close: %v", p, err)
			continue
		}
		_ = c.Close()
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Errorf("%d session creations failed with errors other than ErrClosed/ErrNoPortAvailable (a 500 for the client), first: %v", len(unexpected), unexpected[0])
	}
	if free, total := e.Capacity(); free != total {
		t.Errorf("after the workers stopped %d of %d leases free", free, total)
	}
	for _, c := range clients {
		_ = c.Close()
	}
	s.mu.Lock()
	watch.check(t, s.ids)
	s.mu.Unlock()
	after := leakcheck.Settle(t, base, 30*time.Second)
	t.Logf("shutdown while creating: %d sessions created before ErrClosed; baseline %s, after %s", created.Load(), base, after)
}

// Publishers leave mid-stream, in each way a publisher can leave, while two
// viewers watch: the viewers stay connected and get the next publisher's
// media; at the end nothing is left leased or running.
func TestPublisherLeavesMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	base := leakcheck.Take(t)
	cfg := media.Config{Ports: freePorts(t, 4), PublicIPs: []string{"127.0.0.1"}}
	soakConfig(&cfg)
	watch := newClosedWatch()
	e, err := media.NewEngine(cfg, watch.on)
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, e: e, watch: watch}
	ctx := ctxT(t)
	const room = "stage"

	var viewers []*mediatest.Viewer
	var viewerIDs []string
	for range 2 {
		v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
		id, _, ans, err := s.open(ctx, v, room, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.SetAnswer(ans.SDP); err != nil {
			t.Fatal(err)
		}
		viewers, viewerIDs = append(viewers, v), append(viewerIDs, id)
	}
	leaves := []string{"vanishes", "is deleted", "hangs up"}
	for _, how := range leaves {
		var mux *ice.UDPMuxDefault
		if how == "vanishes" {
			sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock})
			t.Cleanup(func() { _ = mux.Close() })
		}
		netw := mediatest.Network{}
		if mux != nil {
			netw.Configure = func(se *webrtc.SettingEngine) { se.SetICEUDPMux(mux) }
		}
		p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true, Network: netw})
		id, closed, ans, err := s.open(ctx, p, room, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SetAnswer(ans.SDP); err != nil {
			t.Fatal(err)
		}
		p.Start()
		for _, v := range viewers {
			st := v.Stats()
			waitMedia(t, v, int(st.VideoFrames)+15, int(st.AudioPackets)+15)
		}
		switch how {
		case "vanishes":
			_ = mux.Close()
		case "is deleted":
			if err := e.CloseSession(id, "DELETE"); err != nil {
				t.Fatal(err)
			}
		case "hangs up":
			_ = p.Close()
		}
		if err := waitClosed(ctx, closed, "publisher "+how); err != nil {
			t.Fatal(err)
		}
		_ = p.Close()
		if got := e.Publishers(room); len(got) != 0 {
			t.Fatalf("publisher %s: room still lists publishers %v", how, got)
		}
		for i, id := range viewerIDs {
			if !e.Live(id) {
				t.Fatalf("publisher %s: viewer %d was ended too (%s)", how, i, watch.reason(id))
			}
		}
	}
	// The viewers kept one connection each through three publishers.
	for i, v := range viewers {
		if st := v.Stats(); st.KeyFrames < uint64(len(leaves)) {
			t.Errorf("viewer %d saw %d keyframes over %d publishers", i, st.KeyFrames, len(leaves))
		}
		if err := e.CloseSession(viewerIDs[i], "DELETE"); err != nil {
			t.Fatal(err)
		}
		_ = v.Close()
	}
	if free, total := e.Capacity(); free != total {
		t.Fatalf("%d of %d leases free at the end", free, total)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	watch.check(t, s.ids)
	s.mu.Unlock()
	after := leakcheck.Settle(t, base, 30*time.Second)
	t.Logf("publishers leaving mid-stream: baseline %s, after %s", base, after)
}
