package media_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// countUDP is a loopback UDP listener counting the datagrams it gets.
func countUDP(t *testing.T) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	var n atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), &n
}

// withCandidates adds candidate lines to the first media section of sdp.
func withCandidates(sdpText string, cands ...string) string {
	var b strings.Builder
	for _, c := range cands {
		b.WriteString("a=" + c + "\r\n")
	}
	i := strings.Index(sdpText, "\r\nm=")
	j := strings.Index(sdpText[i+2:], "\r\nm=")
	if j < 0 {
		return sdpText + b.String()
	}
	at := i + 2 + j + 2
	return sdpText[:at] + b.String() + sdpText[at:]
}

func hostCand(foundation int, addr netip.AddrPort) string {
	return fmt.Sprintf("candidate:%d 1 udp 2130706431 %s %d typ host", foundation, addr.Addr(), addr.Port())
}

func firstMid(sdpText string) string {
	for _, l := range strings.Split(sdpText, "\r\n") {
		if m, ok := strings.CutPrefix(l, "a=mid:"); ok {
			return m
		}
	}
	return "0"
}

func waitCount(t *testing.T, what string, n *atomic.Int64, atLeast int64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for n.Load() < atLeast {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%d of %d)", what, n.Load(), atLeast)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A client's offer and trickle naming this host's loopback get no packet
// from pinhole unless the client is itself on this host. The session's
// ICE agent keeps checking its candidates while nothing answers, so a
// candidate it was given gets a check within a few hundred ms.
func TestCandidatesNotReflected(t *testing.T) {
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprintf("trust=%v", trust), func(t *testing.T) {
			f := newEngine(t, 1, nil)
			inOffer, offerHits := countUDP(t)
			inTrickle, trickleHits := countUDP(t)
			p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
			offer, err := p.Offer(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			offer = withCandidates(offer, hostCand(91, inOffer), "candidate:92 1 udp 2130706431 4f1c2d3e-aaaa-bbbb-cccc-0123456789ab.local 9 typ host")
			id := newID()
			// The client never applies the answer: only pinhole's checks
			// of the candidates it was given reach the listeners.
			if _, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: id, Room: "r", Offer: offer, TrustLocalCandidates: trust}); err != nil {
				t.Fatal(err)
			}
			frag := "a=mid:" + firstMid(offer) + "\r\na=" + hostCand(93, inTrickle) + "\r\n"
			if err := f.e.Trickle(id, frag); err != nil {
				t.Fatal(err)
			}
			if trust {
				waitCount(t, "checks of the offered loopback candidate", offerHits, 1)
				waitCount(t, "checks of the trickled loopback candidate", trickleHits, 1)
				return
			}
			f.rec.waitFor(t, "ice-checking", func(ev media.Event) bool { return ev.SessionID == id && ev.Name == "ice-checking" })
			// Long against the agent's 200 ms check interval (the trusted
			// case gets its first check at once); an untrusted candidate
			// must get none in that time.
			time.Sleep(3 * time.Second)
			if offerHits.Load() != 0 || trickleHits.Load() != 0 {
				t.Fatalf("pinhole sent %d checks to the offered and %d to the trickled loopback candidate", offerHits.Load(), trickleHits.Load())
			}
			for _, where := range []string{"offer:", "trickle:"} {
				ev := f.rec.waitFor(t, "candidates-dropped "+where, func(ev media.Event) bool {
					return ev.SessionID == id && ev.Name == "candidates-dropped" && strings.HasPrefix(ev.Detail, where)
				})
				if !strings.Contains(ev.Detail, "(loopback)") {
					t.Errorf("%s note: %s", where, ev.Detail)
				}
				if where == "offer:" && !strings.Contains(ev.Detail, "(mDNS name)") {
					t.Errorf("offer note lacks the mDNS candidate: %s", ev.Detail)
				}
			}
		})
	}
}

// The offer and all trickle fragments together carry at most MaxCandidates.
func TestCandidateCap(t *testing.T) {
	f := newEngine(t, 2, func(c *media.Config) { c.MaxCandidates = 4 })
	mdns := func(i int) string {
		return fmt.Sprintf("candidate:%d 1 udp 2130706431 %08d-aaaa-bbbb-cccc-0123456789ab.local 9 typ host", 100+i, i)
	}
	newOffer := func() string {
		p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
		offer, err := p.Offer(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		// Only the injected candidates: the client's own (loopback)
		// ones would count too.
		var keep []string
		for _, l := range strings.Split(offer, "\r\n") {
			if !strings.HasPrefix(l, "a=candidate:") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\r\n")
	}
	var detail *media.DetailError
	big := withCandidates(newOffer(), mdns(1), mdns(2), mdns(3), mdns(4), mdns(5))
	_, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: big})
	if !errors.Is(err, media.ErrBadOffer) || !errors.As(err, &detail) || !strings.Contains(detail.Detail, "more than the 4") {
		t.Fatalf("offer over the cap: %v", err)
	}
	offer := withCandidates(newOffer(), mdns(1), mdns(2))
	id := newID()
	if _, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: id, Room: "r", Offer: offer}); err != nil {
		t.Fatal(err)
	}
	frag := func(is ...int) string {
		s := "a=mid:" + firstMid(offer) + "\r\n"
		for _, i := range is {
			s += "a=" + mdns(i) + "\r\n"
		}
		return s
	}
	if err := f.e.Trickle(id, frag(3, 4)); err != nil {
		t.Fatalf("trickle up to the cap: %v", err)
	}
	err = f.e.Trickle(id, frag(5))
	if !errors.Is(err, media.ErrBadFragment) || !errors.As(err, &detail) || !strings.Contains(detail.Detail, "more than the 4") {
		t.Fatalf("trickle over the cap: %v", err)
	}
}

