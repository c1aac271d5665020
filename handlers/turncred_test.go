package handlers_test

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
)

// startRESTTURN runs a pion/turn server on loopback that takes TURN REST
// API credentials made with secret (what coturn's use-auth-secret does).
func startRESTTURN(t *testing.T, secret string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:       "pinhole.test",
		AuthHandler: turn.LongTermTURNRESTAuthHandler(secret, nil),
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return pc.LocalAddr().String()
}

// linkCredentials returns the username and credential of the Link header
// naming url.
func linkCredentials(t *testing.T, links []string, url string) (user, cred string) {
	t.Helper()
	for _, l := range links {
		if !strings.HasPrefix(l, "<"+url+">") {
			continue
		}
		for _, p := range strings.Split(l, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "username":
				user = v
			case "credential":
				cred = v
			}
		}
	}
	return user, cred
}

// With --turn-secret, every client allowed into a room gets time-limited
// TURN credentials of its own in the WHIP answer's Link headers: a real
// TURN server with the same secret allocates with them, and refuses them
// once they expired. Static credentials are not handed out unless the
// operator says so.
func TestTURNRESTCredentials(t *testing.T) {
	const secret = "turn-shared-secret-0123"
	turnAddr := startRESTTURN(t, secret)
	url := "turn:" + turnAddr + "?transport=udp"
	e := newEnv(t, withConfig(func(c *handlers.Config) {
		c.ICEServers = []api.ICEServer{{URL: url}, {URL: "turn:static.example.org:3478", Username: "ops", Credential: "static-secret"}}
		c.TURNSecret, c.TURNTTL = secret, 3*time.Second
	}))
	offer, err := os.ReadFile("testdata/offers/obs-whip.sdp")
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.do("POST", "/whip/turned", string(offer), "Content-Type", "application/sdp")
	if resp.StatusCode != 201 {
		t.Fatalf("WHIP: %d %s", resp.StatusCode, body)
	}
	links := resp.Header.Values("Link")
	if strings.Contains(strings.Join(links, " "), "static-secret") || strings.Contains(strings.Join(links, " "), "static.example.org") {
		t.Errorf("static TURN credentials handed out without --share-ice-credentials: %v", links)
	}
	user, cred := linkCredentials(t, links, url)
	pub := resp.Header.Get(handlers.ParticipantIDHeader)
	if cred == "" || !strings.HasSuffix(user, ":"+pub) {
		t.Fatalf("no REST credential for the session (participant %s) in %v", pub, links)
	}
	policy := &media.AddrPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	res := media.ProbeTURN(testCtx(t), media.TURNProbe{URL: url, Username: user, Credential: cred, Policy: policy, Timeout: 5 * time.Second})
	if !res.Allocated {
		t.Fatalf("the TURN server refused fresh credentials: %+v", res)
	}
	if res := media.ProbeTURN(testCtx(t), media.TURNProbe{URL: url, Username: user, Credential: cred + "x", Policy: policy, Timeout: 5 * time.Second}); res.Allocated {
		t.Fatalf("a forged credential was accepted: %+v", res)
	}
	// The expiry is in the username, in whole seconds: wait past it.
	time.Sleep(4500 * time.Millisecond)
	res = media.ProbeTURN(testCtx(t), media.TURNProbe{URL: url, Username: user, Credential: cred, Policy: policy, Timeout: 5 * time.Second})
	if res.Allocated || res.Class != media.ProbeAuthRefused {
		t.Fatalf("expired credentials: %+v", res)
	}
}
