package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// clientNetworkTypes are the network types of clients built from now on;
// BenchmarkTCPFallback switches viewers to ICE-TCP only (benchmarks run
// one at a time).
var clientNetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}

// loopbackAPI builds a Pion API for a benchmark client: VP8 and Opus, the
// default interceptors (NACK, reports, TWCC: what a browser runs), and ICE
// restricted to 127.0.0.1 so no packet leaves loopback.
func loopbackAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes(clientNetworkTypes)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	lo := net.IPv4(127, 0, 0, 1)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// gatheredOffer creates and sets an offer and waits for every candidate.
func gatheredOffer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// The synthetic publisher's stream: the figures of a 720p30 browser
// stream at 2.5 Mbit/s. Each frame's packets are paced over 40% of the
// frame interval, as a browser's pacer spreads them; a keyframe is 4 times
// a delta frame and comes every 2 s or at once after a PLI.
const (
	synthFPS        = 30
	synthBitrate    = 2_500_000
	synthGOP        = 2 * synthFPS
	synthKeyFactor  = 4
	synthMaxPayload = 1100
	synthPacing     = 0.4
	// synthDelta makes the average over a GOP the target bitrate.
	synthDelta     = synthBitrate / 8 / synthFPS * synthGOP / (synthGOP - 1 + synthKeyFactor)
	synthAudioSize = 160 // 64 kbit/s Opus, 20 ms
	// stampOff is where the send time and packet index sit in every
	// payload: after the 1-byte VP8 descriptor and the frame tag byte.
	stampOff = 2
	stampLen = 12
)

// synthPublisher sends synthetic VP8 and Opus RTP at browser rates. Every
// payload carries its send time (monotonic ns since base) and a global
// packet index, so a viewer in this process can compute each packet's
// one-way delay and find lost ones. VP8 payloads have a valid payload
// descriptor and frame tag, so pinhole's keyframe detection works on them;
// the rest is random bytes.
type synthPublisher struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	base         time.Time
	index        atomic.Uint32
	keyWanted    atomic.Bool
	plis         atomic.Uint64
	connected    chan struct{}
	connOnce     sync.Once
	stop         chan struct{}
	stopOnce     sync.Once
	wg           sync.WaitGroup
}

// publishSynth publishes a synthetic publisher (send stamps relative to
// base) to srv at path, starts its media once connected and closes it when
// b ends.
func publishSynth(ctx context.Context, b *testing.B, srv *server, path string, base time.Time) *synthPublisher {
	b.Helper()
	pub, err := newSynthPublisher(base)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pub.close)
	offer, err := gatheredOffer(ctx, pub.pc)
	if err != nil {
		b.Fatal(err)
	}
	r, _, err := srv.post(ctx, path, offer)
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.answer}); err != nil {
		b.Fatal(err)
	}
	pub.start()
	if err := pub.waitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	return pub
}

func newSynthPublisher(base time.Time) (*synthPublisher, error) {
	a, err := loopbackAPI()
	if err != nil {
		return nil, err
	}
	pc, err := a.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &synthPublisher{pc: pc, base: base, connected: make(chan struct{}), stop: make(chan struct{})}
	p.keyWanted.Store(true)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			p.connOnce.Do(func() { close(p.connected) })
		}
	})
	if p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "synth"); err != nil {
		return nil, err
	}
	if p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "synth"); err != nil {
		return nil, err
	}
	for _, t := range []*webrtc.TrackLocalStaticRTP{p.video, p.audio} {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		p.wg.Add(1)
		go p.readRTCP(tr.Sender())
	}
	return p, nil
}

func (p *synthPublisher) readRTCP(s *webrtc.RTPSender) {
	defer p.wg.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.plis.Add(1)
				p.keyWanted.Store(true) // an encoder sends a keyframe next
			}
		}
	}
}

// start sends until close, once connected.
func (p *synthPublisher) start() {
	p.wg.Add(2)
	go p.sendVideo()
	go p.sendAudio()
}

