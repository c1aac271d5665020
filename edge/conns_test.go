package edge

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
)

func TestLimitConns(t *testing.T) {
	warmNetpoll(t)
	base := leakcheck.Take(t)
	t.Run("cap", func(t *testing.T) {
		ln := mustListen(t)
		capped := LimitConns(ln, 2)
		mustServe(t, capped, echoClient(mustResolver(t, "", XForwardedFor)))

		// Two kept-alive connections take both slots.
		first, second := mustDial(t, ln), mustDial(t, ln)
		if _, _, err := rawGet(first, nil, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := rawGet(second, nil, ""); err != nil {
			t.Fatal(err)
		}
		// A third is closed at once, not left waiting.
		// On loopback the reset can even beat the dialer's connect.
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), testDeadline); err == nil {
			defer c.Close()
			code, body, err := rawGet(c, nil, "")
			mustBeClosed(t, code, body, err)
		}
		waitFor(t, "the refusal to be counted", func() bool { return capped.Refused() == 1 })
		if capped.Refused() != 1 || capped.Active() != 2 {
			t.Fatalf("refused %d, active %d; want 1 and 2", capped.Refused(), capped.Active())
		}
		// Closing one frees its slot, once.
		first.Close()
		waitFor(t, "the slot to be given back", func() bool { return capped.Active() == 1 })
		if code, _, err := rawGet(mustDial(t, ln), nil, ""); err != nil || code != 200 {
			t.Fatalf("after a slot freed: %d %v", code, err)
		}
		if capped.Active() > 2 {
			t.Fatalf("active %d over the cap", capped.Active())
		}
	})
	leakcheck.Settle(t, base, testDeadline)
}

func TestApplyTimeouts(t *testing.T) {
	var srv http.Server
	ApplyTimeouts(&srv)
	if srv.ReadHeaderTimeout != ReadHeaderTimeout || srv.ReadTimeout != ReadTimeout ||
		srv.WriteTimeout != WriteTimeout || srv.IdleTimeout != IdleTimeout || srv.MaxHeaderBytes != MaxHeaderBytes {
		t.Fatalf("got %v %v %v %v %v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

// TestKeepStreaming streams events for several times the server's read
// and write timeouts: the stream survives because each event moves the
// deadlines, and the request's context stays alive throughout.
func TestKeepStreaming(t *testing.T) {
	const (
		timeout = 200 * time.Millisecond
		events  = 8
		gap     = 100 * time.Millisecond // events*gap is 4x the timeout
	)
	ln := mustListen(t)
	srv := &http.Server{
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		ErrorLog:     log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range events {
				if err := KeepStreaming(w, testDeadline); err != nil {
					t.Errorf("KeepStreaming: %v", err)
					return
				}
				select {
				case <-r.Context().Done():
					t.Errorf("request context ended after %d events: %v", i, r.Context().Err())
					return
				case <-time.After(gap):
				}
				fmt.Fprintf(w, "data: %d\n\n", i)
				http.NewResponseController(w).Flush()
			}
		}),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	resp, err := (&http.Client{Timeout: testDeadline}).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			n++
		}
	}
	if n != events {
		t.Fatalf("got %d events, want %d (%v)", n, events, sc.Err())
	}
}
