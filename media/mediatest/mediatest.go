// Package mediatest provides real WebRTC test clients for pinhole's tests: a
// WHIP-style Publisher that streams the encoded clip in media/testdata
// through a Pion PeerConnection in real time, and a WHEP-style Viewer that
// receives RTP, rebuilds video frames and counts the ones a decoder could
// actually decode (only after a keyframe, only without gaps).
//
// The clients are plain Pion peers: they produce an offer and take an
// answer, so the same client serves media tests (answered by an engine in
// process), handler tests (answered over HTTP, see Negotiate) and
// benchmarks. They gather only loopback candidates by default so test
// traffic never leaves the machine; Network overrides that for tests that
// build their own network namespaces.
//
// The package imports nothing of pinhole's so every package's tests can use it.
package mediatest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Short codec names accepted wherever a codec is named; mime types
// ("video/VP8") are accepted too.
const (
	CodecVP8  = "vp8"
	CodecH264 = "h264"
	CodecVP9  = "vp9"
	CodecAV1  = "av1"
)

// ErrNotConnected is returned by WaitConnected when the peer connection
// failed or was closed before reaching the connected state.
var ErrNotConnected = errors.New("mediatest: peer connection failed or closed")

// Network chooses where a client's ICE candidates come from.
type Network struct {
	// AllowedIPs are the only local addresses gathered as candidates.
	// Default: 127.0.0.1, so test traffic stays on loopback.
	AllowedIPs []net.IP
	// ICEServers are handed to the PeerConnection (e.g. a TURN server on
	// loopback). Default none: host candidates only.
	ICEServers []webrtc.ICEServer
	// ICETCP makes the client also use ICE over TCP (RFC 6544) as browsers
	// do: it opens active TCP connections to the answer's passive TCP
	// candidates (Pion gathers no TCP candidate of its own without a mux).
	ICETCP bool
	// NoUDP leaves UDP out of the client's network types, a client whose
	// network lets no UDP out; with ICETCP it connects over TCP or not at
	// all.
	NoUDP bool
	// Configure, when set, is applied to the SettingEngine last, after the
	// defaults (UDP4 only, mDNS off, loopback candidates on, the IP and
	// interface filters), so a test can change anything, e.g. ICE timeouts.
	Configure func(*webrtc.SettingEngine)
}

// allowedIPs returns the configured addresses or the loopback default.
func (n Network) allowedIPs() []net.IP {
	if len(n.AllowedIPs) > 0 {
		return n.AllowedIPs
	}
	return []net.IP{net.IPv4(127, 0, 0, 1)}
}

// settingEngine builds the SettingEngine every client uses: UDP over IPv4
// only (plus active ICE-TCP with ICETCP, minus UDP with NoUDP), no mDNS (its queries would leave loopback), loopback candidates
// included (Pion skips them by default), and only the allowed addresses
// gathered.
func (n Network) settingEngine() webrtc.SettingEngine {
	var se webrtc.SettingEngine
	var types []webrtc.NetworkType
	if !n.NoUDP {
		types = append(types, webrtc.NetworkTypeUDP4)
	}
	if n.ICETCP {
		types = append(types, webrtc.NetworkTypeTCP4)
	}
	se.SetNetworkTypes(types)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	allowed := n.allowedIPs()
	isAllowed := func(ip net.IP) bool {
		for _, a := range allowed {
			if a.Equal(ip) {
				return true
			}
		}
		return false
	}
	se.SetIPFilter(isAllowed)
	// On the loopback default, also keep Pion from enumerating any
	// interface but the one holding 127.0.0.1. Custom addresses (network
	// namespaces, a vnet installed by Configure, whose interfaces the OS
	// does not know) rely on the IP filter alone.
	if len(n.AllowedIPs) == 0 {
		se.SetInterfaceFilter(func(name string) bool {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return false
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				return false
			}
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && isAllowed(ipn.IP) {
					return true
				}
			}
			return false
		})
	}
	if n.Configure != nil {
		n.Configure(&se)
	}
	return se
}