func (p *synthPublisher) stamp(b []byte) {
	binary.BigEndian.PutUint64(b[stampOff:], uint64(time.Since(p.base)))
	binary.BigEndian.PutUint32(b[stampOff+8:], p.index.Add(1)-1)
}

func (p *synthPublisher) waitConnected(ctx context.Context) error {
	select {
	case <-p.connected:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *synthPublisher) sendVideo() {
	defer p.wg.Done()
	select {
	case <-p.connected:
	case <-p.stop:
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	filler := make([]byte, synthMaxPayload*synthKeyFactor*16)
	for i := range filler {
		filler[i] = byte(rng.Uint32())
	}
	buf := make([]byte, synthMaxPayload)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}}
	tick := time.NewTicker(time.Second / synthFPS)
	defer tick.Stop()
	var seq uint16
	var ts uint32
	sinceKey := 0
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		key := p.keyWanted.Swap(false) || sinceKey >= synthGOP
		size := synthDelta
		if key {
			size *= synthKeyFactor
			sinceKey = 0
		}
		sinceKey++
		// Pace the frame's packets over synthPacing of the frame interval,
		// as a browser's pacer does (Chrome sends at 2.5 times the target
		// bitrate), instead of one burst.
		npk := (size + synthMaxPayload - stampOff - stampLen - 1) / (synthMaxPayload - stampOff - stampLen)
		gap := time.Duration(float64(time.Second/synthFPS) * synthPacing / float64(npk))
		start := time.Now()
		k := 0
		for off := 0; off < size; off += synthMaxPayload - stampOff - stampLen {
			if d := time.Until(start.Add(time.Duration(k) * gap)); d > 0 {
				time.Sleep(d)
			}
			k++
			n := min(synthMaxPayload, size-off+stampOff+stampLen)
			copy(buf[stampOff+stampLen:n], filler[(off+int(ts))%(len(filler)-synthMaxPayload):])
			buf[0], buf[1] = 0x00, 0xff // continuation: S=0
			if off == 0 {
				buf[0] = 0x10 // S=1, partition 0
				buf[1] = 0x01 // frame tag: P=1, inter frame
				if key {
					buf[1] = 0x00
				}
			}
			pkt.SequenceNumber, pkt.Timestamp = seq, ts
			pkt.Marker = off+synthMaxPayload-stampOff-stampLen >= size
			pkt.Payload = buf[:n]
			seq++
			p.stamp(buf)
			if err := p.video.WriteRTP(pkt); errors.Is(err, io.ErrClosedPipe) {
				return
			}
		}
		ts += 90000 / synthFPS
	}
}

func (p *synthPublisher) sendAudio() {
	defer p.wg.Done()
	select {
	case <-p.connected:
	case <-p.stop:
		return
	}
	buf := make([]byte, synthAudioSize)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	buf[0] = 0xfc // Opus TOC: CELT FB 20 ms, one frame
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 2}, Payload: buf}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		p.stamp(buf)
		if err := p.audio.WriteRTP(pkt); errors.Is(err, io.ErrClosedPipe) {
			return
		}
		pkt.SequenceNumber++
		pkt.Timestamp += 960
	}
}

func (p *synthPublisher) close() {
	p.stopOnce.Do(func() {
		close(p.stop)
		_ = p.pc.Close()
		p.wg.Wait()
	})
}

// delayViewer receives a synthPublisher's stream and records, for packets
// whose index falls in the measurement window, the one-way delay and which
// indices arrived.
type delayViewer struct {
	pc        *webrtc.PeerConnection
	base      time.Time
	wg        sync.WaitGroup
	connected chan struct{}
	connOnce  sync.Once
	gotKey    chan struct{}
	keyOnce   sync.Once
	gotRTP    chan struct{}
	rtpOnce   sync.Once

	mu      sync.Mutex
	lo, hi  uint32 // window of packet indices; hi == 0: not measuring
	seen    []bool // index-lo -> received
	delays  []time.Duration
	packets uint64
	m       milestones
	keyTS   uint32
	inKey   bool
	keyDone chan struct{}
}

// milestones are times since the viewer's base (its POST in
// BenchmarkTimeToMedia).
type milestones struct {
	ice, dtls, firstRTP, keyComplete time.Duration
}