// strayBindings sends n binding requests without credentials from a
// socket on 127.0.0.2 to port, paced so the port's socket buffer keeps up
// (each batch is waited for in the port's counter).
func strayBindings(t *testing.T, e *media.Engine, port, n int) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 not bindable: %v", err)
	}
	defer c.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	base := unvalidated(e, port)
	const batch = 100
	for sent := 0; sent < n; {
		for i := 0; i < batch && sent < n; i++ {
			m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteTo(m.Raw, to); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		deadline := time.Now().Add(wait)
		for unvalidated(e, port) < base+uint64(sent) {
			if time.Now().After(deadline) {
				t.Fatalf("port counted %d of %d stray packets", unvalidated(e, port)-base, sent)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func unvalidated(e *media.Engine, port int) uint64 {
	for _, p := range e.Ports() {
		if p.LocalPort == port {
			return p.UnvalidatedPackets
		}
	}
	return 0
}

// A stranger's packets to a leased port are counted as unvalidated and
// never become a remote address; the client's validated address does.
func TestStrangerIsNoRemoteAddr(t *testing.T) {
	f := newEngine(t, 1, nil)
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8", Audio: true})
	offer, err := p.Offer(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	ans, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: id, Room: "r", Offer: offer, TrustLocalCandidates: true})
	if err != nil {
		t.Fatal(err)
	}
	// The stranger comes first, so the first packet is its own.
	strayBindings(t, f.e, ans.LocalPort, 50)
	first := f.rec.waitFor(t, "first-packet", func(ev media.Event) bool { return ev.SessionID == id && ev.Name == "first-packet" })
	if !strings.Contains(first.Detail, "127.0.0.2:") || !strings.Contains(first.Detail, "not yet validated") {
		t.Fatalf("first-packet: %s", first.Detail)
	}
	if err := p.SetAnswer(ans.SDP); err != nil {
		t.Fatal(err)
	}
	p.Start()
	remote := f.rec.waitFor(t, "a validated remote address", func(ev media.Event) bool { return ev.SessionID == id && ev.Kind == media.EventRemoteAddr })
	if !strings.HasPrefix(remote.Detail, "127.0.0.1:") {
		t.Fatalf("remote address %s", remote.Detail)
	}
	note := f.rec.waitFor(t, "remote-validated", func(ev media.Event) bool { return ev.SessionID == id && ev.Name == "remote-validated" })
	if !strings.Contains(note.Detail, "127.0.0.2:") || !strings.Contains(note.Detail, "has not validated") {
		t.Fatalf("remote-validated: %s", note.Detail)
	}
	// More stray packets once connected change nothing either.
	strayBindings(t, f.e, ans.LocalPort, 50)
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	for _, ev := range f.rec.events {
		if ev.Kind == media.EventRemoteAddr && strings.HasPrefix(ev.Detail, "127.0.0.2:") {
			t.Fatalf("the stranger became a remote address: %+v", ev)
		}
	}
}

// countWarn counts the WARN (and worse) records logged.
type countWarn struct {
	n, stray atomic.Int64
}

func (h *countWarn) Enabled(context.Context, slog.Level) bool { return true }
func (h *countWarn) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
		if strings.Contains(r.Message, "127.0.0.2") {
			h.stray.Add(1)
		}
	}
	return nil
}
func (h *countWarn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countWarn) WithGroup(string) slog.Handler      { return h }

// 2,000 stray packets on a leased port give a handful of log lines.
func TestStrayPacketsLogSampled(t *testing.T) {
	h := &countWarn{}
	f := newEngine(t, 1, func(c *media.Config) { c.Logger = slog.New(h) })
	p := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: "vp8"})
	offer, err := p.Offer(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	ans, err := f.e.Publish(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: offer, TrustLocalCandidates: true})
	if err != nil {
		t.Fatal(err)
	}
	strayBindings(t, f.e, ans.LocalPort, 2000)
	// The burst, plus one line per sampling interval should the test
	// run for minutes on a loaded machine.
	if n := h.stray.Load(); n < 1 || n > 20 {
		t.Fatalf("%d WARN lines about the stray packets (%d in all)", n, h.n.Load())
	}
}