// newPeerConnection builds a PeerConnection with its own MediaEngine (only
// the given codecs) and its own interceptor registry (NACK, RTCP reports,
// TWCC), as a browser would have.
func newPeerConnection(n Network, video []webrtc.RTPCodecParameters, audio bool, extra ...interceptor.Factory) (*webrtc.PeerConnection, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range video {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	if audio {
		if err := m.RegisterCodec(opusParameters(), webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register opus: %w", err)
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	for _, f := range extra {
		ir.Add(f)
	}
	api := webrtc.NewAPI(
		webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(n.settingEngine()),
	)
	return api.NewPeerConnection(webrtc.Configuration{ICEServers: n.ICEServers})
}

// rtxProber sends, after every video packet, a copy of it on the RTX
// stream (RFC 4588: the original sequence number first, then the payload),
// as libwebrtc does when it probes the bandwidth at a call's start. Pion's
// receiver hands repaired RTX back as the original packet, past SRTP's
// replay check (the RTX stream has sequence numbers of its own), so the
// application reads every such packet twice.
type rtxProber struct {
	interceptor.NoOp
	seq atomic.Uint32
}

func (r *rtxProber) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if !strings.HasPrefix(strings.ToLower(info.MimeType), "video/") || info.SSRCRetransmission == 0 {
		return w
	}
	ssrc, pt := info.SSRCRetransmission, info.PayloadTypeRetransmission
	return interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, a interceptor.Attributes) (int, error) {
		n, err := w.Write(h, p, a)
		if err != nil {
			return n, err
		}
		rh := h.Clone()
		rh.SSRC, rh.PayloadType, rh.SequenceNumber = ssrc, pt, uint16(r.seq.Add(1))
		rp := make([]byte, 2+len(p))
		binary.BigEndian.PutUint16(rp, h.SequenceNumber)
		copy(rp[2:], p)
		_, _ = w.Write(&rh, rp, a)
		return n, nil
	})
}

type rtxProberFactory struct{}

func (rtxProberFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rtxProber{}, nil
}

// videoFeedback is what browsers announce for video: PLI and FIR for
// keyframe requests, NACK for retransmission, REMB for bandwidth.
func videoFeedback() []webrtc.RTCPFeedback {
	return []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"},
		{Type: "nack"}, {Type: "nack", Parameter: "pli"},
	}
}

// MimeType returns the mime type for a short codec name or mime type
// ("vp8", "VP8", "video/vp8" -> "video/VP8"), or "" if it is not a video
// codec mediatest knows.
func MimeType(codec string) string {
	c := strings.ToLower(strings.TrimPrefix(strings.ToLower(codec), "video/"))
	switch c {
	case CodecVP8:
		return webrtc.MimeTypeVP8
	case CodecH264:
		return webrtc.MimeTypeH264
	case CodecVP9:
		return webrtc.MimeTypeVP9
	case CodecAV1:
		return webrtc.MimeTypeAV1
	}
	return ""
}

// VideoCodecParameters returns the RTP parameters mediatest offers for a
// video codec, with Pion's default payload types. H.264 is constrained
// baseline level 3.1 with packetization-mode 1, which is what the clip is
// and what browsers offer first.
func VideoCodecParameters(codec string) (webrtc.RTPCodecParameters, error) {
	mime := MimeType(codec)
	p := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, RTCPFeedback: videoFeedback()},
	}
	switch mime {
	case webrtc.MimeTypeVP8:
		p.PayloadType = 96
	case webrtc.MimeTypeH264:
		p.PayloadType = 102
		p.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
	case webrtc.MimeTypeVP9:
		p.PayloadType = 98
		p.SDPFmtpLine = "profile-id=0"
	case webrtc.MimeTypeAV1:
		p.PayloadType = 45
	default:
		return p, fmt.Errorf("mediatest: unknown video codec %q", codec)
	}
	return p, nil
}

// opusParameters are Pion's (and browsers') Opus parameters.
func opusParameters() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}
}

// gatheredOffer creates an offer, sets it and waits until ICE gathering is
// complete, so the returned SDP carries every candidate (WHIP clients that
// do not trickle send exactly this).
func gatheredOffer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("ice gathering: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}

// setAnswer applies an SDP answer.
func setAnswer(pc *webrtc.PeerConnection, sdp string) error {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("set remote description: %w", err)
	}
	return nil
}

// cond is a mutex plus a broadcast channel: waiters block on the channel,
// which is closed and replaced whenever the guarded state changes. Unlike
// sync.Cond it combines with ctx.Done in a select.
type cond struct {
	mu      sync.Mutex
	changed chan struct{}
}

func newCond() cond { return cond{changed: make(chan struct{})} }

// broadcast wakes every waiter; the caller holds mu.
func (c *cond) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// wait blocks until check (run under mu) reports done or an error, or ctx ends.
func (c *cond) wait(ctx context.Context, check func() (bool, error)) error {
	for {
		c.mu.Lock()
		done, err := check()
		ch := c.changed
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// connState follows a PeerConnection's state for WaitConnected.
// The caller holds mu.
type connState struct {
	state webrtc.PeerConnectionState
	// connected stays true once the peer connected, even if it later drops.
	connected bool
}

func (s *connState) set(st webrtc.PeerConnectionState) {
	s.state = st
	if st == webrtc.PeerConnectionStateConnected {
		s.connected = true
	}
}

// check reports whether the peer is connected, or fails once it can no
// longer get there.
func (s *connState) check() (bool, error) {
	switch s.state {
	case webrtc.PeerConnectionStateConnected:
		return true, nil
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		return false, fmt.Errorf("%w (state %s)", ErrNotConnected, s.state)
	}
	return false, nil
}
