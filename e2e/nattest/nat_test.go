package nattest

// The NAT test builds three network namespaces per case:
//
//	client 203.0.113.2 --- 203.0.113.1 router 198.51.100.1 --- 198.51.100.2 host (pinhole)
//
// The router DNATs public UDP 203.0.113.1:20111-20115 to the host's local
// ports 10111-10115 (a different number, so the answer's candidate port
// must be rewritten) and TCP 8080 to the host's HTTP server. Its forward
// chain drops everything except replies (ct state established,related) and
// flows that came in through the DNAT (ct status dnat), and there is no
// masquerade: UDP that pinhole's host starts itself (its own connectivity
// checks towards the client) dies at the router, so without the mapping
// nothing flows. The client has a route to 203.0.113.0/24 only.
//
// Each side runs in a child process started with `ip netns exec`: this test
// binary again, with -nattest.role=server (pinhole's engine, recorder,
// store and HTTP handlers, exactly as main wires them) or
// -nattest.role=client (a mediatest Publisher and Viewer speaking WHIP and
// WHEP to http://203.0.113.1:8080). Sockets belong to the namespace of the
// process that opens them, and Pion opens sockets on its own goroutines, so
// separate processes are the only reliable way to keep each side in its
// namespace.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/diagnostics"
	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/server"
	"github.com/pinhole-rtc/pinhole/store"
)

// Helper-process flags; the parent test sets them, people never do.
var (
	role         = flag.String("nattest.role", "", "internal: run as the NAT test's server or client process")
	publicPorts  = flag.String("nattest.public-ports", "", "internal: public ports the server advertises (comma list)")
	probeAllow   = flag.String("nattest.probe-allow", "", "internal: the server's --probe-allow (comma list of prefixes)")
	behindRelay  = flag.Bool("nattest.behind-relay", false, "internal: the server listens on loopback only, behind a TCP relay on the host address (as frpc delivers)")
	publicIPFlag = flag.String("nattest.public-ip", routerPubIP, "internal: the public IP the server advertises")
	clientMode   = flag.String("nattest.mode", "publish", "internal: what the client does (publish, mismatch)")
)

// testAdminToken is the helper server's admin token: the parent's admin
// requests carry it, anonymous ones do not.
const testAdminToken = "nattest-admin-token-0123456789"

// Addresses of the topology (documentation ranges, RFC 5737).
const (
	clientIP     = "203.0.113.2"
	routerPubIP  = "203.0.113.1"
	routerPrivIP = "198.51.100.1"
	hostIP       = "198.51.100.2"
	httpPort     = 8080
	// protoPrefix marks the helper's protocol lines on stdout, apart from
	// whatever the testing package prints there.
	protoPrefix = "NATTEST "
)

var (
	localPorts  = []int{10111, 10112, 10113, 10114, 10115}
	mappedPorts = []int{20111, 20112, 20113, 20114, 20115}
)

// Timeouts of the server under test: short, so a broken case ends in
// seconds, yet far above what a healthy setup takes here (milliseconds).
const (
	setupTimeout = 8 * time.Second
	clientWait   = 12 * time.Second
)

