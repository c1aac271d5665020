package media_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/pinhole-rtc/pinhole/media"
)

// FuzzPublish hands arbitrary offers to a real engine, as WHIP (publisher)
// or WHEP (viewer). Whatever the input: no panic; a refusal is one of the
// sentinels the handlers answer with a 4xx (anything else would be a 500),
// and leaves every port free at once; an accepted offer holds one lease that
// CloseSession gives back. The engine is built once per fuzz process and has
// two ports, so a leaked lease shows within two inputs.
func FuzzPublish(f *testing.F) {
	ports := freePorts(f, 2)
	e, err := media.NewEngine(media.Config{
		Ports:     ports,
		PublicIPs: []string{"127.0.0.1"},
		// Short: a session the loop forgets to close cannot hide for long.
		SetupTimeout: 2 * time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })

	f.Fuzz(func(t *testing.T, offer string, viewer bool) {
		if !loopbackOnly(offer) {
			// Pion would send ICE checks to the candidates of an accepted
			// offer; tests only ever send to loopback.
			t.Skip("offer names a non-loopback candidate")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := media.SessionRequest{ID: newID(), Room: "fuzz", Offer: offer, TrustLocalCandidates: true}
		var ans *media.Answer
		if viewer {
			ans, err = e.Watch(ctx, req)
		} else {
			ans, err = e.Publish(ctx, req)
		}
		if err != nil {
			if !errors.Is(err, media.ErrBadOffer) && !errors.Is(err, media.ErrUnsupportedTracks) {
				t.Fatalf("refusal %v is neither ErrBadOffer nor ErrUnsupportedTracks (the handler would answer 500)", err)
			}
			if e.Live(req.ID) {
				t.Fatal("a refused session is live")
			}
		} else {
			if ans.LocalPort != ports[0] && ans.LocalPort != ports[1] {
				t.Fatalf("answer leased port %d, not one of %v", ans.LocalPort, ports)
			}
			if free, total := e.Capacity(); free != total-1 {
				t.Fatalf("accepted session: capacity %d/%d, want one lease", free, total)
			}
			if err := e.CloseSession(req.ID, "fuzz"); err != nil {
				t.Fatalf("CloseSession: %v", err)
			}
		}
		if free, total := e.Capacity(); free != total {
			t.Fatalf("after the call %d of %d ports are free: a lease leaked", free, total)
		}
	})
}

// loopbackOnly reports whether every candidate Pion would parse from offer
// (media-level a=candidate, read with Pion's own parsers) has a loopback IP
// literal: no hostname to resolve, no address off this machine.
func loopbackOnly(offer string) bool {
	var d sdp.SessionDescription
	if d.UnmarshalString(offer) != nil {
		return true // Pion refuses it before ICE starts
	}
	attrs := d.Attributes
	for _, m := range d.MediaDescriptions {
		attrs = append(attrs, m.Attributes...)
	}
	for _, a := range attrs {
		if !a.IsICECandidate() && !strings.Contains(strings.ToLower(a.Key), "candidate") {
			continue
		}
		c, err := ice.UnmarshalCandidate(a.Value)
		if err != nil {
			continue
		}
		addr, err := netip.ParseAddr(c.Address())
		if err != nil || !addr.Unmap().IsLoopback() {
			return false
		}
	}
	return true
}
