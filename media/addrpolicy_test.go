package media

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/transport/v5/test"
)

// udpCounter is a loopback UDP listener counting the datagrams it gets.
type udpCounter struct {
	pc       net.PacketConn
	n        atomic.Int64
	sentinel chan struct{}
}

const sentinelMsg = "pinhole-test-sentinel"

func startUDPCounter(t *testing.T) *udpCounter {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &udpCounter{pc: pc, sentinel: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == sentinelMsg {
				c.sentinel <- struct{}{}
				continue
			}
			c.n.Add(1)
		}
	}()
	return c
}

func (c *udpCounter) addr() netip.AddrPort { return c.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

// settled returns the count once a sentinel sent now has been read: on
// loopback, whatever was sent before it has been read before it.
func (c *udpCounter) settled(t *testing.T) int64 {
	t.Helper()
	s, err := net.Dial("udp4", c.addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte(sentinelMsg)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.sentinel:
	case <-time.After(10 * time.Second):
		t.Fatal("sentinel datagram never arrived")
	}
	return c.n.Load()
}

// tcpCounter is a loopback TCP listener counting accepted connections; it
// answers each with a line that is not TLS, then closes it.
func tcpCounter(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_, _ = c.Write([]byte("HTTP/1.0 400 internal-service.corp.example\r\n\r\n"))
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// fixedResolver is a resolver whose only DNS server is a loopback
// responder answering every A query with ip (and AAAA with nothing): a
// name that resolves to whatever the test wants, without DNS traffic
// leaving the machine.
func fixedResolver(t *testing.T, ip netip.Addr) *net.Resolver {
	t.Helper()
	return resolverAt(loopbackResponder(t, func(req []byte) []byte {
		if len(req) < 12 {
			return nil
		}
		ans := trimToQuestion(req)
		binary.BigEndian.PutUint16(ans[2:], 0x8180) // response, RD, RA, NOERROR
		binary.BigEndian.PutUint16(ans[8:], 0)
		binary.BigEndian.PutUint16(ans[10:], 0)
		qtype := binary.BigEndian.Uint16(ans[len(ans)-4:])
		if qtype == 1 { // A
			binary.BigEndian.PutUint16(ans[6:], 1)
			a4 := ip.As4()
			ans = append(ans, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			ans = append(ans, a4[:]...)
		} else {
			binary.BigEndian.PutUint16(ans[6:], 0)
		}
		return ans
	}))
}

// hostIPv4s are this host's own non-loopback IPv4 addresses.
func hostIPv4s(t *testing.T) []netip.Addr {
	t.Helper()
	all, err := interfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range all {
		if a.Is4() && !a.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}

// loopbackOnly guards a test policy's sockets: whatever the policy says,
// nothing is sent beyond loopback.
func loopbackOnly(t *testing.T, p *AddrPolicy) *AddrPolicy {
	p.sendGuard = func(ap netip.AddrPort) error {
		if !ap.Addr().Unmap().IsLoopback() {
			t.Errorf("a probe was about to send to %s", ap)
			return &RefusedError{Addr: ap, Range: "test guard"}
		}
		return nil
	}
	return p
}

// assertRefused checks a refused probe's answer: the class, a fix naming
// --probe-allow, no socket opened, and neither the address nor the
// underlying error in what the client sees.
func assertRefused(t *testing.T, name string, class ProbeClass, server, local, errText, fix string, cause error, answer any) {
	t.Helper()
	if class != ProbeRefused || !strings.Contains(fix, "--probe-allow") {
		t.Errorf("%s: want refused-destination with a --probe-allow fix, got class %q fix %q (cause %v)", name, class, fix, cause)
		return
	}
	if server != "" || local != "" {
		t.Errorf("%s: a refused probe opened a socket or names the resolved server: server %q local %q", name, server, local)
	}
	if !errors.Is(cause, ErrRefusedDestination) {
		t.Errorf("%s: cause %v", name, cause)
	}
	js, _ := json.Marshal(answer)
	if strings.Contains(string(js), cause.Error()) || strings.Contains(errText, "refused:") {
		t.Errorf("%s: the answer carries the raw error: %s", name, js)
	}
}

// Probes to loopback, private, link-local, metadata, shared and this
// host's addresses are refused before any packet is sent; an Allow prefix
// opens them.
func TestProbePolicyRefuses(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	udp := startUDPCounter(t)
	tcpAddr, accepts := tcpCounter(t)
	loopName := "loopback.pinhole.test:" + strconv.Itoa(int(udp.addr().Port()))
	toLoop := fixedResolver(t, netip.MustParseAddr("127.0.0.1"))
	ctx := context.Background()

	// Sent to if the policy failed: loopback only, counted.
	stunURLs := []string{"stun:" + udp.addr().String(), "stun:" + loopName}
	turnURLs := []string{"turn:" + udp.addr().String(), "turn:" + tcpAddr + "?transport=tcp", "turns:" + tcpAddr}
	// Never sent to: the refusal comes before a socket is opened (the
	// assertion checks that no local address was used).
	others := []string{"10.1.2.3:3478", "192.168.7.7:3478", "172.16.0.1:3478", "169.254.169.254:80", "[fd00:ec2::254]:80",
		"100.100.100.200:80", "100.64.1.1:3478", "0.0.0.0:3478", "224.0.0.1:3478", "255.255.255.255:3478",
		"[::1]:3478", "[fe80::1]:3478", "[::ffff:127.0.0.1]:3478", "[64:ff9b::7f00:1]:3478", "203.0.113.7:3478"}
	for _, a := range hostIPv4s(t) {
		others = append(others, net.JoinHostPort(a.String(), "3478"))
	}
	for _, o := range others {
		stunURLs = append(stunURLs, "stun:"+o)
	}
	policy := loopbackOnly(t, &AddrPolicy{HostAddrs: []netip.Addr{netip.MustParseAddr("203.0.113.7")}})
	for _, u := range stunURLs {
		r := RunSTUNProbe(ctx, STUNProbe{URL: u, Timeout: 2 * time.Second, Resolver: toLoop, Policy: policy})
		assertRefused(t, u, r.Class, r.Server, r.LocalAddr, r.Error, r.Fix, r.Cause, r)
	}
	// The convenience entry point uses the default policy.
	r := ProbeSTUN(ctx, "stun:"+udp.addr().String(), time.Second)
	assertRefused(t, "ProbeSTUN", r.Class, r.Server, r.LocalAddr, r.Error, r.Fix, r.Cause, r)
	for _, u := range turnURLs {
		r := ProbeTURN(ctx, TURNProbe{URL: u, Username: "a", Credential: "b", Timeout: 2 * time.Second, Resolver: toLoop, Policy: policy})
		assertRefused(t, u, r.Class, r.Server, "", r.Error, r.Fix, r.Cause, r)
	}
	if n := udp.settled(t); n != 0 {
		t.Fatalf("%d datagrams reached the loopback listener", n)
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("%d connections reached the loopback TCP listener", n)
	}

	// Allowed by a prefix: the packet is sent (nothing answers: timeout),
	// and the TCP connect happens.
	r = RunSTUNProbe(ctx, STUNProbe{URL: "stun:" + loopName, Timeout: 1200 * time.Millisecond, Resolver: toLoop, Policy: loopbackOK})
	if r.Class != ProbeTimeout {
		t.Fatalf("allowed loopback probe: %+v", r)
	}
	if n := udp.settled(t); n < 1 {
		t.Fatal("the allowed probe sent nothing")
	}
	tr := ProbeTURN(ctx, TURNProbe{URL: "turn:" + tcpAddr + "?transport=tcp", Username: "a", Credential: "b", Timeout: 2 * time.Second, Policy: loopbackOK})
	if tr.Class == ProbeRefused || accepts.Load() < 1 {
		t.Fatalf("allowed TCP probe did not connect: %+v", tr)
	}
}

// The check is made on the address actually sent to or connected to, so a
// name resolving to loopback at dial time (DNS rebinding) is refused.
func TestProbePolicyAtDialTime(t *testing.T) {
	udp := startUDPCounter(t)
	tcpAddr, accepts := tcpCounter(t)
	var p *AddrPolicy // the default policy

	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	guarded := p.PacketConn(raw)
	if _, err := guarded.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(udp.addr())); !errors.Is(err, ErrRefusedDestination) {
		t.Fatalf("WriteTo loopback: %v", err)
	}
	_, port, _ := net.SplitHostPort(tcpAddr)
	d := p.Dialer()
	d.Resolver = fixedResolver(t, netip.MustParseAddr("127.0.0.1"))
	if c, err := d.DialContext(context.Background(), "tcp4", "rebound.pinhole.test:"+port); !errors.Is(err, ErrRefusedDestination) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial of a name resolving to loopback: %v", err)
	}
	if n := udp.settled(t); n != 0 || accepts.Load() != 0 {
		t.Fatalf("%d datagrams, %d connections got through", n, accepts.Load())
	}

	allowed := loopbackOK.PacketConn(raw)
	if _, err := allowed.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(udp.addr())); err != nil {
		t.Fatal(err)
	}
	if n := udp.settled(t); n != 1 {
		t.Fatalf("allowed datagram: count %d", n)
	}
}

// The policy's rules, checked without sending anything.
func TestAddrPolicyRules(t *testing.T) {
	p := func(s ...string) *AddrPolicy {
		var pre []netip.Prefix
		for _, x := range s {
			pre = append(pre, netip.MustParsePrefix(x))
		}
		return &AddrPolicy{Allow: pre, interfaceAddrs: func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("198.51.100.20")}, nil
		}}
	}
	cases := []struct {
		policy *AddrPolicy
		addr   string
		ok     bool
	}{
		{nil, "192.0.2.1:3478", true},
		{nil, "[2001:db8::1]:3478", true},
		{p(), "198.51.100.20:3478", false}, // this host
		{p(), "198.51.100.21:3478", true},
		{p(), "127.0.0.1:3478", false},
		{p("127.0.0.0/8"), "127.0.0.1:3478", true},
		{p("::ffff:127.0.0.0/104"), "127.0.0.1:3478", true},
		{p("10.0.0.0/8"), "10.9.9.9:3478", true},
		{p("10.0.0.0/8"), "192.168.0.1:3478", false},
		{p("169.254.0.0/16"), "169.254.10.10:3478", true},
		{p("169.254.0.0/16"), "169.254.169.254:80", false}, // metadata needs its own /32
		{p("169.254.169.254/32"), "169.254.169.254:80", true},
		{p("100.64.0.0/10"), "100.100.100.200:80", false},
		{p("fc00::/7"), "[fd00:ec2::254]:80", false},
		{p(), "[64:ff9b::a9fe:a9fe]:80", false}, // NAT64 of the metadata address
		{p(), "[64:ff9b::c000:201]:3478", true},
	}
	for _, c := range cases {
		err := c.policy.Check(netip.MustParseAddrPort(c.addr))
		if (err == nil) != c.ok {
			t.Errorf("%v allow %v: %s -> %v", c.policy != nil, c.policy, c.addr, err)
		}
	}
	if (&AddrPolicy{AlwaysAllowHosts: []string{"TURN.example.org:3478"}}).For("turn.example.org", 3478).Check(netip.MustParseAddrPort("10.0.0.1:3478")) != nil {
		t.Error("a configured ICE server is not allowed")
	}
	if (&AddrPolicy{AlwaysAllowHosts: []string{"turn.example.org:3478"}}).For("turn.example.org", 3479).Check(netip.MustParseAddrPort("10.0.0.1:3479")) == nil {
		t.Error("another port of an ICE server's host is allowed")
	}
	if got, err := ParseProbeAllow("10.0.0.0/8, 192.168.1.7"); err != nil || len(got) != 2 || got[1].Bits() != 32 {
		t.Errorf("ParseProbeAllow: %v %v", got, err)
	}
	if _, err := ParseProbeAllow("10.0.0.0/33"); err == nil {
		t.Error("ParseProbeAllow accepted a bad prefix")
	}
}