func TestNAT(t *testing.T) {
	fw, bin := namespaceTest(t)

	t.Run("mapped ports: media flows", func(t *testing.T) {
		topo := newTopology(t, fw, mapped)
		srv := startServer(t, topo, bin, mappedPorts)
		res := runClient(t, topo, bin, true)
		if !res.Connected || res.ViewerFrames == 0 {
			t.Fatalf("media did not flow through the mapping: %+v", res)
		}
		d := diagnose(t, srv, res.SessionID, false)
		if d.Verdict.Status != api.StatusOK {
			t.Fatalf("verdict %+v", d.Verdict)
		}
		if d.Lease.PublicAddr != fmt.Sprintf("%s:%d", routerPubIP, mappedPorts[0]) || d.Lease.LocalPort != localPorts[0] {
			t.Fatalf("lease %+v", d.Lease)
		}
		t.Logf("publisher %s: %d decodable frames at the viewer; verdict %s", res.SessionID, res.ViewerFrames, d.Verdict.Summary)

		// This router does not loop the host's own traffic back: the
		// self-test must fail, and say that this may be all there is.
		st := selfTest(t, srv)
		if st.Status != api.StatusFail || !strings.Contains(st.Summary, fmt.Sprintf("no packet reached local UDP %d", st.LocalPort)) ||
			!strings.Contains(st.Fix, "hairpin") {
			t.Fatalf("self-test without NAT loopback: %+v", st)
		}
		t.Logf("self-test without hairpin: %s", st.Summary)
	})

	t.Run("hairpin mapping: the self-test passes through it", func(t *testing.T) {
		topo := newTopology(t, fw, hairpin)
		srv := startServer(t, topo, bin, mappedPorts)
		st := selfTest(t, srv)
		if st.Status != api.StatusOK || st.Target != fmt.Sprintf("%s:%d", routerPubIP, mappedPorts[0]) {
			t.Fatalf("self-test through the hairpin mapping: %+v", st)
		}
		t.Logf("self-test: %s", st.Summary)
	})

	t.Run("hairpin but wrong public port: the self-test fails", func(t *testing.T) {
		topo := newTopology(t, fw, hairpin)
		wrong := append(append([]int(nil), mappedPorts[1:]...), mappedPorts[4]+1)
		srv := startServer(t, topo, bin, wrong)
		st := selfTest(t, srv)
		if st.Status != api.StatusFail || !strings.Contains(st.Summary, fmt.Sprintf("%s:%d", routerPubIP, wrong[0])) {
			t.Fatalf("self-test with a wrong public port: %+v", st)
		}
		t.Logf("self-test: %s", st.Summary)
	})

}

func wantVerdict(t *testing.T, d api.Diagnosis, hop, code string, summary ...string) {
	t.Helper()
	v := d.Verdict
	if v.Status != api.StatusFail || v.Hop != hop || v.Code != code {
		t.Fatalf("verdict %+v, want fail at %s (%s); timeline %+v", v, hop, code, d.Timeline)
	}
	for _, s := range summary {
		if !strings.Contains(v.Summary, s) {
			t.Errorf("summary %q lacks %q", v.Summary, s)
		}
	}
	if v.Fix == "" {
		t.Errorf("no fix")
	}
	t.Logf("verdict: %s; fix: %s", v.Summary, v.Fix)
}

// firewall is how the router's rules are written.
type firewall string

const (
	fwNFT      firewall = "nft"
	fwIPTables firewall = "iptables"
)

// requireNamespaces checks that this machine lets the test build network
// namespaces and a NAT, installing nftables from Debian when missing. It
// skips, loudly, only when namespaces are not allowed at all.
func requireNamespaces(t *testing.T) firewall {
	t.Helper()
	skip := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(os.Stderr, "\n*** NAT TEST SKIPPED: %s ***\n*** the NAT traversal of pinhole was NOT tested on this machine ***\n\n", msg)
		t.Skip("NAT TEST SKIPPED: " + msg)
	}
	if os.Geteuid() != 0 {
		skip("network namespaces need root (CAP_NET_ADMIN); run the tests as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("the ip command (iproute2) is missing")
	}
	probe := fmt.Sprintf("phprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		skip("this machine does not allow network namespaces: ip netns add: %v: %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()

	if _, err := exec.LookPath("nft"); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "nftables").CombinedOutput()
		if err != nil {
			t.Logf("apt-get install nftables: %v: %s", err, lastLines(out, 5))
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		return fwNFT
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		return fwIPTables
	}
	t.Fatal("neither nft nor iptables is available and nftables could not be installed (apt-get install nftables)")
	return ""
}

