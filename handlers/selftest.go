package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// Self-test settings.
const (
	// SelfTestRoom is the room self-test sessions publish into; a name no
	// person picks by chance, so no viewer receives the test pattern.
	SelfTestRoom = "pinhole-selftest"
	// defaultSelfTestTimeout covers ICE (a round trip or two through the
	// mapping), DTLS, and the first media packets, with a wide margin.
	defaultSelfTestTimeout = 15 * time.Second
	// selfTestFrames is how many packets the client sends after connecting:
	// 2 s at 25 packets/s, enough for pinhole to see media and count it.
	selfTestFrames   = 50
	selfTestInterval = 40 * time.Millisecond
)

// vp8Key is a minimal VP8 keyframe payload (descriptor with S bit, frame tag
// of a shown keyframe, start code, 640x480): it is only counted, never
// decoded.
var vp8Key = []byte{0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}

// handleSelfTest answers POST /api/v1/diagnostics/selftest: an internal
// client publishes to pinhole through the public address of a leased port
// and reports whether media arrived. That proves the mapping wherever it
// also forwards traffic from this host itself (hairpin NAT, FRP).
//
//	@Summary	Self-test: an internal client connects through the public address and sends media
//	@Tags		diagnostics
//	@Accept		json
//	@Produce	json
//	@Param		body	body		api.SelfTestRequest	false	"options"
//	@Success	200		{object}	api.SelfTestResult
//	@Failure	409		{object}	api.Problem
//	@Failure	503		{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Router		/api/v1/diagnostics/selftest [post]
func (d *Diagnostics) handleSelfTest(w http.ResponseWriter, r *http.Request) error {
	var req api.SelfTestRequest
	if r.ContentLength != 0 {
		if err := api.DecodeJSON(w, r, d.validate, &req); err != nil {
			return err
		}
	}
	if !d.selftest.TryLock() {
		return api.Errorf(http.StatusConflict, "a self-test is already running; retry in a few seconds").WithHeader("Retry-After", "5")
	}
	defer d.selftest.Unlock()
	res, err := d.SelfTest(r.Context(), time.Duration(req.TimeoutMillis)*time.Millisecond)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// SelfTest runs the self-test; timeout zero means 15 s. An error means the
// test could not run (no free port); a failed test is a result.
func (d *Diagnostics) SelfTest(ctx context.Context, timeout time.Duration) (api.SelfTestResult, error) {
	if timeout <= 0 {
		timeout = defaultSelfTestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := api.SelfTestResult{Status: api.StatusFail}

	pc, track, err := d.selfTestPeer()
	if err != nil {
		return res, err
	}
	defer pc.Close()
	connected := make(chan struct{})
	failed := make(chan struct{})
	var connOnce, failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			failOnce.Do(func() { close(failed) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return res, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return res, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return res, ctx.Err()
	}

	id := newID()
	start := time.Now()
	// The offer goes to the engine without the client's candidates: pinhole
	// must learn the client's address from checks arriving through the
	// mapping. With them, pinhole would check the client's host address
	// directly, on this very host, and pass without the mapping.
	ans, err := d.engine.Publish(ctx, media.SessionRequest{ID: id, Room: SelfTestRoom, Offer: stripCandidates(pc.LocalDescription().SDP)})
	if err != nil {
		if d.rec != nil {
			d.rec.forget(id)
		}
		return res, err
	}
	res.SessionID, res.Target, res.LocalPort = id, ans.PublicAddr, ans.LocalPort
	d.recordSelfTest(ctx, id, ans)
	defer d.endSelfTest(id)

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		return res, fmt.Errorf("self-test answer: %w", err)
	}
	select {
	case <-connected:
		res.ConnectMillis = float64(time.Since(start).Microseconds()) / 1000
		sendTestMedia(ctx, track)
	case <-failed:
	case <-ctx.Done():
	}

	// Judge from the server's own record, as any session is judged.
	if d.rec != nil {
		d.rec.Sync()
	}
	s, err := d.store.GetSession(context.WithoutCancel(ctx), id)
	if err == nil {
		diag := Diagnose(s, DiagnosisOptions{Now: time.Now(), NoPacketAfter: min(d.diagOpts().NoPacketAfter, timeout/2), NoMediaAfter: timeout / 4})
		res.Diagnosis = &diag
		res.PacketsReceived = s.Counters.PacketsIn
		if diag.Verdict.Status == api.StatusOK || hasEvent(s, "first-rtp-in") {
			res.Status = api.StatusOK
		}
	}
	for _, p := range d.engine.Ports() {
		if p.LocalPort == res.LocalPort && res.PacketsReceived == 0 {
			res.PacketsReceived = p.PacketsIn
		}
	}
	if res.Status == api.StatusOK {
		res.Summary = fmt.Sprintf("media flowed: the internal client reached pinhole through %s (local UDP %d) and connected in %.0f ms",
			res.Target, res.LocalPort, res.ConnectMillis)
		if d.targetIsLocal(res.Target) {
			res.Summary += "; that address belongs to this host, so no port mapping was involved: test from outside to check one"
		}
		return res, nil
	}
	res.Summary = fmt.Sprintf("the internal client could not send media to pinhole through %s (local UDP %d)", res.Target, res.LocalPort)
	res.Fix = fmt.Sprintf("if clients outside can connect, this host's router simply does not loop back (hairpin) traffic to its own public address and nothing is wrong; "+
		"otherwise the mapping %s -> this host's UDP %d is broken: check the port forward, FRP udp proxy or firewall", res.Target, res.LocalPort)
	if v := res.Diagnosis; v != nil && v.Verdict.Status != api.StatusOK {
		switch v.Verdict.Hop {
		case "mapping":
			// The offer carried no candidates on purpose; what counts is
			// that no check came through the mapping.
			res.Summary += fmt.Sprintf(": no packet reached local UDP %d", res.LocalPort)
		default:
			res.Summary += ": " + v.Verdict.Summary
			if v.Verdict.Fix != "" {
				res.Fix = v.Verdict.Fix
			}
		}
	}
	return res, nil
}

// targetIsLocal reports whether the advertised address is one of this
// host's own, in which case the self-test proves no mapping.
func (d *Diagnostics) targetIsLocal(target string) bool {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return false
	}
	local, _ := d.cfg.Interfaces()
	return ap.Addr().IsLoopback() || slices.Contains(local, ap.Addr().Unmap())
}

// selfTestPeer builds the internal client: VP8 only, UDP4, no mDNS, only
// the configured local addresses.
func (d *Diagnostics) selfTestPeer() (*webrtc.PeerConnection, *webrtc.TrackLocalStaticRTP, error) {
	m := &webrtc.MediaEngine{}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: vp8, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, nil, err
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// The public address may be this host's own loopback or LAN address.
	se.SetIncludeLoopbackCandidate(true)
	if ips := d.cfg.SelfTestIPs; len(ips) > 0 {
		se.SetIPFilter(func(ip net.IP) bool {
			for _, a := range ips {
				if a.Equal(ip) {
					return true
				}
			}
			return false
		})
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", "pinhole-selftest")
	if err == nil {
		_, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	}
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	return pc, track, nil
}

// sendTestMedia writes selfTestFrames small keyframes at a steady pace.
func sendTestMedia(ctx context.Context, track *webrtc.TrackLocalStaticRTP) {
	tick := time.NewTicker(selfTestInterval)
	defer tick.Stop()
	for i := range selfTestFrames {
		pkt := &rtp.Packet{
			Header:  rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3600},
			Payload: vp8Key,
		}
		if err := track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// recordSelfTest writes the session record as the WHIP handler does, so
// the test session has a diagnosis like any other.
func (d *Diagnostics) recordSelfTest(ctx context.Context, id string, ans *media.Answer) {
	now := time.Now().UTC()
	err := d.store.CreateSession(context.WithoutCancel(ctx), store.Session{
		ID: id, Room: SelfTestRoom, Role: store.RolePublisher, UserID: "pinhole-selftest",
		State: store.StateNew, Transitions: []store.Transition{{State: store.StateNew, At: now}},
		CreatedAt: now, UpdatedAt: now, Codecs: ans.Codecs,
		// Marks the record for Diagnose: the offer had no candidates on purpose.
		Events: []store.Event{{At: now, Kind: "selftest", Detail: "internal client; offer sent without candidates so that only checks through " + ans.PublicAddr + " count"}},
		Lease:  store.Lease{LocalPort: ans.LocalPort, PublicAddr: ans.PublicAddr},
		ETag:   newETag(),
	})
	if d.rec == nil {
		return
	}
	if err != nil {
		d.log.Warn("recording self-test session", "session", id, "err", err)
		d.rec.forget(id)
		return
	}
	d.rec.register(id)
}

// endSelfTest closes the test session and marks its record closed.
func (d *Diagnostics) endSelfTest(id string) {
	_ = d.engine.CloseSession(id, "self-test finished")
	_, _ = d.store.UpdateSession(context.Background(), id, func(s *store.Session) error {
		now := time.Now().UTC()
		if s.CloseReason == "" {
			s.CloseReason = "self-test finished"
		}
		if s.SetState(store.StateClosed, now) {
			addTimeline(s, store.Event{At: now, Kind: "closed", Detail: "self-test finished"})
		}
		return nil
	})
}

func hasEvent(s store.Session, kind string) bool {
	for _, e := range s.Events {
		if strings.EqualFold(e.Kind, kind) {
			return true
		}
	}
	return false
}

// stripCandidates removes the candidate lines of an SDP.
func stripCandidates(sdp string) string {
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