// Probes of a configured ICE server pass, on loopback and by name.
func TestProbeICEServersAllowed(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	srv := startTURN(t, map[string]string{"alice": "secret"}, true)
	_, port, _ := net.SplitHostPort(srv)
	byName := "turn.pinhole.test:" + port
	policy := loopbackOnly(t, &AddrPolicy{AlwaysAllowHosts: []string{srv, byName}})
	res := fixedResolver(t, netip.MustParseAddr("127.0.0.1"))
	ctx := context.Background()
	for _, u := range []string{"stun:" + srv, "stun:" + byName} {
		if r := RunSTUNProbe(ctx, STUNProbe{URL: u, Resolver: res, Policy: policy}); !r.Reachable {
			t.Errorf("%s: %+v", u, r)
		}
	}
	for _, u := range []string{"turn:" + srv, "turn:" + byName} {
		if r := ProbeTURN(ctx, TURNProbe{URL: u, Username: "alice", Credential: "secret", Resolver: res, Policy: policy}); !r.Allocated {
			t.Errorf("%s: %+v", u, r)
		}
	}
	// The same name on another port is no ICE server.
	r := RunSTUNProbe(ctx, STUNProbe{URL: "stun:turn.pinhole.test:1", Resolver: res, Policy: policy, Timeout: time.Second})
	assertRefused(t, "other port", r.Class, r.Server, r.LocalAddr, r.Error, r.Fix, r.Cause, r)
}

