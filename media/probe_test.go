package media

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/test"
	"github.com/pion/turn/v5"
)

const testRealm = "pinhole.test"

// loopbackOK is the probe policy of tests whose servers run on loopback,
// which the default policy refuses.
var loopbackOK = &AddrPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

// turnConfig is the pion/turn server configuration the probe tests share:
// the test realm, the given users (name -> password) and a relay on
// loopback. quota, when false, refuses every allocation with 486.
func turnConfig(users map[string]string, quota bool) turn.ServerConfig {
	return turn.ServerConfig{
		Realm:         testRealm,
		LoggerFactory: quietLoggers(),
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			pw, ok := users[ra.Username]
			if !ok {
				return "", nil, false
			}
			return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, pw), true
		},
		QuotaHandler: func(string, string, net.Addr) bool { return quota },
	}
}

func loopbackRelay() *turn.RelayAddressGeneratorStatic {
	return &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}
}

// serveTURN starts a server from cfg and closes it at the end of the test.
func serveTURN(t *testing.T, cfg turn.ServerConfig) {
	t.Helper()
	srv, err := turn.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
}

// startTURN runs a real pion/turn server on loopback UDP; it also answers
// STUN binding requests.
func startTURN(t *testing.T, users map[string]string, quota bool) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := turnConfig(users, quota)
	cfg.PacketConnConfigs = []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: loopbackRelay()}}
	serveTURN(t, cfg)
	return pc.LocalAddr().String()
}

// startTURNTCP runs a pion/turn server listening on loopback TCP (the
// transport clients fall back to when UDP is blocked).
func startTURNTCP(t *testing.T, users map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := turnConfig(users, true)
	cfg.ListenerConfigs = []turn.ListenerConfig{{Listener: ln, RelayAddressGenerator: loopbackRelay()}}
	serveTURN(t, cfg)
	return ln.Addr().String()
}

// closedUDPPort returns a loopback port nobody listens on: bound, then closed.
func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	return addr
}

// loopbackResponder answers every datagram to a loopback UDP socket with
// answer(request) (nothing when it returns nil), until the test ends, and
// returns the socket's address: the stand-in servers of these tests.
func loopbackResponder(t *testing.T, answer func(req []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if res := answer(append([]byte(nil), buf[:n]...)); res != nil {
				_, _ = pc.WriteTo(res, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// resolverAt is a resolver whose only DNS server is addr.
func resolverAt(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", addr)
	}}
}

// nxResolver is a resolver whose only DNS server is a loopback responder
// answering NXDOMAIN to everything, so DNS failures are tested without a
// packet leaving the machine.
func nxResolver(t *testing.T) *net.Resolver {
	t.Helper()
	return resolverAt(loopbackResponder(t, func(ans []byte) []byte {
		if len(ans) < 12 {
			return nil
		}
		binary.BigEndian.PutUint16(ans[2:], 0x8183) // response, RD, RA, NXDOMAIN
		binary.BigEndian.PutUint16(ans[6:], 0)      // no answers
		binary.BigEndian.PutUint16(ans[8:], 0)
		binary.BigEndian.PutUint16(ans[10:], 0) // and no EDNS record echoed
		return trimToQuestion(ans)
	}))
}

// trimToQuestion cuts a DNS message after its first question.
func trimToQuestion(m []byte) []byte {
	i := 12
	for i < len(m) && m[i] != 0 {
		i += int(m[i]) + 1
	}
	if i+5 > len(m) {
		return m
	}
	binary.BigEndian.PutUint16(m[4:], 1)
	return m[:i+5]
}

// start401 runs a loopback STUN responder that behaves like coturn refusing
// credentials: 401 with realm and nonce to every Allocate, the authenticated
// retry included.
func start401(t *testing.T) string {
	t.Helper()
	return loopbackResponder(t, func(raw []byte) []byte {
		req := &stun.Message{Raw: raw}
		if req.Decode() != nil {
			return nil
		}
		res, err := stun.Build(
			stun.NewTransactionIDSetter(req.TransactionID),
			stun.NewType(req.Type.Method, stun.ClassErrorResponse),
			stun.CodeUnauthorized, stun.NewRealm(testRealm), stun.NewNonce("0123456789abcdef"),
			stun.Fingerprint,
		)
		if err != nil {
			return nil
		}
		return res.Raw
	})
}

func TestProbeSTUN(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t)) // registered first, so it runs after the servers close
	srv := startTURN(t, map[string]string{"alice": "secret"}, true)

	t.Run("reachable", func(t *testing.T) {
		r := RunSTUNProbe(context.Background(), STUNProbe{URL: "stun:" + srv, Policy: loopbackOK})
		if !r.Reachable || r.Class != ProbeOK {
			t.Fatalf("want reachable, got %+v", r)
		}
		if !strings.HasPrefix(r.MappedAddr, "127.0.0.1:") || r.RTTMillis <= 0 {
			t.Fatalf("mapped %q rtt %v", r.MappedAddr, r.RTTMillis)
		}
		if _, port, _ := net.SplitHostPort(r.LocalAddr); !strings.HasSuffix(r.MappedAddr, ":"+port) {
			t.Fatalf("mapped %s is not local %s", r.MappedAddr, r.LocalAddr)
		}
	})
	t.Run("closed port times out within the timeout", func(t *testing.T) {
		const timeout = 1500 * time.Millisecond
		start := time.Now()
		r := RunSTUNProbe(context.Background(), STUNProbe{URL: "stun:" + closedUDPPort(t), Timeout: timeout, Policy: loopbackOK})
		if r.Reachable || r.Class != ProbeTimeout || r.Fix == "" {
			t.Fatalf("want timeout, got %+v", r)
		}
		// Generous: the probe must stop at its own timeout, not at some
		// retransmission schedule far beyond it.
		if el := time.Since(start); el > timeout+3*time.Second {
			t.Fatalf("took %s for a %s timeout", el, timeout)
		}
	})
	t.Run("dns", func(t *testing.T) {
		r := RunSTUNProbe(context.Background(), STUNProbe{URL: "stun:stun.pinhole.invalid:3478", Timeout: 3 * time.Second, Resolver: nxResolver(t)})
		if r.Class != ProbeDNS || r.Fix == "" {
			t.Fatalf("want dns, got %+v", r)
		}
	})
	t.Run("bad url", func(t *testing.T) {
		for _, u := range []string{"", "http://example.org", "stun:", "stuns:127.0.0.1:5349"} {
			if r := ProbeSTUN(context.Background(), u, time.Second); r.Class != ProbeBadURL {
				t.Errorf("%q: want bad-url, got %+v", u, r)
			}
		}
	})
}

