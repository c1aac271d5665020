package diagnostics

import (
	"fmt"
	"strings"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/store"
)

// Path step ids, in the order a session's packets pass them. The web page
// translates its labels by these ids.
const (
	StepClient        = "client"
	StepClientNetwork = "client-network"
	StepSignaling     = "signaling"
	StepPublic        = "public"
	StepLease         = "lease"
	StepICE           = "ice"
	StepDTLS          = "dtls"
	StepPublisher     = "publisher"
	StepRTPIn         = "rtp-in"
	StepRTPOutAudio   = "rtp-out-audio"
	StepRTPOutVideo   = "rtp-out-video"
)

// brokenStep is the step each failing verdict points at.
var brokenStep = map[string]string{
	VerdictNoAnswer:         StepSignaling,
	VerdictNoCandidates:     StepClientNetwork,
	VerdictNoPacket:         StepPublic,
	VerdictPublicIPMismatch: StepPublic,
	VerdictICEFailed:        StepICE,
	VerdictConnectionLost:   StepICE,
	VerdictDTLSFailed:       StepDTLS,
	VerdictVideoCodec:       StepRTPOutVideo,
	VerdictNoVideo:          StepRTPOutVideo,
	VerdictNoPublisher:      StepPublisher,
}

type stepSpec struct {
	api.PathStep
	reached *store.Event
}

// path draws the session as a line of boxes: each reached step green with
// its time, the broken one red with the fix, the rest grey.
func path(f sessionFacts, hops []api.Hop, v api.Verdict) []api.PathStep {
	ev := func(kind string) *store.Event {
		if e, ok := f.first[kind]; ok {
			return &e
		}
		return nil
	}
	n, _ := clientCandidates(f)
	clientNet := ev("offer")
	if n == 0 && !f.has("trickle") && !f.has("selftest") {
		clientNet = ev("first-packet")
	}
	host := requestHost(f)
	sig := "signaling (HTTP)"
	if host != "" {
		sig = "signaling (HTTP) at " + host
	}
	steps := []stepSpec{
		{api.PathStep{ID: StepClient, Hop: HopSignaling, Label: "client (" + string(f.s.Role) + ")"}, ev("offer")},
		{api.PathStep{ID: StepClientNetwork, Hop: HopMapping, Label: fmt.Sprintf("client's network: %d candidates", n)}, clientNet},
		{api.PathStep{ID: StepSignaling, Hop: HopSignaling, Label: sig}, ev("answer")},
		{api.PathStep{ID: StepPublic, Hop: HopMapping, Label: "router or tunnel, public UDP " + orNone(f.s.Lease.PublicAddr)}, ev("first-packet")},
		{api.PathStep{ID: StepLease, Hop: HopMapping, Label: fmt.Sprintf("pinhole local UDP %d", f.s.Lease.LocalPort)}, ev("first-packet")},
		{api.PathStep{ID: StepICE, Hop: HopICE, Label: "ICE"}, ev("ice-connected")},
		{api.PathStep{ID: StepDTLS, Hop: HopDTLS, Label: "DTLS"}, ev("dtls-connected")},
	}
	if f.s.Role == store.RoleViewer {
		steps = append(steps, stepSpec{api.PathStep{ID: StepPublisher, Hop: HopMedia, Label: "publisher in room " + f.s.Room}, ev("following")})
		audio, video := false, f.wantsVideo()
		for _, c := range f.s.Codecs {
			audio = audio || strings.HasPrefix(strings.ToLower(c), "audio/")
		}
		if len(f.s.Codecs) == 0 {
			audio, video = true, true
		}
		if e, ok := f.out["audio"]; ok || audio {
			steps = append(steps, stepSpec{api.PathStep{ID: StepRTPOutAudio, Hop: HopMedia, Label: "SRTP/RTP out: audio"}, ptr(e, ok)})
		}
		if e, ok := f.out["video"]; ok || video {
			steps = append(steps, stepSpec{api.PathStep{ID: StepRTPOutVideo, Hop: HopMedia, Label: "SRTP/RTP out: video"}, ptr(e, ok)})
		}
	} else {
		steps = append(steps, stepSpec{api.PathStep{ID: StepRTPIn, Hop: HopMedia, Label: "SRTP/RTP in"}, ev("first-rtp-in")})
	}

	broken := ""
	if v.Status == api.StatusFail {
		broken = brokenStep[v.ID]
		if broken == "" { // codec-mismatch, no-media: the first media step not reached
			for _, s := range steps {
				if s.Hop == HopMedia && s.reached == nil && (v.ID != VerdictCodecMismatch || s.ID != StepPublisher) {
					broken = s.ID
					break
				}
			}
		}
	}
	hopDetail := map[string]string{}
	for _, h := range hops {
		hopDetail[h.Name] = h.Detail
	}
	out := make([]api.PathStep, 0, len(steps))
	past := false // after the broken or pending step
	for _, s := range steps {
		p := s.PathStep
		switch {
		case p.ID == broken:
			p.Status, p.Broken, p.Fix, p.Detail = api.StatusFail, true, v.Fix, v.Headline
			ms := v.SinceStartMillis
			p.SinceStartMillis = &ms
			// A connection lost after media flowed broke where it had been
			// reached; the steps after it were reached too.
			past = s.reached == nil
		case s.reached != nil && !past:
			p.Status = api.StatusOK
			ms := float64(s.reached.At.Sub(f.start).Microseconds()) / 1000
			p.SinceStartMillis = &ms
			p.Detail = s.reached.Detail
		case past:
			p.Status = api.StatusSkipped
		case v.Status == api.StatusPending || v.Status == api.StatusFail:
			p.Status, p.Detail = api.StatusPending, hopDetail[p.Hop]
			if v.Status == api.StatusPending {
				p.Detail = v.Headline
			}
			past = true
		default:
			p.Status = api.StatusSkipped
		}
		out = append(out, p)
	}
	return out
}

func ptr(e store.Event, ok bool) *store.Event {
	if !ok {
		return nil
	}
	return &e
}
