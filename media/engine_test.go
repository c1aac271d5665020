package media_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/test"
	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// wait is the generous deadline every event in these tests is waited for.
const wait = 20 * time.Second

// recorder keeps the engine's events for assertions.
type recorder struct {
	mu     sync.Mutex
	events []media.Event
	ch     chan media.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan media.Event, 4096)} }

func (r *recorder) on(ev media.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.ch <- ev:
	default:
	}
}

// waitFor waits until an event matching fn has been recorded.
func (r *recorder) waitFor(tb testing.TB, what string, fn func(media.Event) bool) media.Event {
	tb.Helper()
	deadline := time.After(wait)
	for {
		r.mu.Lock()
		for _, ev := range r.events {
			if fn(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// snapshot returns the events recorded so far.
func (r *recorder) snapshot() []media.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func closedEvent(id string) func(media.Event) bool {
	return func(ev media.Event) bool { return ev.SessionID == id && ev.Kind == media.EventClosed }
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type fixture struct {
	e     *media.Engine
	rec   *recorder
	ports []int
}

func newEngine(tb testing.TB, n int, mod func(*media.Config)) *fixture {
	tb.Helper()
	ports := freePorts(tb, n)
	cfg := media.Config{
		Ports:        ports,
		PublicIPs:    []string{"127.0.0.1"},
		PeersPerPort: 1,
		SetupTimeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	rec := newRecorder()
	e, err := media.NewEngine(cfg, rec.on)
	if err != nil {
		tb.Fatalf("NewEngine: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return &fixture{e: e, rec: rec, ports: ports}
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	tb.Cleanup(cancel)
	return ctx
}

// publish connects a new publisher streaming the clip into room.
func (f *fixture) publish(tb testing.TB, room string, opts mediatest.PublisherOptions) (*mediatest.Publisher, string, *media.Answer) {
	tb.Helper()
	p := mediatest.NewPublisher(tb, opts)
	id, ans := f.negotiate(tb, room, p)
	p.Start()
	return p, id, ans
}

// negotiate publishes p's offer into room and applies the answer, without
// starting p's media.
func (f *fixture) negotiate(tb testing.TB, room string, p *mediatest.Publisher) (string, *media.Answer) {
	tb.Helper()
	offer, err := p.Offer(ctxT(tb))
	if err != nil {
		tb.Fatal(err)
	}
	id := newID()
	ans, err := f.e.Publish(ctxT(tb), media.SessionRequest{ID: id, Room: room, Offer: offer, TrustLocalCandidates: true})
	if err != nil {
		tb.Fatalf("Publish: %v", err)
	}
	if err := p.SetAnswer(ans.SDP); err != nil {
		tb.Fatalf("SetAnswer: %v", err)
	}
	return id, ans
}

func (f *fixture) watch(tb testing.TB, room, publisher string, opts mediatest.ViewerOptions) (*mediatest.Viewer, string, *media.Answer) {
	tb.Helper()
	v := mediatest.NewViewer(tb, opts)
	offer, err := v.Offer(ctxT(tb))
	if err != nil {
		tb.Fatal(err)
	}
	id := newID()
	ans, err := f.e.Watch(ctxT(tb), media.SessionRequest{ID: id, Room: room, Offer: offer, PublisherID: publisher, TrustLocalCandidates: true})
	if err != nil {
		tb.Fatalf("Watch: %v", err)
	}
	if err := v.SetAnswer(ans.SDP); err != nil {
		tb.Fatalf("SetAnswer: %v", err)
	}
	return v, id, ans
}

func waitMedia(tb testing.TB, v *mediatest.Viewer, frames, audio int) {
	tb.Helper()
	if frames > 0 {
		if err := v.WaitVideoFrames(ctxT(tb), uint64(frames)); err != nil {
			tb.Fatalf("video frames: %v (stats %+v)", err, v.Stats())
		}
	}
	if audio > 0 {
		if err := v.WaitAudioPackets(ctxT(tb), uint64(audio)); err != nil {
			tb.Fatalf("audio packets: %v (stats %+v)", err, v.Stats())
		}
	}
}

func candidatePorts(sdp string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\n") {
		if f := strings.Fields(strings.TrimSpace(l)); len(f) >= 6 && strings.HasPrefix(f[0], "a=candidate:") {
			out = append(out, f[4]+":"+f[5])
		}
	}
	return out
}

// One publisher, three viewers, every codec the clip has: each viewer
// decodes video frames and receives audio; each session holds its own port.
func TestPublishThreeViewers(t *testing.T) {
	for _, codec := range []string{"vp8", "h264", "vp9", "av1"} {
		t.Run(codec, func(t *testing.T) {
			f := newEngine(t, 4, nil)
			_, pubID, pans := f.publish(t, "room", mediatest.PublisherOptions{Video: codec, Audio: true})
			ports := map[int]string{pans.LocalPort: pubID}
			var viewers []*mediatest.Viewer
			for i := 0; i < 3; i++ {
				v, id, ans := f.watch(t, "room", "", mediatest.ViewerOptions{})
				if other, dup := ports[ans.LocalPort]; dup {
					t.Fatalf("viewer %s got port %d already held by %s", id, ans.LocalPort, other)
				}
				ports[ans.LocalPort] = id
				for _, c := range candidatePorts(ans.SDP) {
					if c != fmt.Sprintf("127.0.0.1:%d", ans.LocalPort) {
						t.Fatalf("answer candidate %s, want 127.0.0.1:%d", c, ans.LocalPort)
					}
				}
				viewers = append(viewers, v)
			}
			for _, v := range viewers {
				waitMedia(t, v, 30, 50)
				st := v.Stats()
				if !strings.EqualFold(st.Codec, "video/"+codec) {
					t.Fatalf("viewer codec %q, want %s", st.Codec, codec)
				}
				if codec == "vp8" && (st.Width != 320 || st.Height != 240) {
					t.Fatalf("decoded size %dx%d, want 320x240", st.Width, st.Height)
				}
			}
			if free, total := f.e.Capacity(); free != 0 || total != 4 {
				t.Fatalf("capacity %d/%d, want 0/4", free, total)
			}
		})
	}
}

// With --public-ports the answer carries the public port, not the local one.
func TestPublicPortRewrite(t *testing.T) {
	f := newEngine(t, 1, func(c *media.Config) {
		c.PublicIPs = []string{"203.0.113.7"}
		c.PublicPorts = []int{20111}
	})
	// The answer is only read, never applied: a client given it would send
	// ICE checks to 203.0.113.7, off this machine (e2e/nattest covers a
	// real mapping inside network namespaces).
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
	offer, err := p.Offer(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	ans, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: id, Room: "r", Offer: offer, TrustLocalCandidates: true})
	if err != nil {
		t.Fatal(err)
	}
	got := candidatePorts(ans.SDP)
	if len(got) == 0 {
		t.Fatal("answer has no candidate")
	}
	for _, c := range got {
		if c != "203.0.113.7:20111" {
			t.Fatalf("candidate %s, want 203.0.113.7:20111", c)
		}
	}
	if ans.PublicAddr != "203.0.113.7:20111" || ans.LocalPort != f.ports[0] {
		t.Fatalf("answer lease %s local %d", ans.PublicAddr, ans.LocalPort)
	}
	if err := f.e.CloseSession(id, "test"); err != nil {
		t.Fatal(err)
	}
}

// A full pool refuses with PoolFullError; closing a session gives the port back.
func TestPoolFullAndRelease(t *testing.T) {
	f := newEngine(t, 2, nil)
	_, a, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	f.watch(t, "r", "", mediatest.ViewerOptions{})
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	offer, err := v.Offer(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.e.Watch(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: offer, TrustLocalCandidates: true})
	var full *media.PoolFullError
	if !errors.As(err, &full) || !errors.Is(err, media.ErrNoPortAvailable) || full.Total != 2 || full.Leased != 2 {
		t.Fatalf("third session: %v, want pool full 2/2", err)
	}
	if err := f.e.CloseSession(a, "test"); err != nil {
		t.Fatal(err)
	}
	if free, _ := f.e.Capacity(); free != 1 {
		t.Fatalf("free after close %d, want 1", free)
	}
	if _, err := f.e.Watch(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: offer, TrustLocalCandidates: true}); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// A viewer that arrives first gets media when the publisher comes, and again
// when the publisher leaves and a new one arrives.
func TestViewerBeforePublisherAndReconnect(t *testing.T) {
	f := newEngine(t, 3, nil)
	v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	if err := v.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	p1, p1ID, _ := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8", Audio: true})
	waitMedia(t, v, 20, 20)
	// The server ends the session first: closing the client first would
	// end it too (DTLS close_notify), racing this call.
	if err := f.e.CloseSession(p1ID, "gone"); err != nil {
		t.Fatal(err)
	}
	_ = p1.Close()
	before := v.Stats()
	f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8", Audio: true})
	waitMedia(t, v, int(before.VideoFrames)+20, int(before.AudioPackets)+20)
	if st := v.Stats(); st.KeyFrames < 2 {
		t.Fatalf("keyframes %d: the second publisher's stream did not start with one", st.KeyFrames)
	}
}

// A viewer that offered only VP8 does not get an H.264 publisher's video,
// and the mismatch is recorded in its timeline.
func TestCodecMismatch(t *testing.T) {
	f := newEngine(t, 2, nil)
	f.publish(t, "r", mediatest.PublisherOptions{Video: "h264", Audio: true})
	v, id, _ := f.watch(t, "r", "", mediatest.ViewerOptions{VideoCodecs: []string{"vp8"}})
	waitMedia(t, v, 0, 20)
	f.rec.waitFor(t, "codec-mismatch", func(ev media.Event) bool {
		return ev.SessionID == id && ev.Kind == media.EventTimeline && ev.Name == "codec-mismatch"
	})
	if st := v.Stats(); st.VideoPackets != 0 {
		t.Fatalf("viewer got %d video packets of a codec it did not offer", st.VideoPackets)
	}
}

// ?publisher= picks one publisher of several.
func TestPickPublisher(t *testing.T) {
	f := newEngine(t, 3, nil)
	_, first, _ := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8"})
	f.publish(t, "r", mediatest.PublisherOptions{Video: "h264"})
	if got := f.e.Publishers("r"); len(got) != 2 || got[1] != first {
		t.Fatalf("publishers newest first = %v", got)
	}
	v, _, _ := f.watch(t, "r", first, mediatest.ViewerOptions{Video: true})
	waitMedia(t, v, 10, 0)
	if c := v.Stats().Codec; !strings.EqualFold(c, "video/vp8") {
		t.Fatalf("followed codec %s, want the first publisher's VP8", c)
	}
}

// A client that never connects loses its port at the setup timeout; one
// that vanishes loses it when ICE fails.
func TestTimeoutsFreePorts(t *testing.T) {
	f := newEngine(t, 2, func(c *media.Config) {
		c.SetupTimeout = 2 * time.Second
		c.ICEDisconnectedTimeout = time.Second
		c.ICEFailedTimeout = 2 * time.Second
		c.ICEKeepalive = 200 * time.Millisecond
	})
	// Never connects: the offer is taken, the answer never applied.
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	offer, err := v.Offer(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	never := newID()
	if _, err := f.e.Watch(ctxT(t), media.SessionRequest{ID: never, Room: "r", Offer: offer, TrustLocalCandidates: true}); err != nil {
		t.Fatal(err)
	}
	ev := f.rec.waitFor(t, "setup timeout", closedEvent(never))
	if !strings.Contains(ev.Detail, "setup timeout") {
		t.Fatalf("close reason %q", ev.Detail)
	}
	// Vanishes: connects, then its socket dies without a DTLS close_notify
	// or a DELETE, as when the client's machine drops off the network.
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock})
	t.Cleanup(func() { _ = mux.Close() })
	p, gone, _ := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8", Network: mediatest.Network{
		Configure: func(se *webrtc.SettingEngine) { se.SetICEUDPMux(mux) },
	}})
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_ = mux.Close()
	ev = f.rec.waitFor(t, "vanished publisher closed", closedEvent(gone))
	if !strings.Contains(ev.Detail, "failed") {
		t.Fatalf("vanished client closed for %q, want ICE failure", ev.Detail)
	}
	if free, total := f.e.Capacity(); free != total {
		t.Fatalf("free %d of %d after both ended", free, total)
	}
}

// Bad offers are refused before any port is leased.
func TestBadOffers(t *testing.T) {
	f := newEngine(t, 1, nil)
	cases := map[string]struct {
		offer string
		want  error
	}{
		"garbage":  {"hello", media.ErrBadOffer},
		"no media": {"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", media.ErrUnsupportedTracks},
		"data only": {"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 00\r\n" +
			"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:x\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\na=mid:0\r\n", media.ErrUnsupportedTracks},
		"only G.711": {"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 00\r\n" +
			"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:x\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\na=mid:0\r\na=sendonly\r\na=rtpmap:0 PCMU/8000\r\n", media.ErrUnsupportedTracks},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: c.offer, TrustLocalCandidates: true})
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if free, _ := f.e.Capacity(); free != 1 {
				t.Fatal("a refused offer kept a lease")
			}
		})
	}
}

