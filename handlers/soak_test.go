package handlers_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
	"github.com/pinhole-rtc/pinhole/internal/servertest"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/store"
)

// httpSoakSessions is how many sessions TestHTTPSoak creates through the
// HTTP API. The engine-level soak (media/soak_test.go) does the 2,000; this
// one adds HTTP, the store and the recorder on the same paths, at a count
// that keeps make test reasonable under -race.
var httpSoakSessions = flag.Int("soak.http", 400, "sessions TestHTTPSoak creates and ends")

// soakEnv is a server with fast endings: setup timeout 4 s, a vanished
// client failed about 2 s after its last packet.
func soakEnv(t *testing.T, ports int) *testEnv {
	t.Helper()
	sc := servertest.Defaults(t, ports, testnet.HandlersLo, testnet.HandlersHi)
	sc.Logger = slog.New(slog.DiscardHandler)
	sc.Media.SetupTimeout = 4 * time.Second
	sc.Media.ICEFailedTimeout = time.Second
	e := servertest.Start(t, sc)
	return &testEnv{Env: e, t: t, srv: e.Srv, store: e.Store, engine: e.Engine, rec: e.Recorder, ports: e.Ports}
}

// httpClient is a mediatest publisher or viewer.
type httpClient interface {
	mediatest.Offerer
	WaitConnected(context.Context) error
	Close() error
}

type httpSoak struct {
	t  *testing.T
	e  *testEnv
	hc *http.Client

	mu  sync.Mutex
	ids []string
}

func (s *httpSoak) client(publisher bool, mux *ice.UDPMuxDefault) httpClient {
	netw := mediatest.Network{}
	if mux != nil {
		netw.Configure = func(se *webrtc.SettingEngine) { se.SetICEUDPMux(mux) }
	}
	if publisher {
		return mediatest.NewPublisher(s.t, mediatest.PublisherOptions{Audio: true, Network: netw})
	}
	return mediatest.NewViewer(s.t, mediatest.ViewerOptions{Audio: true, Network: netw})
}

func endpoint(room string, publisher bool) string {
	if publisher {
		return "/whip/" + room
	}
	return "/whep/" + room
}

// negotiate POSTs c's offer, retrying while the pool is full (503) with
// the same offer, and applies the answer. It returns the resource URL.
func (s *httpSoak) negotiate(ctx context.Context, c httpClient, room string, publisher bool) (string, error) {
	offer, err := c.Offer(ctx)
	if err != nil {
		return "", err
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.e.srv.URL+endpoint(room, publisher), strings.NewReader(offer))
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := s.hc.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated:
		case http.StatusServiceUnavailable:
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		default:
			return "", fmt.Errorf("POST %s: %d %s", endpoint(room, publisher), resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		s.mu.Lock()
		s.ids = append(s.ids, path.Base(loc))
		s.mu.Unlock()
		if err := c.SetAnswer(string(body)); err != nil {
			return "", err
		}
		return s.e.srv.URL + loc, nil
	}
}

func (s *httpSoak) connect(ctx context.Context, room string, publisher bool, mux *ice.UDPMuxDefault) (httpClient, string, error) {
	c := s.client(publisher, mux)
	url, err := s.negotiate(ctx, c, room, publisher)
	if err != nil {
		_ = c.Close()
		return nil, "", err
	}
	if err := c.WaitConnected(ctx); err != nil {
		_ = c.Close()
		return nil, "", err
	}
	return c, url, nil
}

func (s *httpSoak) delete(ctx context.Context, url string, want ...int) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	return fmt.Errorf("DELETE %s: %d, want %v", url, resp.StatusCode, want)
}

