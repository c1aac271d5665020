package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

func TestAdminTokenFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  file-token-0123456789  \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(env map[string]string) func(string) string { return func(k string) string { return env[k] } }

	c, err := parseConfig([]string{"--admin-token-file", file}, getenv(nil), nil)
	if err != nil || c.AdminToken != "file-token-0123456789" {
		t.Fatalf("token file: %q, %v", c.AdminToken, err)
	}
	c, err = parseConfig(nil, getenv(map[string]string{"PINHOLE_ADMIN_TOKEN": "env-token-0123456789"}), nil)
	if err != nil || c.AdminToken != "env-token-0123456789" {
		t.Fatalf("token from env: %q, %v", c.AdminToken, err)
	}
	_, err = parseConfig([]string{"--admin-token", "flag-token-0123456789", "--admin-token-file", file}, getenv(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("both: %v", err)
	}
	if strings.Contains(err.Error(), "flag-token") {
		t.Fatalf("the error shows the token: %v", err)
	}
	_, err = parseConfig([]string{"--admin-token-file", filepath.Join(dir, "missing")}, getenv(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "--admin-token-file") {
		t.Fatalf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err = parseConfig([]string{"--admin-token-file", empty}, getenv(nil), nil); err == nil {
		t.Fatal("empty token file accepted")
	}
}

func TestLimitFlags(t *testing.T) {
	none := func(string) string { return "" }
	c, err := parseConfig(nil, none, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxSDPBytes != 65536 || c.Limits.MaxCandidates != 64 || c.Limits.MaxRooms != 100 || c.Limits.SessionRate != 5 || c.Limits.SessionBurst != 10 {
		t.Fatalf("defaults: %+v", c.Limits)
	}
	c, err = parseConfig([]string{"--max-candidates", "8", "--session-rate", "0.5", "--max-rooms", "3"}, none, nil)
	if err != nil || c.Limits.MaxCandidates != 8 || c.Limits.SessionRate != 0.5 || c.Limits.MaxRooms != 3 {
		t.Fatalf("set: %+v %v", c.Limits, err)
	}
	for _, bad := range [][]string{
		{"--max-sdp-bytes", "1000000"}, // above the cap the API enforces anyway
		{"--max-m-lines", "0"},
		{"--max-candidates", "x"},
		{"--session-rate", "-1"},
		{"--session-rate", "NaN"},
		{"--session-burst", "0"},
	} {
		if _, err := parseConfig(bad, none, nil); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming the flag", bad, err)
		}
	}
}

// Without a token pinhole says, in one line at start, that it is open.
func TestAnnounceAuth(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	announceAuth(log, Config{OpenAPI: true})
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), "pinhole is OPEN") {
		t.Fatalf("open announcement: %q", buf.String())
	}
	buf.Reset()
	announceAuth(log, Config{})
	if !strings.Contains(buf.String(), "refused to everyone") {
		t.Fatalf("no-token announcement: %q", buf.String())
	}
	buf.Reset()
	announceAuth(log, Config{AdminToken: "a-long-enough-admin-token"})
	if strings.Contains(buf.String(), "open") || strings.Contains(buf.String(), "a-long-enough-admin-token") {
		t.Fatalf("announcement with a token: %q", buf.String())
	}
}

// Server shutdown while sessions are being created: eight clients keep
// POSTing offers while the server is told to stop. run returns in time,
// no request got a 500, every leased port is bindable again, and the
// process is back to the goroutines and fds it had before the server.
func TestShutdownWhileCreatingHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	ctx0, cancel0 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel0()
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{Audio: true})
	offer, err := v.Offer(ctx0)
	if err != nil {
		t.Fatal(err)
	}
	// The offer is taken, never answered: every session stays in setup,
	// the state a shutdown is most likely to catch.
	_ = v.Close()
	time.Sleep(200 * time.Millisecond)
	base := leakcheck.Take(t)

	// More ports than are leased before the stop: some POSTs are mid-setup
	// (port leased, peer connection being built) when it comes.
	ports := freeUDPPorts(t, 16)
	cfg, err := parseConfig([]string{
		"--http-addr", "127.0.0.1:0",
		"--udp-ports", strconv.Itoa(ports[0]) + "-" + strconv.Itoa(ports[len(ports)-1]),
		"--public-ip", "127.0.0.1", "--bind-ip", "127.0.0.1",
		"--session-rate", "10000", "--session-burst", "10000",
	}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := startRun(t, cfg, slog.New(slog.DiscardHandler))

	hc := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	var (
		wg       sync.WaitGroup
		created  atomic.Int64
		statuses sync.Map // status -> *atomic.Int64
		bad      atomic.Value
	)
	giveUp := time.Now().Add(time.Minute)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				room := fmt.Sprintf("r%d", (w+i)%3)
				resp, err := hc.Post("http://"+addr+"/whep/"+room, "application/sdp", strings.NewReader(offer))
				if err != nil {
					return // the listener is gone
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n, _ := statuses.LoadOrStore(resp.StatusCode, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				switch resp.StatusCode {
				case http.StatusCreated:
					created.Add(1)
				case http.StatusServiceUnavailable:
					// Pool full or shutting down.
					time.Sleep(20 * time.Millisecond)
				default:
					bad.Store(fmt.Sprintf("POST answered %d", resp.StatusCode))
					return
				}
				if time.Now().After(giveUp) {
					return // bounded even if the listener never closed
				}
			}
		}()
	}
	for created.Load() < 6 {
		time.Sleep(time.Millisecond)
	}
	stopAt := time.Now()
	stop()
	stopped := time.Since(stopAt)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	for _, p := range cfg.UDPPorts {
		c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d still bound after shutdown: %v", p, err)
			continue
		}
		c.Close()
	}
	hc.CloseIdleConnections()
	after := leakcheck.Settle(t, base, 30*time.Second)
	var mix []string
	statuses.Range(func(k, v any) bool {
		mix = append(mix, fmt.Sprintf("%v=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("shutdown while creating over HTTP: answers %v; stopped in %s; baseline %s, after %s",
		mix, stopped.Round(time.Millisecond), base, after)
}

// Headers past 64 KiB are refused (431) before any handler runs.
func TestHugeHeadersRefused(t *testing.T) {
	cfg := testConfig(t)
	addr, _ := startRun(t, cfg, slog.New(slog.DiscardHandler))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Filler", strings.Repeat("x", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KiB of headers: %d, want 431", resp.StatusCode)
	}
	req.Header.Del("X-Filler")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("normal request after: %v %v", resp, err)
	}
}

// A switch may stand alone on the command line, as the README writes it,
// and still takes an explicit value.
func TestBareBoolFlags(t *testing.T) {
	cfg, err := parseConfig([]string{"--tls-self-signed", "--insecure-open-api", "--ice-tcp=false", "--state-dir", "/tmp/x"}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.TLSSelfSigned || !cfg.OpenAPI || cfg.ICETCP || cfg.StateDir != "/tmp/x" {
		t.Fatalf("%+v", cfg)
	}
	if _, err := parseConfig([]string{"--proxy-protocol=maybe"}, env(), io.Discard); err == nil || !strings.Contains(err.Error(), "--proxy-protocol") {
		t.Fatalf("a bad switch value: %v", err)
	}
}