// Sessions of every kind of ending leave no goroutine behind once the engine
// is closed, and the engine frees every port.
func TestNoLeaks(t *testing.T) {
	report := test.CheckRoutines(t)
	defer report()
	ports := freePorts(t, 3)
	rec := newRecorder()
	e, err := media.NewEngine(media.Config{Ports: ports, PublicIPs: []string{"127.0.0.1"}, SetupTimeout: time.Second}, rec.on)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{e: e, rec: rec, ports: ports}
	p, pid, _ := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8", Audio: true})
	v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	waitMedia(t, v, 5, 5)
	if err := e.CloseSession(pid, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.CloseSession(pid, "again"); !errors.Is(err, media.ErrSessionNotFound) {
		t.Fatalf("second close: %v", err)
	}
	_ = p.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_ = v.Close()
	for _, port := range ports {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		if err != nil {
			t.Fatalf("port %d still bound after Close: %v", port, err)
		}
		_ = c.Close()
	}
}

// fragmentOf builds the trickle-ice-sdpfrag a WHIP client sends for an ICE
// restart from its new offer: credentials and candidates (RFC 8840).
func fragmentOf(offer string) string {
	var b strings.Builder
	var ufrag, pwd string
	var cands []string
	mid := ""
	for _, l := range strings.Split(offer, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:") && ufrag == "":
			ufrag = l
		case strings.HasPrefix(l, "a=ice-pwd:") && pwd == "":
			pwd = l
		case strings.HasPrefix(l, "a=mid:") && mid == "":
			mid = l
		case strings.HasPrefix(l, "a=candidate:"):
			cands = append(cands, l)
		}
	}
	b.WriteString(ufrag + "\r\n" + pwd + "\r\n")
	b.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" + mid + "\r\n")
	for _, c := range cands {
		b.WriteString(c + "\r\n")
	}
	return b.String()
}

