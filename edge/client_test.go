package edge

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestResolve(t *testing.T) {
	const trusted = "127.0.0.0/8 10.0.0.0/8 2001:db8:ffff::/48"
	for _, tc := range []struct {
		name    string
		header  ForwardHeader
		peer    string
		xff     []string
		fwd     []string
		want    string
		wantVia Via
	}{
		{name: "untrusted peer's XFF ignored", peer: "203.0.113.9:1", xff: []string{"198.51.100.1"}, want: "203.0.113.9", wantVia: ViaUnknown},
		{name: "trusted peer, one hop", peer: "127.0.0.1:1", xff: []string{"198.51.100.1"}, want: "198.51.100.1", wantVia: ViaForwarded},
		{name: "right-most untrusted hop", peer: "127.0.0.1:1", xff: []string{"198.51.100.1, 203.0.113.5"}, want: "203.0.113.5", wantVia: ViaForwarded},
		{name: "trusted hops skipped", peer: "127.0.0.1:1", xff: []string{"198.51.100.66, 198.51.100.1, 10.1.2.3"}, want: "198.51.100.1", wantVia: ViaForwarded},
		{name: "several header lines in order", peer: "127.0.0.1:1", xff: []string{"198.51.100.66", "198.51.100.1", "10.1.2.3"}, want: "198.51.100.1", wantVia: ViaForwarded},
		{name: "all hops trusted", peer: "127.0.0.1:1", xff: []string{"10.0.0.1, 10.0.0.2"}, want: "10.0.0.1", wantVia: ViaForwarded},
		{name: "garbage hop", peer: "127.0.0.1:1", xff: []string{"198.51.100.1, bogus"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "garbage beyond a trusted hop", peer: "127.0.0.1:1", xff: []string{"bogus, 10.0.0.7"}, want: "10.0.0.7", wantVia: ViaProxyPeer},
		{name: "no header from a trusted peer", peer: "127.0.0.1:1", want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "XFF with ports and brackets", peer: "127.0.0.1:1", xff: []string{"[2001:db8::1]:443, 198.51.100.1:5000"}, want: "198.51.100.1", wantVia: ViaForwarded},
		{name: "XFF bracketed v6", peer: "[::ffff:127.0.0.1]:1", xff: []string{"[2001:db8::1]:443"}, want: "2001:db8::1", wantVia: ViaForwarded},
		{name: "mapped v4 unmapped", peer: "127.0.0.1:1", xff: []string{"::ffff:203.0.113.5"}, want: "203.0.113.5", wantVia: ViaForwarded},
		{name: "zone refused", peer: "127.0.0.1:1", xff: []string{"fe80::1%eth0"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "trusted v6 proxy", peer: "[2001:db8:ffff::1]:1", xff: []string{"2001:db8:1:2::3"}, want: "2001:db8:1:2::3", wantVia: ViaForwarded},
		{name: "Forwarded ignored by an XFF resolver", peer: "127.0.0.1:1", fwd: []string{"for=198.51.100.1"}, want: "127.0.0.1", wantVia: ViaProxyPeer},

		{name: "Forwarded RFC 7239 example", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{"for=192.0.2.60;proto=http;by=203.0.113.43"}, want: "192.0.2.60", wantVia: ViaForwarded},
		{name: "Forwarded quoted v6 with port", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`For="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17", wantVia: ViaForwarded},
		{name: "Forwarded quoted v4 with port", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`for="192.0.2.43:47011"`}, want: "192.0.2.43", wantVia: ViaForwarded},
		{name: "Forwarded obfuscated port", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`for="[2001:db8::9]:_p1"`}, want: "2001:db8::9", wantVia: ViaForwarded},
		{name: "Forwarded right-most untrusted", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`for=192.0.2.43, for="[2001:db8:cafe::17]";proto=https, for=10.9.9.9`}, want: "2001:db8:cafe::17", wantVia: ViaForwarded},
		{name: "Forwarded several lines", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{"for=192.0.2.43", "for=198.51.100.17;by=10.0.0.1"}, want: "198.51.100.17", wantVia: ViaForwarded},
		{name: "Forwarded escaped quote", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`for=192.0.2.1;x="a\"b,c", for=198.51.100.2`}, want: "198.51.100.2", wantVia: ViaForwarded},
		{name: "Forwarded unknown", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{"for=192.0.2.43, for=unknown"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "Forwarded obfuscated", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`for=192.0.2.43, for="_hidden"`}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "Forwarded element without for", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{"for=192.0.2.43, proto=https"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "Forwarded unterminated quote", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{`for="192.0.2.43`}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "Forwarded unquoted v6 is malformed", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{"for=[2001:db8::1]"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "Forwarded malformed line only spoils itself", header: Forwarded, peer: "127.0.0.1:1", fwd: []string{"for=198.51.100.3", "for=10.0.0.1;;by"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "XFF ignored by a Forwarded resolver", header: Forwarded, peer: "127.0.0.1:1", xff: []string{"198.51.100.1"}, want: "127.0.0.1", wantVia: ViaProxyPeer},
		{name: "Forwarded from an untrusted peer", header: Forwarded, peer: "198.51.100.200:1", fwd: []string{"for=192.0.2.1"}, want: "198.51.100.200", wantVia: ViaUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustResolver(t, trusted, tc.header)
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tc.fwd {
				r.Header.Add("Forwarded", v)
			}
			c := res.Resolve(r)
			if c.Addr.String() != tc.want || c.Via != tc.wantVia {
				t.Fatalf("got %s via %s, want %s via %s", c.Addr, c.Via, tc.want, tc.wantVia)
			}
		})
	}
}

// TestResolverOverTCP runs the resolver behind a real server: the socket
// peer is found through ConnContext, and only a trusted peer's
// X-Forwarded-For is taken.
func TestResolverOverTCP(t *testing.T) {
	for _, tc := range []struct{ name, trusted, want string }{
		{"untrusted", "10.0.0.0/8", "127.0.0.1 socket 127.0.0.1 true"},
		{"trusted", "127.0.0.1/32", "203.0.113.5 forwarded 127.0.0.1 false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := mustListen(t)
			mustServe(t, ln, echoClient(mustResolver(t, tc.trusted, XForwardedFor)))
			code, body, err := rawGet(mustDial(t, ln), nil, "X-Forwarded-For: 198.51.100.1, 203.0.113.5\r\n")
			if err != nil || code != 200 || body != tc.want {
				t.Fatalf("got %d %q %v; want %q", code, body, err, tc.want)
			}
		})
	}
}

func TestClientWithoutMiddleware(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:5"
	if c := ClientOf(r); c.Via != ViaUnknown || c.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("got %+v", c)
	}
	// Without knowing the path, loopback is not believed.
	if ClientIsLoopback(r) {
		t.Fatal("ClientIsLoopback without the resolver")
	}
	if ClientAddr(r).String() != "127.0.0.1" {
		t.Fatal("ClientAddr")
	}
	if _, err := NewResolver([]netip.Prefix{{}}, XForwardedFor); err == nil {
		t.Fatal("want an error for the zero prefix")
	}
	if _, err := NewResolver(nil, ForwardHeader(7)); err == nil {
		t.Fatal("want an error for an unknown header")
	}
}

func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":               "203.0.113.7",
		"::ffff:203.0.113.7":        "203.0.113.7",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":      "2001:db8:1:2::/64",
		"2001:db8:1:3::1":           "2001:db8:1:3::/64",
		"fe80::1%eth0":              "fe80::/64",
		"::1":                       "::/64",
		"2001:db8:aaaa:bbbb:cccc::": "2001:db8:aaaa:bbbb::/64",
	} {
		if got := LimitKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("LimitKey(%s) = %q, want %q", in, got, want)
		}
	}
	if got := LimitKey(netip.Addr{}); got != "" {
		t.Errorf("LimitKey(zero) = %q", got)
	}
}