// topology is one set of namespaces; it is deleted when the test ends.
type topology struct {
	host, router, client string
	fw                   firewall
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func runIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

var topoSeq struct {
	sync.Mutex
	n int
}

// mapping says how the router forwards the public ports.
type mapping int

const (
	noMapping mapping = iota // only signaling (TCP 8080) is forwarded
	mapped                   // public UDP 20111-20115 -> host 10111-10115, from outside only
	hairpin                  // mapped, and also for this host's own traffic to the public address
)

// breakage is an extra fault on the router's forward path, in both
// firewall dialects; the zero value adds none.
type breakage struct {
	name     string
	nft      func(priv, pub string) string // a forward-chain rule
	iptables func(priv, pub string) []string
}

// dropReplies drops UDP the host sends back: the client's checks arrive,
// pinhole's answers never leave (a one-way firewall rule).
var dropReplies = breakage{
	name:     "UDP replies dropped",
	nft:      func(priv, _ string) string { return fmt.Sprintf("iifname %q meta l4proto udp drop", priv) },
	iptables: func(priv, _ string) []string { return []string{"-i", priv, "-p", "udp", "-j", "DROP"} },
}

// dropLarge drops UDP datagrams over 400 bytes (with the 8-byte header):
// ICE's binding requests (about 100 bytes) pass, DTLS flights carrying
// certificates (500+ bytes) do not, as on a path whose MTU is broken.
var dropLarge = breakage{
	name: "UDP datagrams over 400 bytes dropped",
	nft:  func(_, _ string) string { return "meta l4proto udp udp length > 400 drop" },
	iptables: func(_, _ string) []string {
		return []string{"-p", "udp", "-m", "length", "--length", "401:65535", "-j", "DROP"}
	},
}

func newTopology(t *testing.T, fw firewall, m mapping, faults ...breakage) *topology {
	t.Helper()
	topoSeq.Lock()
	topoSeq.n++
	tag := fmt.Sprintf("%dx%d", os.Getpid()%10000, topoSeq.n) // unique per process and topology
	topoSeq.Unlock()
	tp := &topology{host: "ph" + tag + "h", router: "ph" + tag + "r", client: "ph" + tag + "c", fw: fw}
	addNamespaces(t, tp.host, tp.router, tp.client)
	// veth pairs are created inside the router namespace, so no interface
	// ever appears in the machine's own namespace.
	hv, rv1 := "hv"+tag, "rh"+tag // host side, router private side
	cv, rv0 := "cv"+tag, "rc"+tag // client side, router public side
	runIn(t, tp.router, "ip", "link", "add", rv1, "type", "veth", "peer", "name", hv, "netns", tp.host)
	runIn(t, tp.router, "ip", "link", "add", rv0, "type", "veth", "peer", "name", cv, "netns", tp.client)
	runIn(t, tp.router, "ip", "addr", "add", routerPrivIP+"/24", "dev", rv1)
	runIn(t, tp.router, "ip", "addr", "add", routerPubIP+"/24", "dev", rv0)
	runIn(t, tp.router, "ip", "link", "set", rv1, "up")
	runIn(t, tp.router, "ip", "link", "set", rv0, "up")
	runIn(t, tp.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	runIn(t, tp.host, "ip", "addr", "add", hostIP+"/24", "dev", hv)
	runIn(t, tp.host, "ip", "link", "set", hv, "up")
	runIn(t, tp.host, "ip", "route", "add", "default", "via", routerPrivIP)
	runIn(t, tp.client, "ip", "addr", "add", clientIP+"/24", "dev", cv)
	runIn(t, tp.client, "ip", "link", "set", cv, "up")
	tp.rules(t, rv1, rv0, m, faults)
	return tp
}

// rules installs the router's NAT: TCP 8080 always (signaling), the UDP
// mapping unless noMapping. No masquerade, except with hairpin for the
// host's own traffic looped back to itself (its source must become the
// router so that the replies return through the mapping, as on a home
// router with NAT loopback).
func (tp *topology) rules(t *testing.T, priv, pub string, m mapping, faults []breakage) {
	t.Helper()
	switch tp.fw {
	case fwNFT:
		var b strings.Builder
		fmt.Fprintf(&b, "table ip pinhole_nat {\n chain prerouting_nat {\n  type nat hook prerouting priority dstnat; policy accept;\n")
		fmt.Fprintf(&b, "  iifname %q tcp dport %d dnat to %s:%d\n", pub, httpPort, hostIP, httpPort)
		for i, p := range mappedPorts {
			switch m {
			case mapped:
				fmt.Fprintf(&b, "  iifname %q udp dport %d dnat to %s:%d\n", pub, p, hostIP, localPorts[i])
			case hairpin:
				fmt.Fprintf(&b, "  ip daddr %s udp dport %d dnat to %s:%d\n", routerPubIP, p, hostIP, localPorts[i])
			}
		}
		fmt.Fprintf(&b, " }\n")
		if m == hairpin {
			fmt.Fprintf(&b, " chain postrouting_nat {\n  type nat hook postrouting priority srcnat; policy accept;\n")
			fmt.Fprintf(&b, "  ip saddr %s ip daddr %s ct status dnat masquerade\n }\n", hostIP, hostIP)
		}
		fmt.Fprintf(&b, "}\n")
		fmt.Fprintf(&b, "table ip pinhole_filter {\n chain forward_filter {\n  type filter hook forward priority filter; policy drop;\n")
		for _, f := range faults {
			fmt.Fprintf(&b, "  %s\n", f.nft(priv, pub))
		}
		fmt.Fprintf(&b, "  ct state established,related accept\n  ct status dnat accept\n }\n}\n")
		cmd := exec.Command("ip", "netns", "exec", tp.router, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(b.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v: %s\n%s", err, out, b.String())
		}
	case fwIPTables:
		runIn(t, tp.router, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", pub, "-p", "tcp", "--dport", strconv.Itoa(httpPort),
			"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", hostIP, httpPort))
		for i, p := range mappedPorts {
			to := fmt.Sprintf("%s:%d", hostIP, localPorts[i])
			switch m {
			case mapped:
				runIn(t, tp.router, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", pub, "-p", "udp", "--dport", strconv.Itoa(p), "-j", "DNAT", "--to-destination", to)
			case hairpin:
				runIn(t, tp.router, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", routerPubIP, "-p", "udp", "--dport", strconv.Itoa(p), "-j", "DNAT", "--to-destination", to)
			}
		}
		if m == hairpin {
			runIn(t, tp.router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", hostIP, "-d", hostIP, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE")
		}
		runIn(t, tp.router, "iptables", "-P", "FORWARD", "DROP")
		for _, f := range faults {
			runIn(t, tp.router, append([]string{"iptables", "-A", "FORWARD"}, f.iptables(priv, pub)...)...)
		}
		runIn(t, tp.router, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		runIn(t, tp.router, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
	}
}

// helperCmd starts this test binary in ns as a helper process.
func helperCmd(ctx context.Context, ns, bin, role string, extra ...string) *exec.Cmd {
	args := []string{"netns", "exec", ns, bin, "-test.run=^TestNATHelperProcess$", "-test.timeout=2m", "-nattest.role=" + role}
	cmd := exec.CommandContext(ctx, "ip", append(args, extra...)...)
	// ip netns exec replaces itself with the binary: the PID is the
	// helper's, so Kill on cancel stops exactly the process we started.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// serverProc is the pinhole helper process, driven line by line.
type serverProc struct {
	*helperProc
	mu sync.Mutex
}

func startServer(t *testing.T, tp *topology, bin string, public []int, extra ...string) *serverProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var ports []string
	for _, p := range public {
		ports = append(ports, strconv.Itoa(p))
	}
	cmd := helperCmd(ctx, tp.host, bin, "server", append([]string{"-nattest.public-ports=" + strings.Join(ports, ",")}, extra...)...)
	s := &serverProc{helperProc: startHelper(t, "server", cmd, cancel, 15*time.Second)}
	var ready struct{ Ready bool }
	if err := s.read(&ready); err != nil || !ready.Ready {
		t.Fatalf("server did not start: %v\n%s", err, s.logText())
	}
	return s
}

// request is one command to the server helper.
type request struct {
	Op      string `json:"op"` // "diagnosis", "selftest", "probe", "udp-listen" or "udp-count"
	ID      string `json:"id,omitempty"`
	WaitEnd bool   `json:"wait_end,omitempty"`
	// Path and Body of a probe: POST /api/v1/diagnostics/{stun,turn}.
	Path string `json:"path,omitempty"`
	Body string `json:"body,omitempty"`
	// Addr is where "udp-listen" opens a counting UDP listener (host:0).
	Addr string `json:"addr,omitempty"`
}

// reply is the HTTP answer the helper's pinhole gave to the command.
type reply struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Error  string          `json:"error,omitempty"`
}

// call sends one command and decodes the JSON body of a 200 answer into v.
func (s *serverProc) call(t *testing.T, req request, v any) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := fmt.Fprintf(s.in, "%s\n", b); err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := s.read(&r); err != nil || r.Error != "" || r.Status != http.StatusOK {
		t.Fatalf("%s %s: %v %s: HTTP %d %s", req.Op, req.ID, err, r.Error, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("%s: %v: %s", req.Op, err, r.Body)
	}
}

// diagnose asks pinhole for the session's diagnosis (GET
// /api/v1/sessions/{id}/diagnosis); waitEnd waits for the session to end
// first (a broken session is closed by the setup timeout).
func diagnose(t *testing.T, s *serverProc, id string, waitEnd bool) api.Diagnosis {
	t.Helper()
	if id == "" {
		t.Fatal("the client created no session")
	}
	var d api.Diagnosis
	s.call(t, request{Op: "diagnosis", ID: id, WaitEnd: waitEnd}, &d)
	return d
}

// selfTest runs POST /api/v1/diagnostics/selftest on the server.
func selfTest(t *testing.T, s *serverProc) api.SelfTestResult {
	t.Helper()
	var r api.SelfTestResult
	s.call(t, request{Op: "selftest"}, &r)
	return r
}

// clientResult is what the client helper saw.
type clientResult struct {
	SessionID    string `json:"session_id"`
	Connected    bool   `json:"connected"`
	ViewerFrames uint64 `json:"viewer_frames"`
	Error        string `json:"error,omitempty"`
}

func runClient(t *testing.T, tp *topology, bin string, expectMedia bool) clientResult {
	t.Helper()
	var res clientResult
	stderr := runHelperClient(t, tp, bin, "client", &res)
	if expectMedia && res.Error != "" {
		t.Logf("client stderr:\n%s", stderr)
	}
	t.Logf("client: %+v", res)
	return res
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestNATHelperProcess is the body of the helper processes; in a normal run
// it returns at once.
func TestNATHelperProcess(t *testing.T) {
	switch *role {
	case "server":
		if err := serve(); err != nil {
			t.Fatal(err)
		}
	case "client":
		emit(clientMain(t))
	case "tcpclient":
		emit(tcpClientMain(t))
	case "tcppublisher":
		tcpPublisherMain(t)
	case "turn":
		if err := turnServer(); err != nil {
			t.Fatal(err)
		}
	}
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(os.Stdout, "%s%s\n", protoPrefix, b)
}

// serve runs pinhole as main builds it (server.New) in the host namespace, and answers the parent's commands on stdin.
func serve() error {
	var public []int
	for _, p := range strings.Split(*publicPorts, ",") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("-nattest.public-ports: %w", err)
		}
		public = append(public, n)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var allow []netip.Prefix
	for _, p := range strings.Split(*probeAllow, ",") {
		if p != "" {
			allow = append(allow, netip.MustParsePrefix(p))
		}
	}
	pin, err := server.New(server.Config{
		Logger: log,
		Media: media.Config{
			Ports:        localPorts,
			PublicPorts:  public,
			PublicIPs:    []string{*publicIPFlag},
			PeersPerPort: 1,
			SetupTimeout: setupTimeout,
		},
		// The defaults of main: an admin token, the API not open.
		HTTP:        handlers.Config{AutoCreateRooms: true, CORSOrigins: []string{"*"}, PeersPerPort: 1, AdminToken: testAdminToken, Limits: handlers.DefaultLimits()},
		Diagnostics: diagnostics.Config{ProbeAllow: allow},
	})
	if err != nil {
		return err
	}
	defer pin.Close()
	h := pin.Handler
	addr := fmt.Sprintf("%s:%d", hostIP, httpPort)
	if *behindRelay {
		addr = fmt.Sprintf("127.0.0.1:%d", httpPort)
		stop, err := relay(fmt.Sprintf("%s:%d", hostIP, httpPort), addr)
		if err != nil {
			return err
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if ln, err = serveICETCP(pin, ln); err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnContext: edge.ConnContext}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	emit(map[string]bool{"ready": true})
	listeners := map[string]*countingListener{}
	defer func() {
		for _, l := range listeners {
			_ = l.pc.Close()
		}
	}()

	// Commands from the parent are answered by pinhole's own HTTP handlers,
	// called in process (the parent cannot reach this namespace).
	do := func(method, target, body string) reply {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		r.Header.Set("Authorization", "Bearer "+testAdminToken)
		h.ServeHTTP(w, r)
		return reply{Status: w.Code, Body: w.Body.Bytes()}
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			emit(reply{Error: err.Error()})
			continue
		}
		switch req.Op {
		case "selftest":
			// 8 s: a self-test through a working mapping connects in well
			// under a second; a broken one need not take the default 15 s.
			emit(do(http.MethodPost, "/api/v1/diagnostics/selftest", `{"timeout_ms":8000}`))
		case "probe":
			emit(do(http.MethodPost, req.Path, req.Body))
		case "diagnosis":
			deadline := time.Now().Add(setupTimeout + 10*time.Second)
			for req.WaitEnd && time.Now().Before(deadline) {
				pin.Recorder.Sync()
				if s, err := pin.Store.GetSession(context.Background(), req.ID); err != nil || s.State == store.StateClosed {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			pin.Recorder.Sync()
			emit(do(http.MethodGet, "/api/v1/sessions/"+req.ID+"/diagnosis", ""))
		case "udp-listen":
			l, err := listenCounting(req.Addr)
			if err != nil {
				emit(reply{Error: err.Error()})
				continue
			}
			listeners[l.pc.LocalAddr().String()] = l
			b, _ := json.Marshal(l.pc.LocalAddr().String())
			emit(reply{Status: http.StatusOK, Body: b})
		case "udp-count":
			counts := map[string]int64{}
			for a, l := range listeners {
				counts[a] = l.n.Load()
			}
			b, _ := json.Marshal(counts)
			emit(reply{Status: http.StatusOK, Body: b})
		default:
			emit(reply{Error: "unknown op " + req.Op})
		}
	}
	return nil
}

// publishConnected publishes the clip's VP8 and Opus from netw to the WHIP
// url, calls answered with the resource once the answer is in, and waits
// (clientWait) for the publisher to connect. problem says what failed;
// the resource is nil when WHIP did.
func publishConnected(ctx context.Context, t *testing.T, netw mediatest.Network, url string, answered func(*mediatest.Resource)) (*mediatest.Resource, string) {
	pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true, Network: netw})
	r, err := mediatest.Negotiate(ctx, nil, url, pub, nil)
	if err != nil {
		return nil, "whip: " + err.Error()
	}
	answered(r)
	pub.Start()
	wctx, wcancel := context.WithTimeout(ctx, clientWait)
	defer wcancel()
	if err := pub.WaitConnected(wctx); err != nil {
		return r, "publisher not connected: " + err.Error()
	}
	return r, ""
}

// clientMain publishes through the public address, then, if connected,
// watches the same room and counts decodable frames.
func clientMain(t *testing.T) clientResult {
	var res clientResult
	netw := mediatest.Network{AllowedIPs: []net.IP{net.ParseIP(clientIP)}}
	base := fmt.Sprintf("http://%s:%d", routerPubIP, httpPort)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	r, problem := publishConnected(ctx, t, netw, base+"/whip/nat", func(r *mediatest.Resource) {
		res.SessionID = path.Base(r.URL)
		emit(clientEvent{Session: res.SessionID, Role: "publisher"})
	})
	if r == nil || problem != "" {
		res.Error = problem
		return res
	}
	res.Connected = true

	vopts := mediatest.ViewerOptions{Network: netw}
	if *clientMode == "mismatch" {
		// Offers only H.264 video (and Opus): the publisher sends VP8.
		vopts = mediatest.ViewerOptions{Network: netw, VideoCodecs: []string{"h264"}, Audio: true, Video: true}
	}
	view := mediatest.NewViewer(t, vopts)
	vr, err := mediatest.Negotiate(ctx, nil, base+"/whep/nat", view, nil)
	if err != nil {
		res.Error = "whep: " + err.Error()
		return res
	}
	emit(clientEvent{Session: path.Base(vr.URL), Role: "viewer"})
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	err = view.WaitVideoFrames(fctx, 30)
	res.ViewerFrames = view.Stats().VideoFrames
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		res.Error = "viewer: " + err.Error()
	}
	return res
}

// countingListener counts the datagrams that reach a UDP socket: a
// stand-in for an internal service the tests check nothing reaches.
type countingListener struct {
	pc net.PacketConn
	n  atomic.Int64
}

func listenCounting(addr string) (*countingListener, error) {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, err
	}
	l := &countingListener{pc: pc}
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			l.n.Add(1)
		}
	}()
	return l, nil
}

// relay accepts TCP on from and copies each connection to a new one to to,
// as frpc does on the box: pinhole sees every client come from loopback.
func relay(from, to string) (stop func(), err error) {
	ln, err := net.Listen("tcp", from)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return func() { _ = ln.Close() }, nil
}
