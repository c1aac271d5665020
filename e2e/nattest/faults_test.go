package nattest

// The fault matrix: one fault injected per topology, all topologies at
// once (they share nothing but the CPU), each asserting the verdict id and
// hop pinhole names and reporting how long after the POST it named them.
// The times are reported, not asserted: a loaded CI machine is slower.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/diagnostics"
)

// Addresses of the probe faults: silentIP is on the client's side of the
// router, whose forward chain drops what the host starts (so a server
// there never answers); the refusing TURN server runs on the router's
// private address, which the host reaches directly.
const (
	silentIP = "203.0.113.50"
	turnAddr = routerPrivIP + ":3478"
	turnUser = "pinhole"
	turnPass = "secret"
)

// verdictDeadline bounds the wait for a session's verdict: generous, the
// diagnosis names each fault in a few seconds.
const verdictDeadline = 30 * time.Second

// dropOver300 drops UDP datagrams over 300 bytes (UDP length, header
// included): ICE's binding requests (about 100 bytes) pass, DTLS flights
// carrying certificates do not, as on a path whose MTU is broken.
var dropOver300 = breakage{
	name: "UDP datagrams over 300 bytes dropped",
	nft:  func(_, _ string) string { return "meta l4proto udp udp length > 300 drop" },
	iptables: func(_, _ string) []string {
		return []string{"-p", "udp", "-m", "length", "--length", "301:65535", "-j", "DROP"}
	},
}

// clientEvent is a line the client helper emits as soon as a session
// exists, so the parent can watch its diagnosis while it is up.
type clientEvent struct {
	Session string `json:"session"`
	Role    string `json:"role"`
}

type fault struct {
	name     string
	mapping  mapping
	breaks   []breakage
	public   []int    // advertised public ports (default mappedPorts)
	server   []string // extra server helper flags
	client   string   // client mode; "" runs no client
	watch    string   // the session role whose diagnosis is judged
	turn     bool     // start the TURN server on the router
	probe    *request // a probe instead of a session
	id, hop  string
	contains []string // in the headline (sessions) or fix
}

