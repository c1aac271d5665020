package nattest

// The TCP fallback test (issue 12) reuses the NAT test's namespaces with a
// router that forwards one TCP port the way FRP or a home router does for
// the HTTP API: public 203.0.113.1:18443 to the host's 8080, another number
// on purpose. In the first case it forwards nothing else and drops every
// UDP packet from the client, a network that lets no UDP out: the clients
// (Pion, ICE-TCP active as browsers are) must publish and view over the one
// TCP port. In the second the UDP mapping is there as well, and the same
// clients must use UDP.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os/exec"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/server"
)

// publicTCPPort is the router's public port for the host's HTTP port.
const publicTCPPort = 18443

var iceTCPPort = flag.Int("nattest.ice-tcp-public-port", 0, "internal: serve ICE-TCP on the HTTP port, advertised at this public port")

// serveICETCP puts edge.Demux in front of the server helper's HTTP
// listener, as main does, when the parent asked for ICE-TCP.
func serveICETCP(pin *server.Server, ln net.Listener) (net.Listener, error) {
	if *iceTCPPort == 0 {
		return ln, nil
	}
	d := edge.Demux(ln, edge.DemuxConfig{Protocols: []edge.Protocol{edge.ProtoHTTP, edge.ProtoICE}})
	if err := pin.Engine.ServeICETCP(d.Listener(edge.ProtoICE), *iceTCPPort); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d.Listener(edge.ProtoHTTP), nil
}

// tcpForward adds the router's TCP forward of public 18443 to the host's
// 8080, and with blockUDP a drop of every UDP packet from the client side.
func (tp *topology) tcpForward(t *testing.T, blockUDP bool) {
	t.Helper()
	pub := "rc" + strings.TrimSuffix(strings.TrimPrefix(tp.router, "ph"), "r")
	var b strings.Builder
	fmt.Fprintf(&b, "table ip pinhole_tcp {\n chain prerouting_nat {\n  type nat hook prerouting priority dstnat - 1; policy accept;\n")
	fmt.Fprintf(&b, "  iifname %q tcp dport %d dnat to %s:%d\n }\n", pub, publicTCPPort, hostIP, httpPort)
	if blockUDP {
		// Before the NAT test's own filter, and in prerouting too, so no
		// UDP from the client reaches even the router's conntrack.
		fmt.Fprintf(&b, " chain prerouting_drop {\n  type filter hook prerouting priority raw; policy accept;\n")
		fmt.Fprintf(&b, "  iifname %q meta l4proto udp drop\n }\n", pub)
	}
	fmt.Fprintf(&b, "}\n")
	cmd := exec.Command("ip", "netns", "exec", tp.router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\n%s", err, out, b.String())
	}
}

// tcpClientResult is what the TCP client helper saw.
type tcpClientResult struct {
	PublisherID  string   `json:"publisher_id"`
	ViewerID     string   `json:"viewer_id"`
	AnswerTCP    []string `json:"answer_tcp"` // the publisher answer's TCP candidates
	Connected    bool     `json:"connected"`
	ViewerFrames uint64   `json:"viewer_frames"`
	Error        string   `json:"error,omitempty"`
}

