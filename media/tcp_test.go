package media_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// tcpFixture is an engine serving ICE-TCP on a loopback port shared, through
// edge.Demux, with an HTTP server and an HTTPS one.
type tcpFixture struct {
	*fixture
	addr string // 127.0.0.1:port of the shared listener
	cert *x509.CertPool
}

func newTCPEngine(t *testing.T, n, publicPort int) *tcpFixture {
	t.Helper()
	f := newEngine(t, n, nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := edge.Demux(ln, edge.DemuxConfig{})
	t.Cleanup(func() { _ = d.Close() })
	if err := f.e.ServeICETCP(d.Listener(edge.ProtoICE), publicPort); err != nil {
		t.Fatal(err)
	}
	cert, err := edge.NewSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pinhole over "+map[bool]string{true: "https", false: "http"}[r.TLS != nil])
	})
	plain := &http.Server{Handler: hello, ReadHeaderTimeout: 5 * time.Second}
	secure := &http.Server{Handler: hello, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = plain.Serve(d.Listener(edge.ProtoHTTP)) }()
	go func() {
		_ = secure.Serve(tls.NewListener(d.Listener(edge.ProtoTLS), edge.TLSConfig(cert.GetCertificate)))
	}()
	t.Cleanup(func() { _ = plain.Close(); _ = secure.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(cert.Certificate.Leaf)
	return &tcpFixture{fixture: f, addr: ln.Addr().String(), cert: pool}
}

// transportOf waits for the session's "transport" timeline event.
func (f *tcpFixture) transportOf(t *testing.T, id string) string {
	t.Helper()
	ev := f.rec.waitFor(t, "transport of "+id, func(ev media.Event) bool {
		return ev.SessionID == id && ev.Kind == media.EventTimeline && ev.Name == "transport"
	})
	return ev.Detail
}

func tcpCandidates(sdp string) []string {
	var out []string
	for _, c := range strings.Split(sdp, "\n") {
		// Component 1 only: Pion repeats each candidate as component 2.
		if f := strings.Fields(c); len(f) > 2 && strings.HasPrefix(c, "a=candidate:") && f[1] == "1" && strings.EqualFold(f[2], "tcp") {
			out = append(out, strings.TrimSpace(c))
		}
	}
	return out
}

// A client whose network lets no UDP out publishes and views over ICE-TCP
// on the shared port; with UDP it uses UDP although the TCP candidate is
// there. HTTP and HTTPS keep working on the same port throughout.
func TestICETCPFallback(t *testing.T) {
	base := leakcheck.Take(t)
	t.Run("no UDP: media over TCP", func(t *testing.T) {
		f := newTCPEngine(t, 4, 0)
		_, port, _ := net.SplitHostPort(f.addr)
		tcpOnly := mediatest.Network{ICETCP: true, NoUDP: true}
		_, pubID, pans := f.publish(t, "tcp", mediatest.PublisherOptions{Video: "vp8", Audio: true, Network: tcpOnly})
		cands := tcpCandidates(pans.SDP)
		if len(cands) != 1 || !strings.Contains(cands[0], "127.0.0.1 "+port+" typ host tcptype passive") {
			t.Fatalf("answer TCP candidates %q, want one 127.0.0.1 %s passive", cands, port)
		}
		v, viewID, _ := f.watch(t, "tcp", "", mediatest.ViewerOptions{Network: tcpOnly})
		waitMedia(t, v, 30, 50)
		for _, id := range []string{pubID, viewID} {
			if tr := f.transportOf(t, id); tr != "tcp" {
				t.Fatalf("session %s transport %q, want tcp", id, tr)
			}
			f.rec.waitFor(t, "tcp-fallback note", func(ev media.Event) bool {
				return ev.SessionID == id && ev.Name == "tcp-fallback" && strings.Contains(ev.Detail, "no UDP packet ever reached")
			})
		}
		held := map[string]string{}
		for _, p := range f.e.Ports() {
			for _, h := range p.Holders {
				held[h.SessionID] = h.Transport
			}
		}
		if held[pubID] != "tcp" || held[viewID] != "tcp" {
			t.Fatalf("port holders' transports %v", held)
		}
		if st := f.e.ICETCP(); st.Admitted < 2 {
			t.Fatalf("ICE-TCP stats %+v", st)
		}
		f.checkHTTP(t)
	})
	t.Run("UDP open: media over UDP", func(t *testing.T) {
		f := newTCPEngine(t, 4, 0)
		both := mediatest.Network{ICETCP: true}
		_, pubID, pans := f.publish(t, "udp", mediatest.PublisherOptions{Video: "vp8", Audio: true, Network: both})
		if len(tcpCandidates(pans.SDP)) != 1 {
			t.Fatalf("no TCP candidate in the answer:\n%s", pans.SDP)
		}
		v, viewID, _ := f.watch(t, "udp", "", mediatest.ViewerOptions{Network: both})
		waitMedia(t, v, 30, 50)
		for _, id := range []string{pubID, viewID} {
			if tr := f.transportOf(t, id); tr != "udp" {
				t.Fatalf("session %s transport %q, want udp", id, tr)
			}
		}
	})
	leakcheck.Settle(t, base, 20*time.Second)
}

// The answer advertises the public TCP port, with a priority below every
// UDP candidate of the answer.
func TestICETCPAnswerCandidate(t *testing.T) {
	f := newTCPEngine(t, 2, 18443)
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Network: mediatest.Network{ICETCP: true}})
	_, ans := f.negotiate(t, "cand", p)
	tcp := tcpCandidates(ans.SDP)
	if len(tcp) != 1 || !strings.Contains(tcp[0], "127.0.0.1 18443 typ host tcptype passive") {
		t.Fatalf("TCP candidates %q, want 127.0.0.1 18443 passive", tcp)
	}
	prio := func(c string) uint64 {
		n, err := strconv.ParseUint(strings.Fields(c)[3], 10, 32)
		if err != nil {
			t.Fatalf("priority of %q: %v", c, err)
		}
		return n
	}
	tp := prio(tcp[0])
	udp := 0
	for _, l := range strings.Split(ans.SDP, "\n") {
		if strings.HasPrefix(l, "a=candidate:") && strings.Contains(strings.ToLower(l), " udp ") {
			udp++
			if up := prio(l); up <= tp {
				t.Fatalf("UDP candidate priority %d not above TCP's %d", up, tp)
			}
		}
	}
	if udp == 0 {
		t.Fatal("no UDP candidate")
	}
}

// checkHTTP gets a page over HTTP and over HTTPS from the shared port.
func (f *tcpFixture) checkHTTP(t *testing.T) {
	t.Helper()
	for _, scheme := range []string{"http", "https"} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.cert}}
		c := &http.Client{Transport: tr, Timeout: wait}
		resp, err := c.Get(fmt.Sprintf("%s://%s/", scheme, f.addr))
		if err != nil {
			t.Fatalf("%s: %v", scheme, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if want := "pinhole over " + scheme; string(b) != want {
			t.Fatalf("%s: %q, want %q", scheme, b, want)
		}
	}
}
