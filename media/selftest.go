package media

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The self-test client's media: small keyframes at a steady pace after it
// connects, 2 s at 25 packets/s, enough for the engine to see media and
// count it.
const (
	selfTestFrames   = 50
	selfTestInterval = 40 * time.Millisecond
)

// vp8Key is a minimal VP8 keyframe payload (descriptor with S bit, frame tag
// of a shown keyframe, start code, 640x480): it is only counted, never
// decoded.
var vp8Key = []byte{0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}

// SelfTestClient is an internal WHIP publisher for the self-test: it
// connects to the engine through the public address of a lease, the way an
// outside client would, and sends a little VP8.
type SelfTestClient struct {
	pc        *webrtc.PeerConnection
	track     *webrtc.TrackLocalStaticRTP
	connected chan struct{}
	failed    chan struct{}
}

// NewSelfTestClient builds the client: VP8 only, UDP4, no mDNS, loopback
// allowed (the public address may be this host's own), and, when localIPs
// is not empty, only those local addresses.
func NewSelfTestClient(localIPs []net.IP) (*SelfTestClient, error) {
	m := &webrtc.MediaEngine{}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: vp8, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	if len(localIPs) > 0 {
		se.SetIPFilter(func(ip net.IP) bool {
			for _, a := range localIPs {
				if a.Equal(ip) {
					return true
				}
			}
			return false
		})
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", "pinhole-selftest")
	if err == nil {
		_, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	c := &SelfTestClient{pc: pc, track: track, connected: make(chan struct{}), failed: make(chan struct{})}
	var connOnce, failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(c.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			failOnce.Do(func() { close(c.failed) })
		}
	})
	return c, nil
}

// Offer gathers and returns the client's offer without its candidates: the
// engine must learn the client's address from checks arriving through the
// mapping. With them it would check the client's host address directly, on
// this very host, and pass without the mapping.
func (c *SelfTestClient) Offer(ctx context.Context) (string, error) {
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return stripCandidates(c.pc.LocalDescription().SDP), nil
}

// Connect applies the engine's answer and waits until the client is
// connected (true) or failed, or ctx ends (false).
func (c *SelfTestClient) Connect(ctx context.Context, answer string) (bool, error) {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return false, err
	}
	select {
	case <-c.connected:
		return true, nil
	case <-c.failed:
	case <-ctx.Done():
	}
	return false, nil
}

// SendMedia writes selfTestFrames small keyframes at a steady pace, or
// until ctx ends.
func (c *SelfTestClient) SendMedia(ctx context.Context) {
	tick := time.NewTicker(selfTestInterval)
	defer tick.Stop()
	for i := range selfTestFrames {
		pkt := &rtp.Packet{
			Header:  rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3600},
			Payload: vp8Key,
		}
		if err := c.track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// Close closes the client's peer connection.
func (c *SelfTestClient) Close() error { return c.pc.Close() }

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
