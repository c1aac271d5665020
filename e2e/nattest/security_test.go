package nattest

// TestSecurity attacks pinhole as a stranger on the internet would: the
// attacker is the client namespace (203.0.113.2), pinhole the host behind
// the router (198.51.100.2, its HTTP port forwarded as 203.0.113.1:8080),
// with the defaults of main (an admin token, the API not open). The
// attacker speaks plain HTTP with curl from its namespace; the server
// helper opens counting UDP listeners on its own loopback and address,
// standing in for the box's internal services, so the tests can show that
// no packet reached them.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
)

// curlFrom sends one HTTP request from namespace ns and returns the
// answer (status, headers, body). header is name, value pairs.
func curlFrom(t *testing.T, ns, method, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	args := []string{"netns", "exec", ns, "curl", "-s", "-i", "--max-time", "15", "-X", method, "-H", "Expect:"}
	for i := 0; i+1 < len(header); i += 2 {
		args = append(args, "-H", header[i]+": "+header[i+1])
	}
	if body != "" {
		args = append(args, "--data-binary", "@-")
	}
	cmd := exec.Command("ip", append(args, url)...)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v", method, url, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(out))), nil)
	if err != nil {
		t.Fatalf("curl %s %s: answer: %v: %q", method, url, err, out)
	}
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	_ = resp.Body.Close()
	return resp, b.String()
}

// curlPatient is curlFrom that, on 429, waits the Retry-After it was
// given and tries again (at most five times), as a well-behaved client.
func curlPatient(t *testing.T, ns, method, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	for range 5 {
		resp, b := curlFrom(t, ns, method, url, body, header...)
		if resp.StatusCode != http.StatusTooManyRequests {
			return resp, b
		}
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		time.Sleep(time.Duration(max(secs, 1)) * time.Second)
	}
	return curlFrom(t, ns, method, url, body, header...)
}

// public is pinhole's address as the attacker reaches it.
var public = fmt.Sprintf("http://%s:%d", routerPubIP, httpPort)

// udpListen opens a counting UDP listener in the server's namespace.
func udpListen(t *testing.T, s *serverProc, addr string) string {
	t.Helper()
	var got string
	s.call(t, request{Op: "udp-listen", Addr: addr}, &got)
	return got
}

// udpCounts returns how many datagrams each listener received.
func udpCounts(t *testing.T, s *serverProc) map[string]int64 {
	t.Helper()
	var got map[string]int64
	s.call(t, request{Op: "udp-count"}, &got)
	return got
}

// offerWithCandidates is the canned OBS offer with its candidates replaced
// by cands ("ip port" pairs).
func offerWithCandidates(t *testing.T, cands ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../handlers/testdata/offers/obs-whip.sdp")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for line := range strings.Lines(strings.ReplaceAll(string(b), "\r\n", "\n")) {
		if strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		if strings.HasPrefix(line, "a=end-of-candidates") {
			for i, c := range cands {
				f := strings.Fields(c)
				fmt.Fprintf(&out, "a=candidate:%d 1 UDP %d %s %s typ host\r\n", i+1, 2122317823-i, f[0], f[1])
			}
		}
		out.WriteString(strings.TrimRight(line, "\n") + "\r\n")
	}
	return out.String()
}

