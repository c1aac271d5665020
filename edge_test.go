package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// whipVia POSTs the canned OBS offer over a connection of its own that
// starts with header (a PROXY protocol line, or nothing) and returns the
// status, or 0 when pinhole closed the connection without an answer.
func whipVia(t *testing.T, addr, header string, offer []byte) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "%sPOST /whip/proxied HTTP/1.1\r\nHost: %s\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		header, addr, len(offer), offer)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Behind FRP with the PROXY protocol on, the session limiter keys on each
// client's real address, not on frpc's 127.0.0.1: one client exhausting
// its rate leaves another served.
func TestProxyProtocolLimitsPerClient(t *testing.T) {
	cfg := testConfig(t)
	cfg.ProxyProtocol = true
	cfg.Limits.SessionRate, cfg.Limits.SessionBurst = 0.01, 1
	addr, _ := startRun(t, cfg, slog.New(slog.DiscardHandler))
	offer, err := os.ReadFile("handlers/testdata/offers/obs-whip.sdp")
	if err != nil {
		t.Fatal(err)
	}
	from := func(ip string) string { return fmt.Sprintf("PROXY TCP4 %s 127.0.0.1 40000 8080\r\n", ip) }
	if got := whipVia(t, addr, from("203.0.113.10"), offer); got != http.StatusCreated {
		t.Fatalf("first session of 203.0.113.10: %d", got)
	}
	if got := whipVia(t, addr, from("203.0.113.10"), offer); got != http.StatusTooManyRequests {
		t.Fatalf("second session of 203.0.113.10 at once: %d, want 429", got)
	}
	if got := whipVia(t, addr, from("203.0.113.11"), offer); got != http.StatusCreated {
		t.Fatalf("203.0.113.11 after 203.0.113.10 was limited: %d", got)
	}
	// frpc must announce its clients: a connection from the upstream
	// without a header is not served as if it were one.
	if got := whipVia(t, addr, "", offer); got != 0 {
		t.Fatalf("a connection without the PROXY header was answered: %d", got)
	}
}

// With no token configured, pinhole makes one, keeps it readable by its
// user only, and finds it again at the next start.
func TestAdminTokenMadeAndKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var cfg Config
	file, err := ensureAdminToken(&cfg, dir)
	if err != nil || cfg.AdminToken == "" || len(cfg.AdminToken) < 24 {
		t.Fatalf("token %q in %q: %v", cfg.AdminToken, file, err)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v: %v", st.Mode(), err)
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", d.Mode())
	}
	again := Config{}
	if _, err := ensureAdminToken(&again, dir); err != nil || again.AdminToken != cfg.AdminToken {
		t.Fatalf("second start: %q vs %q (%v)", again.AdminToken, cfg.AdminToken, err)
	}
	for _, c := range []Config{{AdminToken: "given-token-0123456789"}, {OpenAPI: true}} {
		other := filepath.Join(t.TempDir(), "other")
		if f, err := ensureAdminToken(&c, other); err != nil || f != "" {
			t.Fatalf("%+v: made a token file %q (%v)", c, f, err)
		}
		if _, err := os.Stat(other); err == nil {
			t.Fatalf("%+v: created %s", c, other)
		}
	}
	if strings.Contains(file, "..") {
		t.Fatal(file)
	}
}
