// Package servertest runs a whole pinhole (package server) over loopback
// for tests: memory store, real engine on free UDP ports, httptest.Server.
// Every test environment of handlers, diagnostics, main and the NAT tests
// is built here, through server.New, so none wires pinhole by hand.
package servertest

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/server"
)

// Env is a running pinhole.
type Env struct {
	T testing.TB
	*server.Server
	// Srv serves Server.Handler on loopback.
	Srv *httptest.Server
	// Ports are the leased UDP ports.
	Ports []int
}

// Option changes the configuration before the server is built.
type Option func(*server.Config)

// Defaults is the configuration New starts from, for ports (local, and
// public when publicPorts is set) taken from [lo, hi]: loopback only, short
// ICE timeouts so failures show within seconds, open CORS, rooms made on
// the fly.
func Defaults(t testing.TB, ports int, lo, hi int) server.Config {
	log := Logger(t)
	return server.Config{
		Logger: log,
		// Open, as a lab is: tests of who may do what set an AdminToken
		// and OpenAPI false.
		HTTP:  handlers.Config{CORSOrigins: []string{"*"}, AutoCreateRooms: true, OpenAPI: true},
		Media: mediaDefaults(testnet.FreeUDPPorts(t, ports, lo, hi)),
	}
}

// New builds and serves pinhole with ports UDP ports from [lo, hi] and the
// options applied; everything is closed when the test ends.
func New(t testing.TB, ports, lo, hi int, opts ...Option) *Env {
	t.Helper()
	cfg := Defaults(t, ports, lo, hi)
	for _, o := range opts {
		o(&cfg)
	}
	return Start(t, cfg)
}

// Start builds and serves pinhole from cfg.
func Start(t testing.TB, cfg server.Config) *Env {
	t.Helper()
	s, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv := httptest.NewUnstartedServer(s.Handler)
	// As main's server does, so the edge can tell how a client arrived.
	srv.Config.ConnContext = edge.ConnContext
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
	})
	return &Env{T: t, Server: s, Srv: srv, Ports: cfg.Media.Ports}
}

// Do sends a request and returns the answer with its body read; header is
// name, value pairs.
func (e *Env) Do(method, path string, body string, header ...string) (*http.Response, string) {
	e.T.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.Srv.URL+path, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	// A JSON body goes as application/json, as httpie and fetch() front
	// ends send it, unless the test says otherwise.
	if t := strings.TrimSpace(body); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.Srv.Client().Do(req)
	if err != nil {
		e.T.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(b)
}

// Logger logs warnings and errors into the test's output. Pion goroutines
// may still log while the engine winds down; once the test has ended their
// lines are dropped (t.Log would panic).
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// WaitFor polls cond every 20 ms until it holds or d passes, and reports
// whether it held.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// mediaDefaults is the engine configuration of the tests: loopback, one
// peer per port, ICE timeouts of a second or two so a broken path shows
// quickly.
func mediaDefaults(ports []int) media.Config {
	return media.Config{
		Ports:                  ports,
		PublicIPs:              []string{"127.0.0.1"},
		BindIP:                 "127.0.0.1",
		PeersPerPort:           1,
		SetupTimeout:           10 * time.Second,
		ICEDisconnectedTimeout: time.Second,
		ICEFailedTimeout:       2 * time.Second,
		ICEKeepalive:           200 * time.Millisecond,
		IdleTimeout:            10 * time.Second,
	}
}

// Problem decodes and checks an application/problem+json answer.
func Problem(t testing.TB, resp *http.Response, body string, status int) map[string]any {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != api.ProblemContentType {
		t.Fatalf("Content-Type %q, want %s; body %s", ct, api.ProblemContentType, body)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	if p["status"] != float64(status) || p["title"] == "" || p["type"] == "" {
		t.Fatalf("problem members wrong: %s", body)
	}
	return p
}

// FieldNamed reports whether a validation problem names field.
func FieldNamed(p map[string]any, field string) bool {
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		if m, _ := e.(map[string]any); m["field"] == field {
			return true
		}
	}
	return false
}
