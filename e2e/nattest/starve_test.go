package nattest

// The starvation test (issue 10) builds its own four namespaces:
//
//	attacker 203.0.113.66 --+
//	                        +-- bridge 203.0.113.1 router 198.51.100.1 --- 198.51.100.2 host (pinhole)
//	client   203.0.113.77 --+
//
// The router forwards as in nat_test.go (tp.rules, mapped: 5 UDP ports and
// TCP 8080, nothing else). pinhole runs with its defaults for the ports
// (--unproven-grace 1s, --setup-timeout 30s) and the per-address limits on.
// The attacker posts a dead WHEP offer (its client is gone) every 500 ms,
// well inside the per-address rate; once it has posted six, so that every
// port has been taken, a publisher and a viewer at the other address must
// be served, connect within 10 s, get media, and keep it while the attack
// goes on.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/server"
)

// starveRole is the helper flag of this test, apart from nat_test.go's.
var starveRole = flag.String("nattest.starve-role", "", "internal: run as the starvation test's server, attacker or client process")

const (
	attackerIP = "203.0.113.66"
	legitIP    = "203.0.113.77"
	// deadOffers at deadEvery: 12 s of attack, bounded.
	deadOffers = 24
	deadEvery  = 500 * time.Millisecond
	// served is the brief's promise: a client at another address is
	// served, and connected, within 10 s.
	served = 10 * time.Second
)

func TestDeadOffersBehindNAT(t *testing.T) {
	fw, bin := namespaceTest(t)
	tp := newStarveTopology(t, fw)

	srv := startStarveHelper(t, tp.host, bin, "server")
	var ready struct{ Ready bool }
	if err := srv.read(&ready); err != nil || !ready.Ready {
		t.Fatalf("server did not start: %v\n%s", err, srv.logText())
	}
	atk := startStarveHelper(t, tp.attacker, bin, "attacker")
	var started struct{ Started bool }
	if err := atk.read(&started); err != nil || !started.Started {
		t.Fatalf("attacker did not get going: %v\n%s", err, atk.logText())
	}
	cl := startStarveHelper(t, tp.client, bin, "client")
	var res legitResult
	if err := cl.read(&res); err != nil {
		t.Fatalf("client: %v\n%s", err, cl.logText())
	}
	var atkRes attackResult
	if err := atk.read(&atkRes); err != nil {
		t.Fatalf("attacker: %v\n%s", err, atk.logText())
	}
	t.Logf("attacker: %+v", atkRes)
	t.Logf("client: %+v", res)
	if res.Error != "" {
		t.Fatalf("the client at %s was not served while the attacker posted dead offers: %s\nserver log:\n%s",
			legitIP, res.Error, lastLines([]byte(srv.logText()), 30))
	}
	if !res.StillConnected || res.FramesAfter <= res.Frames {
		t.Fatalf("the client's sessions did not keep their media through the attack: %+v", res)
	}
	if atkRes.Answered == 0 {
		t.Fatalf("the attacker's offers were never answered: the test attacked nothing (%+v)", atkRes)
	}
	if !strings.Contains(srv.logText(), "preempting unproven session") {
		t.Fatal("no dead session was preempted")
	}
}

// starveTopology is the four namespaces; they are deleted when the test ends.
type starveTopology struct {
	topology
	attacker string
}

