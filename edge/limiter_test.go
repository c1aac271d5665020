package edge

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)

	t.Run("per key, refusal says when", func(t *testing.T) {
		l := NewLimiter(1, 2, 100) // 1/s, burst 2
		for i := range 2 {
			if ok, _ := l.allowAt("a", t0); !ok {
				t.Fatalf("request %d refused within the burst", i)
			}
		}
		ok, wait := l.allowAt("a", t0)
		if ok || wait != time.Second {
			t.Fatalf("third request: ok=%v retry after %s, want refused for 1s", ok, wait)
		}
		if ok, _ := l.allowAt("b", t0); !ok {
			t.Fatal("another key was refused")
		}
		if ok, wait := l.allowAt("a", t0.Add(600*time.Millisecond)); ok || wait != 400*time.Millisecond {
			t.Fatalf("after 600ms: ok=%v retry after %s, want 400ms", ok, wait)
		}
	})

	t.Run("refusal consumes nothing", func(t *testing.T) {
		l := NewLimiter(1, 1, 100)
		l.allowAt("a", t0)
		for range 100 {
			if ok, _ := l.allowAt("a", t0.Add(500*time.Millisecond)); ok {
				t.Fatal("allowed with an empty bucket")
			}
		}
		// Had the refusals taken tokens, the bucket would be deep in debt.
		if ok, wait := l.allowAt("a", t0.Add(time.Second)); !ok {
			t.Fatalf("refused after the token came back (retry after %s)", wait)
		}
	})

	t.Run("LRU bounded", func(t *testing.T) {
		l := NewLimiter(0.001, 1, 2)
		l.allowAt("a", t0)
		l.allowAt("b", t0)
		// Touching a (even refused) makes b the least recently used.
		if ok, _ := l.allowAt("a", t0); ok {
			t.Fatal("a allowed twice")
		}
		l.allowAt("c", t0)
		if l.Len() != 2 {
			t.Fatalf("%d keys held, want 2", l.Len())
		}
		if ok, _ := l.allowAt("a", t0); ok {
			t.Fatal("a, recently used, lost its state")
		}
		// b was dropped and starts again with a full bucket.
		if ok, _ := l.allowAt("b", t0); !ok {
			t.Fatal("b was not evicted")
		}
		for i := range 1000 {
			l.allowAt(strconv.Itoa(i), t0)
		}
		if l.Len() != 2 {
			t.Fatalf("%d keys held after a flood, want 2", l.Len())
		}
	})

	t.Run("Retry-After", func(t *testing.T) {
		for d, want := range map[time.Duration]string{
			0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 90 * time.Second: "90",
		} {
			if got := RetryAfter(d); got != want {
				t.Errorf("RetryAfter(%s) = %s, want %s", d, got, want)
			}
		}
	})

	t.Run("over HTTP, keyed by client", func(t *testing.T) {
		l := NewLimiter(0.001, 2, 100)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ok, wait := l.Allow(LimitKey(ClientAddr(r))); !ok {
				SetRetryAfter(w, wait)
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			fmt.Fprint(w, ClientAddr(r))
		})
		ln := mustListen(t)
		mustServe(t, ln, mustResolver(t, "127.0.0.1/32", XForwardedFor).Middleware(h))
		get := func(xff string) *http.Response {
			t.Helper()
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
			req.Header.Set("X-Forwarded-For", xff)
			resp, err := (&http.Client{Timeout: testDeadline}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		// Two addresses of one /64 share a limit; another /64 has its own.
		for i, xff := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff"} {
			if resp := get(xff); resp.StatusCode != 200 {
				t.Fatalf("request %d: %s", i, resp.Status)
			}
		}
		resp := get("2001:db8:1:2::42")
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third request from the /64: %s", resp.Status)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
		if resp := get("2001:db8:1:3::1"); resp.StatusCode != 200 {
			t.Fatalf("another /64: %s", resp.Status)
		}
	})
}
