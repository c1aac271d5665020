package diagnostics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/diagnostics"
	"github.com/pinhole-rtc/pinhole/internal/servertest"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// diagEnv is a whole pinhole (internal/servertest) on 3 ports, with the
// diagnostics told this host has a LAN address besides loopback.
type diagEnv struct {
	*servertest.Env
	diag *diagnostics.Diagnostics
}

func (e *diagEnv) do(method, path string, body string, header ...string) (*http.Response, string) {
	e.T.Helper()
	return e.Do(method, path, body, header...)
}

func newDiagEnv(t *testing.T, cfg diagnostics.Config) *diagEnv {
	t.Helper()
	sc := servertest.Defaults(t, 3, testnet.HandlersLo, testnet.HandlersHi)
	sc.Media.SetupTimeout = 5 * time.Second
	cfg.PublicIPs, cfg.UDPPorts, cfg.BindIP = sc.Media.PublicIPs, sc.Media.Ports, sc.Media.BindIP
	cfg.SelfTestIPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	// The test's STUN/TURN servers run on loopback, which probes refuse
	// unless allowed (--probe-allow).
	if cfg.ProbeAllow == nil {
		cfg.ProbeAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	if cfg.Interfaces == nil {
		cfg.Interfaces = func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.1.20")}, nil
		}
	}
	sc.Diagnostics = cfg
	sc.HTTP.ICEServers = cfg.ICEServers
	e := servertest.Start(t, sc)
	return &diagEnv{Env: e, diag: e.Diagnostics}
}

// startTestTURN runs a pion/turn server on loopback (it answers STUN
// binding requests too) with one user.
func startTestTURN(t *testing.T, user, pass string) string {
	t.Helper()
	addr, _ := startCountingTURN(t, user, pass)
	return addr
}

// startCountingTURN is startTestTURN that also counts the authenticated
// requests it answers (allocations and their refreshes).
func startCountingTURN(t *testing.T, user, pass string) (string, *atomic.Int64) {
	t.Helper()
	var authed atomic.Int64
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: "pinhole.test",
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != user {
				return "", nil, false
			}
			authed.Add(1)
			return user, turn.GenerateAuthKey(user, ra.Realm, pass), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return pc.LocalAddr().String(), &authed
}

// decode returns a function that checks a 200 JSON answer and decodes it,
// so that decode[T](t)(e.do(...)) reads as one step.
func decode[T any](t *testing.T) func(*http.Response, string) T {
	return func(resp *http.Response, body string) T {
		t.Helper()
		var v T
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		return v
	}
}

func TestDiagnosticsReport(t *testing.T) {
	turnAddr := startTestTURN(t, "alice", "secret")
	e := newDiagEnv(t, diagnostics.Config{ICEServers: []api.ICEServer{
		{URL: "stun:" + turnAddr},
		{URL: "turn:" + turnAddr, Username: "alice", Credential: "secret"},
		{URL: "turn:" + turnAddr, Username: "alice", Credential: "wrong"},
	}})
	// Another program holding a port of the range shows up as a failure.
	squatter, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(e.Ports[2]))
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()

	rep := decode[api.DiagnosticsReport](t)(e.do("GET", "/api/v1/diagnostics", ""))
	byID := map[string]api.Check{}
	for _, c := range rep.Checks {
		byID[c.ID] = c
		t.Logf("%-14s %-4s %s | %s", c.ID, c.Status, c.Seen, c.Fix)
	}
	want := map[string]string{
		"public-ip-0":                      api.StatusWarn, // loopback: only local clients
		"bind-ip":                          api.StatusOK,
		"port-ranges":                      api.StatusOK,
		"leases":                           api.StatusOK,
		"port-" + strconv.Itoa(e.Ports[0]): api.StatusOK,
		"port-" + strconv.Itoa(e.Ports[2]): api.StatusFail,
		"ice-server-0":                     api.StatusOK,
		"ice-server-1":                     api.StatusOK,
		"ice-server-2":                     api.StatusFail,
	}
	for id, st := range want {
		if c, ok := byID[id]; !ok || c.Status != st {
			t.Errorf("check %s: %+v, want %s", id, c, st)
		}
	}
	if rep.Status != api.StatusFail {
		t.Errorf("report status %s", rep.Status)
	}
	if c := byID["ice-server-2"]; !strings.Contains(c.Seen, "auth-refused") || c.Fix == "" {
		t.Errorf("bad TURN credentials: %+v", c)
	}
	if c := byID["port-"+strconv.Itoa(e.Ports[2])]; !strings.Contains(c.Fix, "another program") {
		t.Errorf("squatted port: %+v", c)
	}

	// Without probes the report is immediate and still lists the servers.
	rep = decode[api.DiagnosticsReport](t)(e.do("GET", "/api/v1/diagnostics?probes=false", ""))
	if len(rep.Checks) == 0 {
		t.Fatal("no checks")
	}
	resp, body := e.do("GET", "/api/v1/diagnostics?probes=maybe", "")
	if p := servertest.Problem(t, resp, body, 400); !servertest.FieldNamed(p, "probes") {
		t.Errorf("problem %v", p)
	}
}

