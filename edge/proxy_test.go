package edge

import (
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
)

func mustPrefixes(tb testing.TB, s string) []netip.Prefix {
	tb.Helper()
	var ps []netip.Prefix
	for _, f := range strings.Fields(s) {
		ps = append(ps, netip.MustParsePrefix(f))
	}
	return ps
}

// proxyV2 is a PROXY v2 header built by hand (not by the library under
// test): signature, version 2 + command, family + protocol, length, and the
// addresses and ports.
func proxyV2(cmd, famProto byte, src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x20|cmd, famProto)
	var body []byte
	if src.IsValid() {
		body = append(body, src.Addr().AsSlice()...)
		body = append(body, dst.Addr().AsSlice()...)
		body = binary.BigEndian.AppendUint16(body, src.Port())
		body = binary.BigEndian.AppendUint16(body, dst.Port())
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// mustProxyServer serves echoClient behind LimitConns and ProxyProtocol,
// counting the requests that reach the handler.
func mustProxyServer(tb testing.TB, cfg ProxyConfig) (net.Listener, *atomic.Int64) {
	tb.Helper()
	ln := mustListen(tb)
	pl, err := ProxyProtocol(LimitConns(ln, 64), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var hits atomic.Int64
	echo := echoClient(mustResolver(tb, "", XForwardedFor))
	mustServe(tb, pl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		echo.ServeHTTP(w, r)
	}))
	return ln, &hits
}

// mustBeClosed says the server closed c instead of answering.
func mustBeClosed(tb testing.TB, code int, body string, err error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("server answered %d %q; want the connection closed", code, body)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Fatalf("connection still open after %s: %v", testDeadline, err)
	}
}

func TestProxyProtocol(t *testing.T) {
	warmNetpoll(t)
	base := leakcheck.Take(t)
	t.Run("headers", func(t *testing.T) {
		ln, hits := mustProxyServer(t, ProxyConfig{})
		src4 := netip.MustParseAddrPort("203.0.113.7:40000")
		dst4 := netip.MustParseAddrPort("198.51.100.1:443")
		src6 := netip.MustParseAddrPort("[2001:db8:1:2::7]:40000")
		dst6 := netip.MustParseAddrPort("[2001:db8::1]:443")
		for _, tc := range []struct {
			name, header, want string
		}{
			{"v1 tcp4", "PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n", "203.0.113.7 proxy-protocol 127.0.0.1 false"},
			{"v1 tcp6", "PROXY TCP6 2001:db8:1:2::7 2001:db8::1 40000 443\r\n", "2001:db8:1:2::7 proxy-protocol 127.0.0.1 false"},
			{"v2 tcp4", string(proxyV2(0x1, 0x11, src4, dst4)), "203.0.113.7 proxy-protocol 127.0.0.1 false"},
			{"v2 tcp6", string(proxyV2(0x1, 0x21, src6, dst6)), "2001:db8:1:2::7 proxy-protocol 127.0.0.1 false"},
			// The tunnel's own machine's loopback is not ours.
			{"v1 names loopback", "PROXY TCP4 127.0.0.1 127.0.0.1 40000 443\r\n", "127.0.0.1 proxy-protocol 127.0.0.1 false"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, body, err := rawGet(mustDial(t, ln), []byte(tc.header), "")
				if err != nil || code != 200 || body != tc.want {
					t.Fatalf("got %d %q %v; want 200 %q", code, body, err, tc.want)
				}
			})
		}
		before := hits.Load()
		for _, tc := range []struct{ name, preface string }{
			{"no header", ""},
			{"garbage v1", "PROXY GARBAGE\r\n"},
			{"v1 bad address", "PROXY TCP4 203.0.113.999 198.51.100.1 1 2\r\n"},
			{"v2 bad version", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("\x00", 12)},
			{"v2 local", string(proxyV2(0x0, 0x00, netip.AddrPort{}, netip.AddrPort{}))},
			{"v1 unknown", "PROXY UNKNOWN\r\n"},
			{"binary junk", "\x16\x03\x01\x00\xff\x00\x00"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, body, err := rawGet(mustDial(t, ln), []byte(tc.preface), "")
				mustBeClosed(t, code, body, err)
			})
		}
		if n := hits.Load() - before; n != 0 {
			t.Fatalf("%d refused connections reached the handler", n)
		}
	})

	t.Run("silent upstream closed after the header timeout", func(t *testing.T) {
		ln, _ := mustProxyServer(t, ProxyConfig{HeaderTimeout: 200 * time.Millisecond})
		c := mustDial(t, ln)
		_ = c.SetReadDeadline(time.Now().Add(testDeadline))
		n, err := c.Read(make([]byte, 1))
		mustBeClosed(t, n, "", err)
	})

	t.Run("untrusted upstream", func(t *testing.T) {
		// Only 198.51.100.0/24 may send headers; the test's loopback
		// connections are an ordinary client.
		ln, hits := mustProxyServer(t, ProxyConfig{Upstreams: mustPrefixes(t, "198.51.100.0/24")})
		code, body, err := rawGet(mustDial(t, ln), nil, "")
		if want := "127.0.0.1 socket 127.0.0.1 true"; err != nil || code != 200 || body != want {
			t.Fatalf("plain request: got %d %q %v; want 200 %q", code, body, err, want)
		}
		before := hits.Load()
		code, body, err = rawGet(mustDial(t, ln), []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n"), "")
		mustBeClosed(t, code, body, err)
		if hits.Load() != before {
			t.Fatal("a forged header reached the handler")
		}
	})

	t.Run("invalid upstream prefix", func(t *testing.T) {
		if _, err := ProxyProtocol(mustListen(t), ProxyConfig{Upstreams: []netip.Prefix{{}}}); err == nil {
			t.Fatal("want an error for the zero prefix")
		}
	})
	// Every server and connection above ended with its subtest.
	leakcheck.Settle(t, base, testDeadline)
}