func TestTCPFallback(t *testing.T) {
	fw, bin := namespaceTest(t)
	if fw != fwNFT {
		t.Skip("the TCP fallback test writes nftables rules; nft is missing")
	}
	for _, tc := range []struct {
		name     string
		m        mapping
		blockUDP bool
		want     string
	}{
		{"only TCP forwarded, client UDP dropped: media over TCP", noMapping, true, "tcp"},
		{"UDP forwarded too: media over UDP", mapped, false, "udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := newTopology(t, fw, tc.m)
			topo.tcpForward(t, tc.blockUDP)
			srv := startServer(t, topo, bin, mappedPorts, fmt.Sprintf("-nattest.ice-tcp-public-port=%d", publicTCPPort))
			res := runTCPClient(t, topo, bin)
			if !res.Connected || res.ViewerFrames == 0 {
				t.Fatalf("media did not flow: %+v", res)
			}
			want := fmt.Sprintf("%s %d typ host tcptype passive", routerPubIP, publicTCPPort)
			if len(res.AnswerTCP) == 0 || !strings.Contains(res.AnswerTCP[0], want) {
				t.Fatalf("answer TCP candidates %q, want %q", res.AnswerTCP, want)
			}
			for _, id := range []string{res.PublisherID, res.ViewerID} {
				d := diagnose(t, srv, id, false)
				got := timelineDetail(d, "transport")
				if got != tc.want {
					t.Fatalf("session %s (%s) transport %q, want %q; timeline %+v", id, d.Role, got, tc.want, d.Timeline)
				}
				if tc.want == "tcp" {
					note := timelineDetail(d, "tcp-fallback")
					if !strings.Contains(note, "no UDP packet ever reached") {
						t.Fatalf("tcp-fallback note %q", note)
					}
					t.Logf("%s: %s", d.Role, note)
					if d.Verdict.Status != api.StatusOK || !strings.Contains(d.Verdict.Summary, "media flowed over TCP") || !strings.Contains(d.Verdict.Fix, "forward UDP") {
						t.Fatalf("verdict %+v, want ok over TCP with a fix", d.Verdict)
					}
				}
				t.Logf("%s %s: transport %s, selected %s, verdict %s", d.Role, id, got, d.Selected, d.Verdict.Summary)
			}
		})
	}
}

// decodeLast decodes the last protocol line of a helper's stdout into v.
func decodeLast(out []byte, v any) bool {
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if l, ok := strings.CutPrefix(line, protoPrefix); ok {
			found = json.Unmarshal([]byte(l), v) == nil
		}
	}
	return found
}

func timelineDetail(d api.Diagnosis, kind string) string {
	for _, e := range d.Timeline {
		if e.Kind == kind {
			return e.Detail
		}
	}
	return ""
}

func runTCPClient(t *testing.T, tp *topology, bin string) tcpClientResult {
	t.Helper()
	var res tcpClientResult
	stderr := runHelperClient(t, tp, bin, "tcpclient", &res)
	if res.Error != "" {
		t.Logf("client stderr:\n%s", lastLines(stderr, 40))
	}
	t.Logf("client: %+v", res)
	return res
}

// runHelperClient runs the helper in mode in the client namespace, decodes
// its last result line into res and returns its stderr; a helper that
// printed no result fails the test.
func runHelperClient(t *testing.T, tp *topology, bin, mode string, res any) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := helperCmd(ctx, tp.client, bin, mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if !decodeLast(out, res) {
		t.Fatalf("client helper: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	return stderr.Bytes()
}

// tcpClientMain publishes and views through the public TCP port with
// ICE-TCP on (UDP too: the router decides what passes).
func tcpClientMain(t *testing.T) tcpClientResult {
	var res tcpClientResult
	netw := mediatest.Network{AllowedIPs: []net.IP{net.ParseIP(clientIP)}, ICETCP: true}
	base := fmt.Sprintf("http://%s:%d", routerPubIP, publicTCPPort)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	r, problem := publishConnected(ctx, t, netw, base+"/whip/tcp", func(r *mediatest.Resource) {
		res.PublisherID = path.Base(r.URL)
		for _, l := range strings.Split(r.Answer, "\n") {
			if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(l, "a=candidate:") && f[1] == "1" && strings.EqualFold(f[2], "tcp") {
				res.AnswerTCP = append(res.AnswerTCP, strings.TrimSpace(l))
			}
		}
	})
	if r == nil || problem != "" {
		res.Error = problem
		return res
	}
	res.Connected = true
	view := mediatest.NewViewer(t, mediatest.ViewerOptions{Network: netw})
	vr, err := mediatest.Negotiate(ctx, nil, base+"/whep/tcp", view, nil)
	if err != nil {
		res.Error = "whep: " + err.Error()
		return res
	}
	res.ViewerID = path.Base(vr.URL)
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	err = view.WaitVideoFrames(fctx, 30)
	res.ViewerFrames = view.Stats().VideoFrames
	if err != nil {
		res.Error = "viewer: " + err.Error()
	}
	return res
}