func newStarveTopology(t *testing.T, fw firewall) *starveTopology {
	t.Helper()
	topoSeq.Lock()
	topoSeq.n++
	tag := fmt.Sprintf("%dx%d", os.Getpid()%10000, topoSeq.n)
	topoSeq.Unlock()
	tp := &starveTopology{
		topology: topology{host: "ph" + tag + "h", router: "ph" + tag + "r", client: "ph" + tag + "l", fw: fw},
		attacker: "ph" + tag + "a",
	}
	addNamespaces(t, tp.host, tp.router, tp.client, tp.attacker)
	hv, rv1, br := "hv"+tag, "rh"+tag, "br"+tag
	runIn(t, tp.router, "ip", "link", "add", rv1, "type", "veth", "peer", "name", hv, "netns", tp.host)
	runIn(t, tp.router, "ip", "addr", "add", routerPrivIP+"/24", "dev", rv1)
	runIn(t, tp.router, "ip", "link", "set", rv1, "up")
	// The public side is a bridge, so both outside hosts share one subnet
	// and the router's rules name one interface.
	runIn(t, tp.router, "ip", "link", "add", br, "type", "bridge")
	runIn(t, tp.router, "ip", "addr", "add", routerPubIP+"/24", "dev", br)
	runIn(t, tp.router, "ip", "link", "set", br, "up")
	for i, out := range []struct{ ns, ip string }{{tp.attacker, attackerIP}, {tp.client, legitIP}} {
		ov, rv := fmt.Sprintf("o%d%s", i, tag), fmt.Sprintf("b%d%s", i, tag)
		runIn(t, tp.router, "ip", "link", "add", rv, "type", "veth", "peer", "name", ov, "netns", out.ns)
		runIn(t, tp.router, "ip", "link", "set", rv, "master", br)
		runIn(t, tp.router, "ip", "link", "set", rv, "up")
		runIn(t, out.ns, "ip", "addr", "add", out.ip+"/24", "dev", ov)
		runIn(t, out.ns, "ip", "link", "set", ov, "up")
	}
	runIn(t, tp.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	runIn(t, tp.host, "ip", "addr", "add", hostIP+"/24", "dev", hv)
	runIn(t, tp.host, "ip", "link", "set", hv, "up")
	runIn(t, tp.host, "ip", "route", "add", "default", "via", routerPrivIP)
	tp.rules(t, rv1, br, mapped, nil)
	return tp
}

// starveHelper is one helper process, read line by line.
type starveHelper = helperProc

// startStarveHelper starts this test binary in ns as the given helper; it
// ends when its stdin closes (at cleanup) or, bounded, when its context does.
func startStarveHelper(t *testing.T, ns, bin, which string) *starveHelper {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin,
		"-test.run=^TestStarveHelperProcess$", "-test.timeout=2m", "-nattest.starve-role="+which)
	// ip netns exec replaces itself with the binary: Kill on cancel stops
	// exactly the process started here.
	cmd.WaitDelay = 5 * time.Second
	return startHelper(t, which, cmd, cancel, 20*time.Second)
}

// TestStarveHelperProcess is the body of the helper processes; in a normal
// run it returns at once.
func TestStarveHelperProcess(t *testing.T) {
	switch *starveRole {
	case "server":
		if err := starveServe(); err != nil {
			t.Fatal(err)
		}
	case "attacker":
		emit(attack(t))
		waitStdin()
	case "client":
		emit(legit(t))
		waitStdin()
	}
}

// waitStdin returns when the parent closes the helper's stdin.
func waitStdin() { _, _ = io.Copy(io.Discard, os.Stdin) }

// starveServe runs pinhole as main builds it, with main's defaults for the
// ports and the limits, until stdin closes.
func starveServe() error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pin, err := server.New(server.Config{
		Logger: log,
		Media: media.Config{
			Ports: localPorts, PublicPorts: mappedPorts, PublicIPs: []string{routerPubIP}, PeersPerPort: 1,
			SetupTimeout:       30 * time.Second,
			IdleTimeout:        30 * time.Second,
			UnprovenGrace:      time.Second,
			NoPublisherTimeout: time.Minute,
		},
		HTTP: handlers.Config{AutoCreateRooms: true, CORSOrigins: []string{"*"}, PeersPerPort: 1, Limits: handlers.DefaultLimits()},
	})
	if err != nil {
		return err
	}
	defer pin.Close()
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", hostIP, httpPort))
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: pin.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	emit(map[string]bool{"ready": true})
	waitStdin()
	return nil
}

type attackResult struct {
	Posted, Answered int
	Statuses         map[int]int
	Error            string `json:",omitempty"`
}

