package edge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAllowHosts(t *testing.T) {
	mw, err := AllowHosts([]string{"Media.Example.org", "203.0.113.5", "api.example.org:8443", "[2001:db8::5]:443", "2001:db8::6"}, "--allowed-hosts")
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for host, want := range map[string]int{
		"media.example.org":       200,
		"MEDIA.example.org.:8080": 200,
		"203.0.113.5":             200,
		"203.0.113.5:8080":        200,
		"api.example.org:8443":    200,
		"api.example.org":         421,
		"api.example.org:443":     421,
		"[2001:db8::5]:443":       200,
		"[2001:db8::5]:80":        421,
		"[2001:db8::6]:80":        200,
		"localhost:8080":          200,
		"127.0.0.1":               200,
		"[::1]:8080":              200,
		"attacker.example":        421,
		"attacker.example:8080":   421,
		"":                        421,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
		if want == 421 && !strings.Contains(w.Body.String(), "--allowed-hosts") {
			t.Errorf("Host %q: refusal %q does not name the flag", host, w.Body.String())
		}
	}

	// No list, no check.
	off, err := AllowHosts(nil, "--allowed-hosts")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "attacker.example"
	w := httptest.NewRecorder()
	off(http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Code != 404 {
		t.Fatalf("check off: %d", w.Code)
	}
	if _, err := AllowHosts([]string{"http://x/"}, "--allowed-hosts"); err == nil {
		t.Fatal("a URL was taken as a host")
	}
}