// TestNATFaults injects each fault of the diagnostics' fault matrix and
// checks that pinhole names the broken hop.
func TestNATFaults(t *testing.T) {
	fw, bin := namespaceTest(t)
	wrongPorts := append(append([]int(nil), mappedPorts[1:]...), mappedPorts[4]+1)
	faults := []fault{
		{name: "missing UDP forward", mapping: noMapping, client: "publish", watch: "publisher",
			id: diagnostics.VerdictNoPacket, hop: "mapping",
			contains: []string{fmt.Sprintf("no packet reached local UDP %d", localPorts[0]), fmt.Sprintf("public %s:%d -> this host's UDP %d", routerPubIP, mappedPorts[0], localPorts[0]), "cannot be told apart"}},
		{name: "wrong public port", mapping: mapped, public: wrongPorts, client: "publish", watch: "publisher",
			id: diagnostics.VerdictNoPacket, hop: "mapping",
			contains: []string{fmt.Sprintf("%s:%d", routerPubIP, wrongPorts[0]), "--public-ports wrong"}},
		{name: "wrong public IP", mapping: mapped, server: []string{"-nattest.public-ip=203.0.113.99"}, client: "publish", watch: "publisher",
			id: diagnostics.VerdictPublicIPMismatch, hop: "mapping",
			contains: []string{"reached pinhole at " + routerPubIP, "advertised 203.0.113.99", "--public-ip"}},
		{name: "replies from the box dropped", mapping: mapped, breaks: []breakage{dropReplies}, client: "publish", watch: "publisher",
			id: diagnostics.VerdictICEFailed, hop: "ice", contains: []string{"packets arrived (from " + clientIP + ":"}},
		{name: "UDP over 300 bytes dropped (DTLS blackhole)", mapping: mapped, breaks: []breakage{dropOver300}, client: "publish", watch: "publisher",
			id: diagnostics.VerdictDTLSFailed, hop: "dtls", contains: []string{"ICE connected but DTLS failed"}},
		{name: "viewer offers only a video codec the publisher does not send", mapping: mapped, client: "mismatch", watch: "viewer",
			id: diagnostics.VerdictVideoCodec, hop: "media", contains: []string{"audio flows but no video", "video/VP8"}},
		// pion/turn's client gives up after 7 requests in about 7.8 s, before
		// the probe's default 8 s deadline: the probe runs with the default.
		{name: "TURN server never answers", mapping: mapped,
			probe: &request{Op: "probe", Path: "/api/v1/diagnostics/turn", Body: fmt.Sprintf(`{"url":"turn:%s:3478?transport=udp","username":"u","credential":"p"}`, silentIP)},
			id:    "turn-timeout", hop: diagnostics.HopICEServer, contains: []string{"transport=tcp", "turns:"}},
		{name: "TURN server refuses the credential", mapping: mapped, turn: true,
			probe: &request{Op: "probe", Path: "/api/v1/diagnostics/turn", Body: fmt.Sprintf(`{"url":"turn:%s?transport=udp","username":"%s","credential":"wrong","timeout_ms":5000}`, turnAddr, turnUser)},
			id:    "turn-auth-refused", hop: diagnostics.HopICEServer, contains: []string{"username or credential"}},
		{name: "STUN server never answers", mapping: mapped,
			probe: &request{Op: "probe", Path: "/api/v1/diagnostics/stun", Body: fmt.Sprintf(`{"url":"stun:%s:3478","timeout_ms":3000}`, silentIP)},
			id:    "stun-timeout", hop: diagnostics.HopICEServer, contains: []string{"firewall"}},
	}

	var mu sync.Mutex
	times := map[string]string{}
	t.Run("matrix", func(t *testing.T) {
		for _, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				took := runFault(t, fw, bin, f)
				mu.Lock()
				times[f.name] = took
				mu.Unlock()
			})
		}
	})
	names := make([]string, 0, len(times))
	for n := range times {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "\n  %-62s %s", n, times[n])
	}
	t.Logf("time to verdict per fault:%s", b.String())
}