// Churn through HTTP: WHIP and WHEP sessions ended by DELETE, by a vanished
// client, by the setup timeout, by deleting their room and by concurrent
// DELETEs of one resource. Afterwards every session record is closed, every
// port free, and goroutines and fds are back to the idle server's.
func TestHTTPSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test skipped in -short mode")
	}
	const workers = 8
	e := soakEnv(t, 6*workers)
	s := &httpSoak{t: t, e: e, hc: e.srv.Client()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Warm-up, then the baseline: the idle server with its keep-alive
	// connections closed.
	c, url, err := s.connect(ctx, "warm", true, nil)
	if err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	_ = s.delete(ctx, url, http.StatusOK)
	_ = c.Close()
	time.Sleep(500 * time.Millisecond)
	s.hc.CloseIdleConnections()
	base := leakcheck.Take(t)

	kinds := []struct {
		name string
		run  func(ctx context.Context, i int) (int, error)
	}{
		{"delete", func(ctx context.Context, i int) (int, error) {
			c, url, err := s.connect(ctx, "soak", i%2 == 0, nil)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			return 1, s.delete(ctx, url, http.StatusOK) // RFC 9725 §4.2
		}},
		{"vanished", func(ctx context.Context, i int) (int, error) {
			sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return 0, err
			}
			mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock})
			defer mux.Close()
			c, _, err := s.connect(ctx, "soak", i%2 == 0, mux)
			if err != nil {
				return 0, err
			}
			_ = mux.Close()
			_ = c.Close() // its socket is gone: no close_notify reaches pinhole
			return 1, nil
		}},
		{"never-connected", func(ctx context.Context, i int) (int, error) {
			c := s.client(i%2 == 0, nil)
			defer c.Close()
			offer, err := c.Offer(ctx)
			if err != nil {
				return 0, err
			}
			for {
				resp, body := e.do("POST", endpoint("soak", i%2 == 0), offer, "Content-Type", "application/sdp")
				if resp.StatusCode == http.StatusServiceUnavailable {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if resp.StatusCode != http.StatusCreated {
					return 0, fmt.Errorf("POST: %d %s", resp.StatusCode, body)
				}
				s.mu.Lock()
				s.ids = append(s.ids, path.Base(resp.Header.Get("Location")))
				s.mu.Unlock()
				return 1, nil
			}
		}},
		{"room-deleted", func(ctx context.Context, i int) (int, error) {
			room := fmt.Sprintf("del-%d", i)
			p, _, err := s.connect(ctx, room, true, nil)
			if err != nil {
				return 0, err
			}
			defer p.Close()
			v, _, err := s.connect(ctx, room, false, nil)
			if err != nil {
				return 1, err
			}
			defer v.Close()
			return 2, s.delete(ctx, e.srv.URL+"/api/v1/rooms/"+room, http.StatusNoContent)
		}},
		{"concurrent-delete", func(ctx context.Context, i int) (int, error) {
			c, url, err := s.connect(ctx, "soak", i%2 == 0, nil)
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
					req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
					resp, err := s.hc.Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusOK:
						ok.Add(1)
					case http.StatusNotFound:
					default:
						errs <- fmt.Errorf("concurrent DELETE: %d", resp.StatusCode)
					}
				}()
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				return 1, err
			}
			if ok.Load() == 0 {
				return 1, errors.New("no concurrent DELETE answered 200")
			}
			return 1, nil
		}},
	}
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errOnce    sync.Once
		firstErr   error
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && done.Load() < int64(*httpSoakSessions) {
				i := int(next.Add(1))
				k := kinds[i%len(kinds)]
				n, err := k.run(ctx, i)
				done.Add(int64(n))
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("%s #%d: %w", k.name, i, err); cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	created := time.Since(start)
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	// The timeouts end the last vanished and never-connected sessions.
	end := time.Now().Add(30 * time.Second)
	for {
		live, err := e.store.ListSessions(context.Background(), store.SessionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		free, total := e.engine.Capacity()
		if len(live) == 0 && free == total {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d sessions not closed, %d of %d leases free", len(live), free, total)
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	s.mu.Lock()
	ids := s.ids
	s.mu.Unlock()
	for _, id := range ids {
		sess, err := e.store.GetSession(context.Background(), id)
		if err != nil {
			t.Fatalf("session %s: %v", id, err)
		}
		if sess.State != store.StateClosed || sess.CloseReason == "" {
			t.Fatalf("session %s: state %s, reason %q", id, sess.State, sess.CloseReason)
		}
	}
	_, body := e.do("GET", "/api/v1/ports", "")
	if !strings.Contains(body, `"leased":0`) {
		t.Fatalf("ports after soak: %s", body)
	}
	s.hc.CloseIdleConnections()
	after := leakcheck.Settle(t, base, 30*time.Second)
	t.Logf("http soak: %d sessions created in %s (%.1f sessions/s), all ended after %s; %d workers, %d ports",
		done.Load(), created.Round(time.Millisecond), float64(done.Load())/created.Seconds(), elapsed.Round(time.Millisecond), workers, len(e.ports))
	t.Logf("http soak: baseline %s; after %s", base, after)
}