func TestSecurity(t *testing.T) {
	fw, bin := namespaceTest(t)
	admin := []string{"Authorization", "Bearer " + testAdminToken}
	jsonCT := []string{"Content-Type", "application/json"}
	sdpCT := []string{"Content-Type", "application/sdp"}

	tp := newTopology(t, fw, mapped)
	srv := startServer(t, tp, bin, mappedPorts)
	lo := udpListen(t, srv, "127.0.0.1:0")
	own := udpListen(t, srv, hostIP+":0")
	split := func(a string) string { return strings.Replace(a, ":", " ", 1) }

	t.Run("anonymous: no admin route, no probe, no listing", func(t *testing.T) {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/api/v1/sessions", ""},
			{"GET", "/api/v1/diagnostics", ""},
			{"GET", "/metrics", ""},
			{"POST", "/api/v1/diagnostics/stun", `{"url":"stun:` + lo + `"}`},
			{"POST", "/api/v1/diagnostics/turn", `{"url":"turn:` + lo + `","username":"a","credential":"b"}`},
			{"POST", "/api/v1/diagnostics/selftest", `{}`},
			{"POST", "/api/v1/rooms", `{"name":"mine"}`},
			{"DELETE", "/api/v1/rooms/studio", ""},
			{"DELETE", "/api/v1/sessions/0123456789abcdef0123456789abcdef", ""},
		} {
			resp, body := curlFrom(t, tp.client, c.method, public+c.path, c.body, jsonCT...)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "admin") {
				t.Errorf("anonymous %s %s: %d %s", c.method, c.path, resp.StatusCode, body)
			}
		}
	})

	t.Run("session ids, URLs and addresses are the owner's and the admin's", func(t *testing.T) {
		resp, body := curlFrom(t, tp.client, "POST", public+"/whip/studio", offerWithCandidates(t, clientIP+" 40000"), sdpCT...)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("WHIP: %d %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		id := loc[strings.LastIndex(loc, "/")+1:]
		pub := resp.Header.Get("Pinhole-Participant-Id")
		if pub == "" || strings.Contains(id, pub) {
			t.Fatalf("participant id %q for session %s", pub, id)
		}
		for _, path := range []string{"/api/v1/rooms/studio/participants", "/api/v1/ports", "/api/v1/rooms", "/api/v1/rooms/studio"} {
			resp, body := curlFrom(t, tp.client, "GET", public+path, "")
			if resp.StatusCode != http.StatusOK || strings.Contains(body, id) || strings.Contains(body, loc) || strings.Contains(body, clientIP) {
				t.Errorf("anonymous GET %s: %d, shows the session's id, URL or address: %s", path, resp.StatusCode, body)
			}
			if path == "/api/v1/rooms/studio/participants" && !strings.Contains(body, pub) {
				t.Errorf("participants lack the public id %s: %s", pub, body)
			}
		}
		// The owner reads its own diagnosis; a guessed id is 404, as are
		// PATCH and DELETE of a guessed URL.
		if resp, body := curlFrom(t, tp.client, "GET", public+"/api/v1/sessions/"+id+"/diagnosis", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("own diagnosis: %d %s", resp.StatusCode, body)
		}
		guess := "0123456789abcdef0123456789abcdef"
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/v1/sessions/" + guess + "/diagnosis"},
			{"GET", "/api/v1/sessions/" + guess},
			{"DELETE", "/whip/studio/" + guess},
			{"PATCH", "/whip/studio/" + guess},
		} {
			resp, body := curlFrom(t, tp.client, c.method, public+c.path, "a=end-of-candidates\r\n",
				"Content-Type", api.SDPFragContentType, "If-Match", "*")
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s (guessed): %d %s", c.method, c.path, resp.StatusCode, body)
			}
		}
		if resp, body := curlFrom(t, tp.client, "GET", public+"/api/v1/sessions", "", admin...); resp.StatusCode != http.StatusOK || !strings.Contains(body, id) {
			t.Errorf("the admin's session list: %d %s", resp.StatusCode, body)
		}
		if resp, _ := curlFrom(t, tp.client, "DELETE", public+loc, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("DELETE of its own URL: %d", resp.StatusCode)
		}
	})

	t.Run("candidates naming the box are never dialed", func(t *testing.T) {
		// The offer and a trickle name the server's loopback and its own
		// address; the attacker is not on the box, so neither is used.
		offer := offerWithCandidates(t, split(lo), split(own))
		resp, body := curlFrom(t, tp.client, "POST", public+"/whip/reflect", offer, sdpCT...)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("WHIP: %d %s", resp.StatusCode, body)
		}
		loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
		frag := fmt.Sprintf("a=ice-ufrag:nxcM\r\na=ice-pwd:ezjAjgSSLLvbRhUA1zc6Se\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"+
			"a=candidate:9 1 UDP 2122317000 127.0.0.1 %s typ host\r\na=candidate:10 1 UDP 2122316999 %s %s typ host\r\n",
			strings.Split(lo, ":")[1], hostIP, strings.Split(own, ":")[1])
		resp, body = curlFrom(t, tp.client, "PATCH", public+loc, frag, "Content-Type", api.SDPFragContentType, "If-Match", etag)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("trickle: %d %s", resp.StatusCode, body)
		}
		// pinhole checks a candidate within milliseconds of learning it;
		// three seconds is far beyond that.
		time.Sleep(3 * time.Second)
		counts := udpCounts(t, srv)
		if counts[lo] != 0 || counts[own] != 0 {
			t.Fatalf("pinhole sent to the box's own services: %v", counts)
		}
		_, _ = curlFrom(t, tp.client, "DELETE", public+loc, "")
	})

	t.Run("the admin's probes are not a scanner", func(t *testing.T) {
		for _, target := range []string{lo, own, "10.1.2.3:3478", "169.254.169.254:80", "100.64.0.1:3478"} {
			resp, body := curlPatient(t, tp.client, "POST", public+"/api/v1/diagnostics/stun", `{"url":"stun:`+target+`","timeout_ms":1000}`, append(admin, jsonCT...)...)
			var res api.STUNProbeResult
			_ = json.Unmarshal([]byte(body), &res)
			if resp.StatusCode != http.StatusOK || res.Class != "refused-destination" || res.Reachable || !strings.Contains(res.Fix, "--probe-allow") {
				t.Errorf("probe of %s: %d %s", target, resp.StatusCode, body)
			}
			if strings.Contains(body, "connection refused") || strings.Contains(body, "x509") {
				t.Errorf("probe of %s answers a raw error: %s", target, body)
			}
		}
		if counts := udpCounts(t, srv); counts[lo] != 0 || counts[own] != 0 {
			t.Fatalf("a refused probe sent packets: %v", counts)
		}
	})

	t.Run("junk leaves no room behind", func(t *testing.T) {
		for i := range 30 {
			body, ct := "v=0\r\njunk\r\n", sdpCT
			switch i % 3 {
			case 1:
				body = "" // empty offer
			case 2:
				ct = []string{"Content-Type", "text/plain"}
			}
			resp, _ := curlFrom(t, tp.client, "POST", fmt.Sprintf("%s/whip/junk-%d", public, i), body, ct...)
			if resp.StatusCode < 400 {
				t.Fatalf("junk POST %d answered %d", i, resp.StatusCode)
			}
		}
		_, body := curlFrom(t, tp.client, "GET", public+"/api/v1/rooms", "")
		if strings.Contains(body, "junk-") {
			t.Fatalf("junk left rooms: %s", body)
		}
		// And the admin can still make rooms: junk counted against
		// --max-rooms for nothing.
		if resp, body := curlFrom(t, tp.client, "POST", public+"/api/v1/rooms", `{"name":"after-junk"}`, append(admin, jsonCT...)...); resp.StatusCode != http.StatusCreated {
			t.Fatalf("room after junk: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("probes are allowed where --probe-allow says", func(t *testing.T) {
		tp := newTopology(t, fw, mapped)
		srv := startServer(t, tp, bin, mappedPorts, "-nattest.probe-allow=127.0.0.0/8")
		lo := udpListen(t, srv, "127.0.0.1:0")
		resp, body := curlFrom(t, tp.client, "POST", public+"/api/v1/diagnostics/stun", `{"url":"stun:`+lo+`","timeout_ms":1000}`, append(admin, jsonCT...)...)
		var res api.STUNProbeResult
		_ = json.Unmarshal([]byte(body), &res)
		if resp.StatusCode != http.StatusOK || res.Class == "refused-destination" {
			t.Fatalf("allowed probe: %d %s", resp.StatusCode, body)
		}
		if n := udpCounts(t, srv)[lo]; n == 0 {
			t.Fatalf("the allowed probe sent nothing to %s (%s)", lo, body)
		}
	})

	t.Run("behind a TCP relay from loopback, a stranger is still anonymous", func(t *testing.T) {
		tp := newTopology(t, fw, mapped)
		_ = startServer(t, tp, bin, mappedPorts, "-nattest.behind-relay")
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/api/v1/sessions", ""},
			{"POST", "/api/v1/diagnostics/stun", `{"url":"stun:127.0.0.1:3478"}`},
			{"POST", "/api/v1/diagnostics/selftest", `{}`},
			{"POST", "/api/v1/rooms", `{"name":"mine"}`},
		} {
			resp, body := curlFrom(t, tp.client, c.method, public+c.path, c.body, jsonCT...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("through the relay, %s %s: %d %s", c.method, c.path, resp.StatusCode, body)
			}
		}
		if resp, body := curlFrom(t, tp.client, "GET", public+"/api/v1/rooms", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("the relay does not reach pinhole: %d %s", resp.StatusCode, body)
		}
	})
}