// newDelayViewer builds a viewer. offerer makes it a WHEP client (recvonly
// transceivers, it offers); otherwise it answers a publisher's offer
// directly (the direct-path baseline).
func newDelayViewer(base time.Time, offerer bool) (*delayViewer, error) {
	a, err := loopbackAPI()
	if err != nil {
		return nil, err
	}
	pc, err := a.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &delayViewer{pc: pc, base: base, connected: make(chan struct{}), gotKey: make(chan struct{}), gotRTP: make(chan struct{}), keyDone: make(chan struct{})}
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			v.mark(&v.m.ice)
		}
	})
	pc.SCTP().Transport().OnStateChange(func(s webrtc.DTLSTransportState) {
		if s == webrtc.DTLSTransportStateConnected {
			v.mark(&v.m.dtls)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			v.connOnce.Do(func() { close(v.connected) })
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		go v.read(t)
	})
	if offerer {
		recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, recv); err != nil {
				_ = pc.Close()
				return nil, err
			}
		}
	}
	return v, nil
}

func (v *delayViewer) read(t *webrtc.TrackRemote) {
	defer v.wg.Done()
	video := t.Kind() == webrtc.RTPCodecTypeVideo
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := time.Since(v.base)
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		pl := buf[hl:n]
		key := video && mediatest.IsKeyFrame(webrtc.MimeTypeVP8, pl)
		if key {
			v.keyOnce.Do(func() { close(v.gotKey) })
		}
		v.mu.Lock()
		v.packets++
		if v.m.firstRTP == 0 {
			v.m.firstRTP = now
			v.rtpOnce.Do(func() { close(v.gotRTP) })
		}
		// The first keyframe is complete when the packet with the marker
		// bit and its timestamp arrives (loopback does not reorder).
		if key && v.m.keyComplete == 0 {
			v.inKey, v.keyTS = true, h.Timestamp
		}
		if video && v.inKey && h.Marker && h.Timestamp == v.keyTS {
			v.inKey = false
			v.m.keyComplete = now
			close(v.keyDone)
		}
		if v.hi != 0 && len(pl) >= stampOff+stampLen {
			sent := time.Duration(binary.BigEndian.Uint64(pl[stampOff:]))
			idx := binary.BigEndian.Uint32(pl[stampOff+8:])
			if idx >= v.lo && idx < v.hi && !v.seen[idx-v.lo] {
				v.seen[idx-v.lo] = true
				v.delays = append(v.delays, now-sent)
			}
		}
		v.mu.Unlock()
	}
}

// window starts measuring packets with index in [lo, hi).
func (v *delayViewer) window(lo, hi uint32) {
	v.mu.Lock()
	v.lo, v.hi = lo, hi
	v.seen = make([]bool, hi-lo)
	v.delays = make([]time.Duration, 0, hi-lo)
	v.mu.Unlock()
}

// result returns the delays recorded in the window and how many packets of
// it arrived.
func (v *delayViewer) result() (delays []time.Duration, received int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.delays), len(v.delays)
}

func (v *delayViewer) waitKey(ctx context.Context) error {
	select {
	case <-v.gotKey:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no keyframe: %w", ctx.Err())
	}
}

func (v *delayViewer) mark(d *time.Duration) {
	now := time.Since(v.base)
	v.mu.Lock()
	if *d == 0 {
		*d = now
	}
	v.mu.Unlock()
}

func (v *delayViewer) milestones() milestones {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m
}

// waitRTP waits for the first RTP packet.
func (v *delayViewer) waitRTP(ctx context.Context) error {
	select {
	case <-v.gotRTP:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no RTP: %w", ctx.Err())
	}
}

// waitKeyComplete waits until the first keyframe has fully arrived.
func (v *delayViewer) waitKeyComplete(ctx context.Context) error {
	select {
	case <-v.keyDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no complete keyframe: %w", ctx.Err())
	}
}

func (v *delayViewer) close() {
	_ = v.pc.Close()
	v.wg.Wait()
}

// quantile returns the q-quantile (0 < q <= 1) of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