// runFault builds the fault's topology, provokes it and waits for the
// verdict; it returns the time to verdict, as reported.
func runFault(t *testing.T, fw firewall, bin string, f fault) string {
	topo := newTopology(t, fw, f.mapping, f.breaks...)
	if f.turn {
		startTURN(t, topo, bin)
	}
	public := f.public
	if public == nil {
		public = mappedPorts
	}
	// The fault matrix probes STUN and TURN servers in its namespaces,
	// at documentation addresses that probes refuse unless allowed.
	srv := startServer(t, topo, bin, public, append(f.server, "-nattest.probe-allow=203.0.113.0/24,198.51.100.0/24")...)

	if f.probe != nil {
		start := time.Now()
		var v *api.Verdict
		if strings.HasSuffix(f.probe.Path, "/turn") {
			var r api.TURNProbeResult
			srv.call(t, *f.probe, &r)
			v = r.Verdict
		} else {
			var r api.STUNProbeResult
			srv.call(t, *f.probe, &r)
			v = r.Verdict
		}
		took := time.Since(start)
		if v == nil || v.ID != f.id || v.Hop != f.hop || v.Status != api.StatusFail {
			t.Fatalf("probe verdict %+v, want %s at %s", v, f.id, f.hop)
		}
		for _, s := range f.contains {
			if !strings.Contains(v.Fix, s) {
				t.Errorf("fix %q lacks %q", v.Fix, s)
			}
		}
		t.Logf("verdict %s at %s after %s (the probe's duration): %s; fix: %s", v.ID, v.Hop, took.Round(time.Millisecond), v.Headline, v.Fix)
		return fmt.Sprintf("%s (%s at %s; probe duration)", took.Round(100*time.Millisecond), v.ID, v.Hop)
	}

	c := startClient(t, topo, bin, f.client)
	id := c.session(t, f.watch)
	posted := time.Now()
	deadline := posted.Add(verdictDeadline)
	var d api.Diagnosis
	for {
		d = diagnose(t, srv, id, false)
		if d.Verdict.Status == api.StatusFail || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wall := time.Since(posted)
	v := d.Verdict
	if v.Status != api.StatusFail || v.ID != f.id || v.Hop != f.hop {
		t.Fatalf("first failing verdict %+v, want %s at %s; timeline %+v", v, f.id, f.hop, d.Timeline)
	}
	for _, s := range f.contains {
		if !strings.Contains(v.Headline, s) {
			t.Errorf("headline %q lacks %q", v.Headline, s)
		}
	}
	if v.Fix == "" || len(v.Evidence) == 0 {
		t.Errorf("verdict without fix or evidence: %+v", v)
	}
	broken := ""
	for _, p := range d.Path {
		if p.Broken {
			broken = p.ID
			if p.Hop != f.hop || p.Status != api.StatusFail {
				t.Errorf("path step %+v is not the broken %s hop", p, f.hop)
			}
		}
	}
	if broken == "" {
		t.Errorf("no broken step in the path %+v", d.Path)
	}
	t.Logf("verdict %s at %s (step %s) %.0f ms after the offer, seen %s after the POST: %s\n  evidence: %s\n  fix: %s",
		v.ID, v.Hop, broken, v.SinceStartMillis, wall.Round(time.Millisecond), v.Headline, strings.Join(v.Evidence, " | "), v.Fix)
	return fmt.Sprintf("%.1f s after the offer (%s at %s), polled %.1f s after the POST", v.SinceStartMillis/1000, v.ID, v.Hop, wall.Seconds())
}

// clientProc is a client helper running in the background; its sessions
// are reported as they are created.
type clientProc struct {
	events chan clientEvent
}

func startClient(t *testing.T, tp *topology, bin, mode string) *clientProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := helperCmd(ctx, tp.client, bin, "client", "-nattest.mode="+mode)
	var stderr lockedWriter
	stderr.w = &strings.Builder{}
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &clientProc{events: make(chan clientEvent, 4)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(c.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), protoPrefix)
			var ev clientEvent
			if ok && json.Unmarshal([]byte(line), &ev) == nil && ev.Session != "" {
				c.events <- ev
			}
		}
	}()
	// The verdict is in once it is seen: the client is stopped (Kill on
	// cancel, by its PID) instead of waiting out its own timeouts.
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			stderr.mu.Lock()
			t.Logf("client stderr:\n%s", lastLines([]byte(stderr.w.(*strings.Builder).String()), 30))
			stderr.mu.Unlock()
		}
	})
	return c
}

// session waits for the client's session of the role.
func (c *clientProc) session(t *testing.T, role string) string {
	t.Helper()
	timeout := time.After(verdictDeadline)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("the client ended without a %s session", role)
			}
			if ev.Role == role {
				return ev.Session
			}
		case <-timeout:
			t.Fatalf("no %s session within %s", role, verdictDeadline)
		}
	}
}

// startTURN runs a pion/turn server on the router's private address.
func startTURN(t *testing.T, tp *topology, bin string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := helperCmd(ctx, tp.router, bin, "turn")
	h := startHelper(t, "turn", cmd, cancel, 5*time.Second)
	var ready any
	if err := h.read(&ready); err == nil {
		return
	}
	t.Fatal("the TURN server did not start")
}

// turnServer is the body of the "turn" helper: pion/turn with one user,
// until stdin closes.
func turnServer() error {
	pc, err := net.ListenPacket("udp4", turnAddr)
	if err != nil {
		return err
	}
	ip := pc.LocalAddr().(*net.UDPAddr).IP
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: "pinhole.test",
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != turnUser {
				return "", nil, false
			}
			return turnUser, turn.GenerateAuthKey(turnUser, ra.Realm, turnPass), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: ip, Address: ip.String()},
		}},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	emit(map[string]bool{"ready": true})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
	return nil
}