// Failure answers are a fixed sentence per class: no "connection
// refused", no TLS or certificate text from the service probed.
func TestProbeAnswersCarryNoRawError(t *testing.T) {
	tcpAddr, _ := tcpCounter(t)
	ctx := context.Background()
	cases := []struct {
		probe TURNProbe
		class ProbeClass
	}{
		{TURNProbe{URL: "turn:" + closedUDPPort(t) + "?transport=tcp"}, ProbeUnreachable},
		{TURNProbe{URL: "turns:" + tcpAddr}, ProbeTLS},
		{TURNProbe{URL: "turn:x.pinhole.invalid:3478", Resolver: nxResolver(t)}, ProbeDNS},
	}
	for _, c := range cases {
		c.probe.Username, c.probe.Credential, c.probe.Policy, c.probe.Timeout = "a", "b", loopbackOK, 3*time.Second
		r := ProbeTURN(ctx, c.probe)
		if r.Class != c.class || r.Cause == nil || r.Fix == "" {
			t.Errorf("%s: want %s, got %+v", c.probe.URL, c.class, r)
			continue
		}
		js, _ := json.Marshal(r)
		for _, leak := range []string{r.Cause.Error(), "connection refused", "tls:", "first record", "internal-service", "no such host"} {
			if strings.Contains(string(js), leak) {
				t.Errorf("%s: answer leaks %q: %s", c.probe.URL, leak, js)
			}
		}
	}
}