func TestDiagnosticsProbes(t *testing.T) {
	turnAddr := startTestTURN(t, "alice", "secret")
	e := newDiagEnv(t, diagnostics.Config{})
	stun := decode[api.STUNProbeResult](t)(e.do("POST", "/api/v1/diagnostics/stun", `{"url":"stun:`+turnAddr+`"}`))
	if !stun.Reachable || !strings.HasPrefix(stun.MappedAddr, "127.0.0.1:") {
		t.Errorf("stun %+v", stun)
	}
	good := decode[api.TURNProbeResult](t)(e.do("POST", "/api/v1/diagnostics/turn",
		`{"url":"turn:`+turnAddr+`","username":"alice","credential":"secret"}`))
	if !good.Allocated || good.Class != "ok" {
		t.Errorf("turn %+v", good)
	}
	bad := decode[api.TURNProbeResult](t)(e.do("POST", "/api/v1/diagnostics/turn",
		`{"url":"turn:`+turnAddr+`","username":"alice","credential":"nope","timeout_ms":3000}`))
	if bad.Allocated || bad.Class != "auth-refused" || bad.Fix == "" {
		t.Errorf("turn %+v", bad)
	}
	// With every probe slot taken, a probe is refused at once, not queued.
	release := diagnostics.TakeProbeSlots(e.diag)
	resp, body := e.do("POST", "/api/v1/diagnostics/stun", `{"url":"stun:`+turnAddr+`"}`)
	servertest.Problem(t, resp, body, http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	release()
	for _, tc := range []struct{ path, body, field string }{
		{"/api/v1/diagnostics/stun", `{}`, "url"},
		{"/api/v1/diagnostics/stun", `{"url":"stun:x","timeout_ms":5}`, "timeout_ms"},
		{"/api/v1/diagnostics/turn", `{"url":"turn:x"}`, "username"},
		{"/api/v1/diagnostics/turn", `{"url":"turn:x","username":"a","bogus":1}`, "bogus"},
	} {
		resp, body := e.do("POST", tc.path, tc.body, "Content-Type", "application/json")
		if p := servertest.Problem(t, resp, body, 400); !servertest.FieldNamed(p, tc.field) {
			t.Errorf("%s %s: %v", tc.path, tc.body, p)
		}
	}
}

func TestSelfTestAndMetrics(t *testing.T) {
	e := newDiagEnv(t, diagnostics.Config{})
	res := decode[api.SelfTestResult](t)(e.do("POST", "/api/v1/diagnostics/selftest", ""))
	if res.Status != api.StatusOK || res.Diagnosis == nil || res.Diagnosis.Verdict.Status != api.StatusOK {
		t.Fatalf("self-test %+v", res)
	}
	if !strings.HasPrefix(res.Target, "127.0.0.1:") || res.PacketsReceived == 0 {
		t.Errorf("self-test %+v", res)
	}
	t.Logf("self-test: %s", res.Summary)
	// The test session is closed but its diagnosis is kept.
	d := decode[api.Diagnosis](t)(e.do("GET", "/api/v1/sessions/"+res.SessionID+"/diagnosis", ""))
	if d.State != "closed" || d.Verdict.Status != api.StatusOK {
		t.Errorf("kept diagnosis %+v", d.Verdict)
	}
	// Every port is free again.
	if free, total := e.Engine.Capacity(); free != total {
		t.Errorf("lease leaked: %d of %d free", free, total)
	}

	resp, body := e.do("GET", "/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics %d", resp.StatusCode)
	}
	// The self-test's RTP was counted as media received.
	if v := metricValue(body, `pinhole_media_packets_total{direction="in"}`); v < 1 {
		t.Errorf("packets in = %v", v)
	}
	if v := metricValue(body, `pinhole_media_bytes_total{direction="in"}`); v < 1 {
		t.Errorf("bytes in = %v", v)
	}
	for _, want := range []string{
		`pinhole_sessions{role="publisher",state="closed"} 1`,
		`pinhole_ports{state="free"} 3`,
		`pinhole_session_setup_seconds_count 1`,
		`pinhole_session_time_to_connected_seconds_count 1`,
		`pinhole_sessions_closed_total{role="publisher"} 1`,
		`pinhole_media_packets_total{direction="in"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestSessionDiagnosis(t *testing.T) {
	e := newDiagEnv(t, diagnostics.Config{NoPacketAfter: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("healthy publisher", func(t *testing.T) {
		pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
		res, err := mediatest.Negotiate(ctx, e.Srv.Client(), e.Srv.URL+"/whip/diag", pub, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub.Start()
		id := path.Base(res.URL)
		var d api.Diagnosis
		for ctx.Err() == nil {
			d = decode[api.Diagnosis](t)(e.do("GET", "/api/v1/sessions/"+id+"/diagnosis", ""))
			if d.Verdict.Status != api.StatusPending {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if d.Verdict.Status != api.StatusOK || len(d.Hops) != 5 {
			t.Fatalf("verdict %+v hops %+v", d.Verdict, d.Hops)
		}
		kinds := map[string]bool{}
		for _, te := range d.Timeline {
			kinds[te.Kind] = true
		}
		for _, k := range []string{"offer", "answer", "first-packet", "ice-connected", "dtls-connected", "first-rtp-in"} {
			if !kinds[k] {
				t.Errorf("timeline lacks %s: %+v", k, d.Timeline)
			}
		}
	})

	t.Run("client that never sends: mapping hop, kept after DELETE", func(t *testing.T) {
		pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
		offer, err := pub.Offer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The answer is never applied: no check ever reaches the lease,
		// exactly what a broken mapping looks like from pinhole.
		resp, body := e.do("POST", "/whip/diag", offer, "Content-Type", "application/sdp")
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("whip %d %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		id := path.Base(loc)
		d := decode[api.Diagnosis](t)(e.do("GET", "/api/v1/sessions/"+id+"/diagnosis", ""))
		if d.Verdict.Status != api.StatusPending || d.Verdict.Hop != "mapping" {
			t.Errorf("at once: %+v", d.Verdict)
		}
		time.Sleep(1200 * time.Millisecond)
		d = decode[api.Diagnosis](t)(e.do("GET", "/api/v1/sessions/"+id+"/diagnosis", ""))
		noPacket := fmt.Sprintf("no packet reached local UDP %d", d.Lease.LocalPort)
		if d.Verdict.Code != diagnostics.VerdictNoPacket || d.Verdict.Hop != "mapping" || !strings.Contains(d.Verdict.Summary, noPacket) {
			t.Errorf("after 1.2 s: %+v", d.Verdict)
		}
		if resp, _ := e.do("DELETE", loc, ""); resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete %d", resp.StatusCode)
		}
		d = decode[api.Diagnosis](t)(e.do("GET", "/api/v1/sessions/"+id+"/diagnosis", ""))
		if d.State != "closed" || d.Verdict.Code != diagnostics.VerdictNoPacket {
			t.Errorf("after delete: state %s %+v", d.State, d.Verdict)
		}
		// The engine's closed event reaches Metrics, which counts the verdict.
		want := `pinhole_session_failures_total{verdict="no-packet"} 1`
		var metrics string
		for ctx.Err() == nil {
			_, metrics = e.do("GET", "/metrics", "")
			if strings.Contains(metrics, want) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	})

	t.Run("unknown sessions", func(t *testing.T) {
		for _, id := range []string{"0123456789abcdef0123456789abcdef", "nope"} {
			resp, body := e.do("GET", "/api/v1/sessions/"+id+"/diagnosis", "")
			servertest.Problem(t, resp, body, 404)
		}
	})
}

// metricValue reads one sample of the Prometheus text format (-1 if absent).
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// The report's ICE-server probes are shared and cached: ten reports at
// once and another right after make one TURN allocation, not eleven, so
// reading reports is no way to make pinhole hammer the operator's TURN
// server.
func TestReportProbesCollapsed(t *testing.T) {
	turnAddr, authed := startCountingTURN(t, "alice", "secret")
	e := newDiagEnv(t, diagnostics.Config{ICEServers: []api.ICEServer{{URL: "turn:" + turnAddr, Username: "alice", Credential: "secret"}}})
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := e.Do("GET", "/api/v1/diagnostics", "")
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "allocated") {
				t.Errorf("report: %d %s", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	first := authed.Load()
	if first == 0 {
		t.Fatal("the TURN server was never probed")
	}
	_, _ = e.Do("GET", "/api/v1/diagnostics", "")
	if n := authed.Load(); n != first {
		t.Fatalf("a report within a minute probed again: %d authenticated requests, %d after the first reports", n, first)
	}
	t.Logf("10+1 reports: %d authenticated TURN requests (one allocation)", first)
}