// attack posts deadOffers dead WHEP offers, one each deadEvery, and says
// "started" after the sixth: by then every one of the 5 ports was taken.
func attack(t *testing.T) attackResult {
	res := attackResult{Statuses: map[int]int{}}
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{Network: mediatest.Network{AllowedIPs: []net.IP{net.ParseIP(attackerIP)}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offer, err := v.Offer(ctx)
	if err != nil {
		res.Error = err.Error()
		emit(map[string]bool{"started": false})
		return res
	}
	_ = v.Close() // nothing will ever answer pinhole's checks
	hc := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://%s:%d/whep/attack", routerPubIP, httpPort)
	tick := time.NewTicker(deadEvery)
	defer tick.Stop()
	for i := 0; i < deadOffers; i++ {
		resp, err := hc.Post(url, "application/sdp", strings.NewReader(offer))
		res.Posted++
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			res.Statuses[resp.StatusCode]++
			if resp.StatusCode == http.StatusCreated {
				res.Answered++
			}
		}
		if i == 5 {
			emit(map[string]bool{"started": true})
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return res
		}
	}
	return res
}

type legitResult struct {
	Tries          int
	Frames         uint64
	FramesAfter    uint64
	StillConnected bool
	Error          string `json:",omitempty"`
}

// legit publishes and watches from another address, retrying a 503 after
// its Retry-After (at most a second), both connected within served; then
// it keeps watching for a few seconds of the attack.
func legit(t *testing.T) legitResult {
	var res legitResult
	netw := mediatest.Network{AllowedIPs: []net.IP{net.ParseIP(legitIP)}}
	base := fmt.Sprintf("http://%s:%d", routerPubIP, httpPort)
	ctx, cancel := context.WithTimeout(context.Background(), served)
	defer cancel()
	negotiate := func(endpoint string, p mediatest.Offerer) error {
		offer, err := p.Offer(ctx)
		if err != nil {
			return err
		}
		peer := offerOnce{p, offer} // a retry posts the same offer
		for {
			res.Tries++
			_, err := mediatest.Negotiate(ctx, &http.Client{Timeout: 5 * time.Second}, base+endpoint, peer, nil)
			var he *mediatest.HTTPError
			if err == nil || !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
				return err
			}
			secs, _ := strconv.Atoi(he.Header.Get("Retry-After"))
			select {
			case <-time.After(min(time.Duration(max(secs, 1))*time.Second, time.Second)):
			case <-ctx.Done():
				return fmt.Errorf("still 503 after %d tries: %s", res.Tries, he.Body)
			}
		}
	}
	pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true, Network: netw})
	if err := negotiate("/whip/show", pub); err != nil {
		res.Error = "whip: " + err.Error()
		return res
	}
	pub.Start()
	view := mediatest.NewViewer(t, mediatest.ViewerOptions{Network: netw})
	if err := negotiate("/whep/show", view); err != nil {
		res.Error = "whep: " + err.Error()
		return res
	}
	if err := pub.WaitConnected(ctx); err != nil {
		res.Error = fmt.Sprintf("publisher not connected within %s: %v", served, err)
		return res
	}
	if err := view.WaitConnected(ctx); err != nil {
		res.Error = fmt.Sprintf("viewer not connected within %s: %v", served, err)
		return res
	}
	mctx, mcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer mcancel()
	if err := view.WaitVideoFrames(mctx, 30); err != nil {
		res.Error = "viewer media: " + err.Error()
		return res
	}
	res.Frames = view.Stats().VideoFrames
	// Keep watching through the rest of the attack (about 6 s more).
	time.Sleep(6 * time.Second)
	res.FramesAfter = view.Stats().VideoFrames
	res.StillConnected = pub.PeerConnection().ConnectionState() == webrtc.PeerConnectionStateConnected &&
		view.PeerConnection().ConnectionState() == webrtc.PeerConnectionStateConnected
	return res
}

// offerOnce hands out one offer however often it is asked: a client that
// retries a 503 posts the offer it already made.
type offerOnce struct {
	mediatest.Offerer
	sdp string
}

func (o offerOnce) Offer(context.Context) (string, error) { return o.sdp, nil }