// Remote candidates naming special addresses are dropped; loopback and
// this host's own only for a client that is not on this host.
func TestCandidateDropReasons(t *testing.T) {
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	h := newHostAddrs(n, []string{"198.51.100.9"})
	cand := func(addr string) string { return "candidate:1 1 udp 2130706431 " + addr + " 40000 typ host" }
	type want struct{ untrusted, trusted string }
	cases := map[string]want{
		"127.0.0.1":       {"loopback", ""},
		"198.51.100.9":    {"this host's own", ""},
		"169.254.169.254": {"cloud metadata", "cloud metadata"},
		"169.254.3.4":     {"link-local", "link-local"},
		"fe80::1":         {"link-local", "link-local"},
		"224.0.0.251":     {"multicast", "multicast"},
		"255.255.255.255": {"broadcast", "broadcast"},
		"0.0.0.0":         {"unspecified", "unspecified"},
		"100.100.100.200": {"cloud metadata", "cloud metadata"},
		"0b6e7c2a-1c1e-4d0c-9a1b-3e2f1d4c5b6a.local": {"mDNS name", "mDNS name"},
		"203.0.113.5": {"", ""},
		"10.1.2.3":    {"", ""}, // a LAN client
	}
	for _, a := range hostIPv4s(t) {
		if r := classifyAddr(a); r == rangePublic || r == rangePrivate || r == rangeCGNAT {
			cases[a.String()] = want{"this host's own", ""}
		}
	}
	for addr, w := range cases {
		if got := h.dropReason(cand(addr), false); got != w.untrusted {
			t.Errorf("%s untrusted: %q, want %q", addr, got, w.untrusted)
		}
		if got := h.dropReason(cand(addr), true); got != w.trusted {
			t.Errorf("%s trusted: %q, want %q", addr, got, w.trusted)
		}
	}
	for b := range h.bcast {
		if got := h.dropReason(cand(b.String()), true); got != "broadcast" {
			t.Errorf("directed broadcast %s: %q", b, got)
		}
	}
	sdpText := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=" + cand("127.0.0.1") + "\r\na=" + cand("203.0.113.5") + "\r\na=end-of-candidates\r\n"
	out, kept, dropped := h.filterOfferCandidates(sdpText, false)
	if len(kept) != 1 || len(dropped) != 1 || strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "203.0.113.5 40000 typ host\r\na=end-of-candidates\r\n") {
		t.Fatalf("filtered offer:\n%q\nkept %v dropped %v", out, kept, dropped)
	}
}

// After a burst, a repeated warning passes once per logEvery with the
// count of those suppressed.
func TestLogSampler(t *testing.T) {
	now := time.Unix(1000, 0)
	f := &slogLoggerFactory{now: func() time.Time { return now }}
	k := sampleKey{scope: "ice", msg: "No Username attribute in STUN message from %s"}
	passed := 0
	for range 1000 {
		if ok, _ := f.admit(k); ok {
			passed++
		}
	}
	if passed != logBurst {
		t.Fatalf("%d lines passed in a burst, want %d", passed, logBurst)
	}
	now = now.Add(logEvery)
	ok, n := f.admit(k)
	if !ok || n != 1000-logBurst {
		t.Fatalf("after %s: ok %v suppressed %d", logEvery, ok, n)
	}
	if ok, _ := f.admit(sampleKey{scope: "ice", msg: "another"}); !ok {
		t.Fatal("another message is sampled with the first")
	}
}