// applyFragment turns the server's restart answer fragment into the full
// answer the client applies: the last answer with new credentials and
// candidates.
func applyFragment(answer, frag string) string {
	var ufrag, pwd string
	var cands []string
	for _, l := range strings.Split(frag, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			ufrag = l
		case strings.HasPrefix(l, "a=ice-pwd:"):
			pwd = l
		case strings.HasPrefix(l, "a=candidate:"):
			cands = append(cands, l)
		}
	}
	var out []string
	for _, l := range strings.Split(answer, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			out = append(out, ufrag)
		case strings.HasPrefix(l, "a=ice-pwd:"):
			out = append(out, pwd)
		case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates":
		case strings.HasPrefix(l, "a=mid:"):
			out = append(out, l)
			out = append(out, cands...)
		default:
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

// An ICE restart through Restart keeps media flowing on new credentials.
func TestICERestart(t *testing.T) {
	f := newEngine(t, 2, nil)
	p, pid, pans := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8", Audio: true})
	v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	waitMedia(t, v, 10, 10)
	pc := p.PeerConnection()
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	frag, err := f.e.Restart(pid, fragmentOf(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if !strings.Contains(frag, "a=ice-ufrag:") || !strings.Contains(frag, fmt.Sprintf("127.0.0.1 %d typ host", pans.LocalPort)) {
		t.Fatalf("restart fragment lacks credentials or candidate:\n%s", frag)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: applyFragment(pans.SDP, frag)}); err != nil {
		t.Fatalf("client applies restart answer: %v", err)
	}
	f.rec.waitFor(t, "ice-restart", func(ev media.Event) bool { return ev.SessionID == pid && ev.Name == "ice-restart" })
	before := v.Stats().VideoFrames
	waitMedia(t, v, int(before)+30, 0)
}

// Trickled candidates are accepted; a fragment for other credentials and a
// malformed one are refused with ErrBadFragment.
func TestTrickle(t *testing.T) {
	f := newEngine(t, 1, nil)
	_, id, _ := f.watch(t, "r", "", mediatest.ViewerOptions{})
	good := "a=ice-ufrag:%s\r\na=ice-pwd:abcdefabcdefabcdefabcdef\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
	if err := f.e.Trickle(id, "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"); err != nil {
		t.Fatalf("trickle: %v", err)
	}
	for name, body := range map[string]string{
		"other ufrag": fmt.Sprintf(good, "zzzz"),
		"garbage":     "hello world",
		"short cand":  "a=candidate:1 1 udp\r\n",
		"empty":       "\r\n",
	} {
		if err := f.e.Trickle(id, body); !errors.Is(err, media.ErrBadFragment) {
			t.Errorf("%s: err %v, want ErrBadFragment", name, err)
		}
	}
	if err := f.e.Trickle("nope", good); !errors.Is(err, media.ErrSessionNotFound) {
		t.Errorf("unknown session: %v", err)
	}
}

// With --peers-per-port 3, three viewers share one port and all get media.
func TestPeersPerPort(t *testing.T) {
	f := newEngine(t, 2, func(c *media.Config) { c.PeersPerPort = 3 })
	_, _, pans := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8", Audio: true})
	ports := map[int]int{pans.LocalPort: 1}
	var vs []*mediatest.Viewer
	for i := 0; i < 3; i++ {
		v, _, ans := f.watch(t, "r", "", mediatest.ViewerOptions{})
		ports[ans.LocalPort]++
		vs = append(vs, v)
	}
	for _, v := range vs {
		waitMedia(t, v, 10, 10)
	}
	if len(ports) != 2 {
		t.Fatalf("4 sessions on ports %v, want 2 ports shared", ports)
	}
	if free, total := f.e.Capacity(); total != 6 || free != 2 {
		t.Fatalf("capacity %d/%d, want 2/6", free, total)
	}
}

// A connected publisher that sends no RTP is closed at the idle timeout;
// CloseRoom ends every session of a room and frees their ports.
func TestIdlePublisherAndCloseRoom(t *testing.T) {
	f := newEngine(t, 3, func(c *media.Config) { c.IdleTimeout = time.Second })
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
	idle, _ := f.negotiate(t, "quiet", p)
	// Connected but never started: no RTP.
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ev := f.rec.waitFor(t, "idle close", closedEvent(idle))
	if !strings.Contains(ev.Detail, "idle publisher") {
		t.Fatalf("reason %q", ev.Detail)
	}

	_, a, _ := f.publish(t, "busy", mediatest.PublisherOptions{Video: "vp8"})
	_, b, _ := f.watch(t, "busy", "", mediatest.ViewerOptions{})
	if n := f.e.CloseRoom("busy", "room deleted"); n != 2 {
		t.Fatalf("CloseRoom ended %d sessions, want 2", n)
	}
	for _, id := range []string{a, b} {
		if f.e.Live(id) {
			t.Fatalf("session %s still live", id)
		}
	}
	if free, total := f.e.Capacity(); free != total {
		t.Fatalf("free %d of %d", free, total)
	}
}

// freePorts finds n consecutive free UDP ports in the media tests' range.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	return testnet.FreeUDPPorts(tb, n, testnet.MediaLo, testnet.MediaHi)
}

// A joining viewer makes pinhole ask the publisher for a keyframe; a
// viewer's own PLIs are forwarded, coalesced so a storm of them does not
// become a storm of keyframe requests.
func TestKeyframeRequests(t *testing.T) {
	// No GOP cache: a fresh one would serve the join without a request.
	f := newEngine(t, 2, withCache(-1))
	p, _, _ := f.publish(t, "r", mediatest.PublisherOptions{Video: "vp8"})
	if err := p.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	v, _, _ := f.watch(t, "r", "", mediatest.ViewerOptions{Video: true})
	if err := p.WaitKeyFrameRequests(ctxT(t), 1); err != nil {
		t.Fatalf("no keyframe request when a viewer joined: %v", err)
	}
	waitMedia(t, v, 5, 0)
	before := p.Stats().PLIs + p.Stats().FIRs
	const storm = 50
	for i := 0; i < storm; i++ {
		if err := v.RequestKeyFrame(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.WaitKeyFrameRequests(ctxT(t), before+1); err != nil {
		t.Fatalf("viewer PLI not forwarded: %v", err)
	}
	time.Sleep(time.Second) // let a deferred, coalesced request go out
	st := p.Stats()
	if got := st.PLIs + st.FIRs - before; got >= storm/2 {
		t.Fatalf("%d viewer PLIs became %d requests to the publisher: not coalesced", storm, got)
	}
}

// A publisher offering two video tracks is refused with 422, never given a
// partial answer (RFC 9725 section 4.5.2): viewers have one video sink, and
// silently draining the second track would lose it without a word.
func TestSecondVideoTrackRefused(t *testing.T) {
	f := newEngine(t, 2, nil)
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
	extra, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "extra", "extra")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PeerConnection().AddTrack(extra); err != nil {
		t.Fatal(err)
	}
	offer, err := p.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.e.Publish(context.Background(), media.SessionRequest{ID: "second-video", Room: "r", Offer: offer, TrustLocalCandidates: true})
	if !errors.Is(err, media.ErrUnsupportedTracks) || !strings.Contains(err.Error(), "second video") {
		t.Fatalf("two video tracks: %v, want ErrUnsupportedTracks naming the second", err)
	}
	if free, total := f.e.Capacity(); free != total {
		t.Fatalf("a refused offer kept a lease: %d of %d free", free, total)
	}
}