func TestProbeTURN(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t)) // registered first, so it runs after the servers close
	srv := startTURN(t, map[string]string{"alice": "secret"}, true)
	full := startTURN(t, map[string]string{"alice": "secret"}, false)
	coturnLike := start401(t)
	overTCP := startTURNTCP(t, map[string]string{"alice": "secret"})
	nx := nxResolver(t)

	cases := []struct {
		name      string
		probe     TURNProbe
		class     ProbeClass
		code      int
		allocated bool
	}{
		{"good credentials", TURNProbe{URL: "turn:" + srv + "?transport=udp", Username: "alice", Credential: "secret"}, ProbeOK, 0, true},
		{"tcp transport", TURNProbe{URL: "turn:" + overTCP + "?transport=tcp", Username: "alice", Credential: "secret"}, ProbeOK, 0, true},
		{"tcp transport, wrong password", TURNProbe{URL: "turn:" + overTCP + "?transport=tcp", Username: "alice", Credential: "nope"}, ProbeAuthRefused, 401, false},
		{"tcp transport, closed port", TURNProbe{URL: "turn:" + closedUDPPort(t) + "?transport=tcp", Username: "alice", Credential: "secret"}, ProbeUnreachable, 0, false},
		{"wrong password", TURNProbe{URL: "turn:" + srv, Username: "alice", Credential: "wrong"}, ProbeAuthRefused, 401, false},
		{"unknown user", TURNProbe{URL: "turn:" + srv, Username: "mallory", Credential: "secret"}, ProbeAuthRefused, 401, false},
		{"coturn-style 401 on the retry", TURNProbe{URL: "turn:" + coturnLike, Username: "alice", Credential: "wrong"}, ProbeAuthRefused, 401, false},
		{"quota", TURNProbe{URL: "turn:" + full, Username: "alice", Credential: "secret"}, ProbeQuota, 486, false},
		{"closed port", TURNProbe{URL: "turn:" + closedUDPPort(t), Username: "alice", Credential: "secret", Timeout: 1500 * time.Millisecond}, ProbeTimeout, 0, false},
		{"dns", TURNProbe{URL: "turn:turn.pinhole.invalid:3478", Username: "alice", Credential: "secret", Resolver: nx}, ProbeDNS, 0, false},
		{"no username", TURNProbe{URL: "turn:" + srv}, ProbeBadURL, 0, false},
		{"stun url", TURNProbe{URL: "stun:" + srv, Username: "alice", Credential: "secret"}, ProbeBadURL, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			timeout := tc.probe.Timeout
			if timeout == 0 {
				timeout = DefaultTURNTimeout
			}
			start := time.Now()
			if tc.probe.Policy == nil {
				tc.probe.Policy = loopbackOK
			}
			r := ProbeTURN(context.Background(), tc.probe)
			if r.Class != tc.class || r.ErrorCode != tc.code || r.Allocated != tc.allocated {
				t.Fatalf("want class %s code %d allocated %v, got %+v", tc.class, tc.code, tc.allocated, r)
			}
			if tc.allocated && !strings.HasPrefix(r.RelayedAddr, "127.0.0.1:") {
				t.Fatalf("relayed address %q", r.RelayedAddr)
			}
			if tc.allocated && !strings.HasPrefix(r.MappedAddr, "127.0.0.1:") {
				t.Fatalf("mapped address %q", r.MappedAddr)
			}
			if !tc.allocated && tc.class != ProbeBadURL && r.Fix == "" {
				t.Fatalf("no fix for %s: %+v", tc.class, r)
			}
			if el := time.Since(start); el > timeout+3*time.Second {
				t.Fatalf("took %s for a %s timeout", el, timeout)
			}
		})
	}
	t.Run("allocation is released", func(t *testing.T) {
		// Ten probes in a row: each frees its allocation and socket, so
		// none is left behind (CheckRoutines above checks goroutines).
		for i := range 10 {
			r := ProbeTURN(context.Background(), TURNProbe{URL: "turn:" + srv, Username: "alice", Credential: "secret", Policy: loopbackOK})
			if !r.Allocated {
				t.Fatalf("probe %d: %+v", i, r)
			}
		}
	})
	t.Run("context cancel stops the probe", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		r := ProbeTURN(ctx, TURNProbe{URL: "turn:" + closedUDPPort(t), Username: "a", Credential: "b", Policy: loopbackOK})
		if r.Class != ProbeTimeout {
			t.Fatalf("want timeout, got %+v", r)
		}
	})
}
