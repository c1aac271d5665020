package nattest

// The ICE-TCP test with a real browser (issue 12): the TCP fallback
// topology of tcp_test.go (the router forwards only TCP 203.0.113.1:18443
// to the host's 8080 and drops every UDP packet from the client), with the
// pinhole binary itself in the host namespace, as people run it (main's
// flags, listen and demux wiring), a Pion publisher in the client namespace
// publishing over ICE-TCP, and Debian's Chromium in the client namespace
// opening the web app's room page at the public address. Chromium gathers
// active TCP candidates as browsers do; the page's player must decode
// frames and its selected candidate pair must be TCP. The browser half is
// web/test/tcp.test.mjs (playwright-core from web/test/node_modules, which
// `make setup` installs).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// chromiumRoom is the room the Pion publisher and the browser meet in.
const chromiumRoom = "tcp-browser"

// browserResult is tcp.test.mjs's RESULT line.
type browserResult struct {
	Frames int `json:"frames"`
	Pairs  []struct {
		Connection string `json:"connection"`
		Local      struct {
			Protocol, Type, TCPType string
		} `json:"local"`
		Remote struct {
			Protocol, Type, TCPType, Address string
			Port                             int
		} `json:"remote"`
	} `json:"pairs"`
}

func TestTCPChromium(t *testing.T) {
	fw, bin := namespaceTest(t)
	if fw != fwNFT {
		t.Skip("the TCP fallback test writes nftables rules; nft is missing")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	webTest := filepath.Join(root, "web", "test")
	for _, need := range []string{"/usr/bin/chromium", filepath.Join(webTest, "node_modules", "playwright-core", "package.json")} {
		if _, err := os.Stat(need); err != nil {
			fmt.Fprintf(os.Stderr, "\n*** TCP BROWSER TEST SKIPPED: %s missing (make setup installs it) ***\n\n", need)
			t.Skipf("TCP BROWSER TEST SKIPPED: %s missing (make setup installs chromium and web/test/node_modules)", need)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("TCP BROWSER TEST SKIPPED: node missing")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("TCP BROWSER TEST SKIPPED: go missing (the test builds the pinhole binary)")
	}
	tmp := t.TempDir()
	pinhole := filepath.Join(tmp, "pinhole")
	build := exec.Command(goBin, "build", "-o", pinhole, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	topo := newTopology(t, fw, noMapping)
	topo.tcpForward(t, true)
	logPath := startPinhole(t, topo, pinhole, tmp)

	pub := startTCPPublisher(t, topo, bin)
	t.Logf("publisher %s connected over ICE-TCP", pub.session)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", topo.client, "env",
		"PINHOLE_URL="+fmt.Sprintf("http://%s:%d", routerPubIP, publicTCPPort), "PINHOLE_ROOM="+chromiumRoom,
		"HOME="+tmp, node, filepath.Join(webTest, "tcp.test.mjs"))
	cmd.WaitDelay = 10 * time.Second // ip netns exec becomes env, then node: the PID is node's
	out, err := cmd.CombinedOutput()
	t.Logf("tcp.test.mjs:\n%s", lastLines(out, 40))
	if err != nil {
		logTail(t, logPath)
		t.Fatalf("tcp.test.mjs: %v", err)
	}
	var res browserResult
	for _, line := range strings.Split(string(out), "\n") {
		if l, ok := strings.CutPrefix(line, "RESULT "); ok {
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatalf("RESULT line: %v: %s", err, l)
			}
		}
	}
	if res.Frames == 0 || len(res.Pairs) == 0 {
		t.Fatalf("browser: %+v", res)
	}
	for _, p := range res.Pairs {
		if p.Local.Protocol != "tcp" || p.Remote.Protocol != "tcp" || p.Remote.Port != publicTCPPort {
			t.Fatalf("selected pair %+v, want TCP to %s:%d", p, routerPubIP, publicTCPPort)
		}
	}

	// pinhole's own account: both sessions over TCP in /metrics.
	var m string
	pub.call(t, "metrics", &m)
	want := `pinhole_sessions_by_transport_total{transport="tcp"} 2`
	if !strings.Contains(m, want) {
		t.Fatalf("/metrics lacks %q:\n%s", want, grepLines(m, "transport"))
	}
	t.Logf("%d frames decoded in Chromium over ICE-TCP; %s", res.Frames, want)
}

// startPinhole runs the pinhole binary in the host namespace: UDP ports
// advertised at the public address (the router forwards none of them) and
// ICE-TCP on the HTTP port, public 18443. It returns the log's path once
// pinhole listens; the process is stopped, by its PID, at cleanup.
func startPinhole(t *testing.T, tp *topology, pinhole, dir string) string {
	t.Helper()
	logPath := filepath.Join(dir, "pinhole.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", tp.host, pinhole,
		"--http-addr", fmt.Sprintf("%s:%d", hostIP, httpPort),
		"--udp-ports", "10111-10115", "--public-ports", "20111-20115",
		"--public-ip", routerPubIP, "--public-http-port", fmt.Sprint(publicTCPPort),
		"--admin-token", testAdminToken, "--state-dir", filepath.Join(dir, "state"),
		"--setup-timeout", setupTimeout.String())
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// ip netns exec replaced itself with pinhole: this PID is pinhole's.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = lf.Close()
		if t.Failed() {
			logTail(t, logPath)
		}
	})
	for i := 0; i < 300; i++ { // 30 s: pinhole starts in milliseconds
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("pinhole listening")) {
			if !bytes.Contains(b, []byte("ice-tcp on the http port")) {
				t.Fatalf("pinhole serves no ICE-TCP:\n%s", b)
			}
			return logPath
		}
		select {
		case <-done:
			t.Fatalf("pinhole exited:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("pinhole did not start:\n%s", lastLines(mustRead(logPath), 20))
	return ""
}

func mustRead(p string) []byte { b, _ := os.ReadFile(p); return b }

func logTail(t *testing.T, p string) {
	t.Helper()
	t.Logf("pinhole.log:\n%s", lastLines(mustRead(p), 40))
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// tcpPublisher is the Pion publisher helper in the client namespace; it
// publishes until the test ends, and fetches pinhole's /metrics on request
// (the parent cannot reach the namespaces' addresses).
type tcpPublisher struct {
	*helperProc
	session string
}

func startTCPPublisher(t *testing.T, tp *topology, bin string) *tcpPublisher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := helperCmd(ctx, tp.client, bin, "tcppublisher")
	p := &tcpPublisher{helperProc: startHelper(t, "publisher", cmd, cancel, 15*time.Second)}
	var r struct {
		Session string `json:"session"`
		Error   string `json:"error"`
	}
	if err := p.read(&r); err != nil || r.Error != "" {
		t.Fatalf("publisher: %v %s\n%s", err, r.Error, lastLines([]byte(p.logText()), 40))
	}
	p.session = r.Session
	return p
}

// call sends one command line to the publisher helper and decodes its
// answer's body into v.
func (p *tcpPublisher) call(t *testing.T, op string, v any) {
	t.Helper()
	if _, err := fmt.Fprintln(p.in, op); err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := p.read(&r); err != nil || r.Error != "" || r.Status != http.StatusOK {
		t.Fatalf("%s: %v %s: HTTP %d", op, err, r.Error, r.Status)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatal(err)
	}
}

// tcpPublisherMain publishes VP8 and Opus into chromiumRoom through the
// public TCP port, reports its session, then answers "metrics" commands
// until stdin closes.
func tcpPublisherMain(t *testing.T) {
	netw := mediatest.Network{AllowedIPs: []net.IP{net.ParseIP(clientIP)}, ICETCP: true}
	base := fmt.Sprintf("http://%s:%d", routerPubIP, publicTCPPort)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true, Network: netw})
	defer pub.Close()
	r, err := mediatest.Negotiate(ctx, nil, base+"/whip/"+chromiumRoom, pub, nil)
	if err != nil {
		emit(map[string]string{"error": "whip: " + err.Error()})
		return
	}
	pub.Start()
	wctx, wcancel := context.WithTimeout(ctx, clientWait)
	defer wcancel()
	if err := pub.WaitConnected(wctx); err != nil {
		emit(map[string]string{"error": "publisher not connected: " + err.Error()})
		return
	}
	emit(map[string]string{"session": path.Base(r.URL)})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "metrics":
			emit(adminGet(base + "/metrics"))
		default:
			emit(reply{Error: "unknown op " + in.Text()})
		}
	}
}

// adminGet GETs url with the admin token; a text body comes back as a
// JSON string.
func adminGet(url string) reply {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{Error: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reply{Error: err.Error()}
	}
	body, _ := json.Marshal(string(b))
	return reply{Status: resp.StatusCode, Body: body}
}
