package mediatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// PublisherOptions configure NewPublisher.
type PublisherOptions struct {
	// Video is the video codec to send: "vp8", "h264", "vp9", "av1" (or the
	// mime type), or "" for no video.
	Video string
	// Audio sends the Opus clip too.
	Audio bool
	// ClipDir holds the clip files; default DefaultClipDir().
	ClipDir string
	// IgnoreKeyFrameRequests keeps the clip playing in order when the
	// server sends PLI/FIR. By default the publisher answers a request the
	// way an encoder would: the next frame it sends is a keyframe (it jumps
	// ahead to the clip's next keyframe).
	IgnoreKeyFrameRequests bool
	// KeyFramesOnRequest models an encoder with an unbounded GOP, as
	// libwebrtc is by default: the first frame is a keyframe and later ones
	// come only when asked. The clip's own periodic keyframes are skipped
	// (the delta frames sent instead would not decode in a real decoder;
	// the Viewer only judges keyframes and packet continuity).
	KeyFramesOnRequest bool
	// MinKeyFrameInterval makes the publisher ignore a keyframe request
	// that arrives less than this after the last one it honoured, as
	// libwebrtc does (kMinKeyframeSendIntervalMs, 300 ms, in
	// video/encoder_rtcp_feedback.cc). Zero honours every request.
	MinKeyFrameInterval time.Duration
	// DropKeyFrameRequests ignores the first n keyframe requests, as if
	// they were lost on the way.
	DropKeyFrameRequests int
	// ProbeWithRTX negotiates RTX and sends a copy of every video packet
	// on it, as libwebrtc probes the bandwidth at a call's start; a Pion
	// receiver reads each packet twice (see rtxProber).
	ProbeWithRTX bool
	// Network chooses the candidates; default loopback only.
	Network Network
}

// PublisherStats are a publisher's totals.
type PublisherStats struct {
	VideoSamples   uint64 // video frames written
	VideoKeyFrames uint64 // of which keyframes
	AudioSamples   uint64 // Opus packets written
	PLIs           uint64 // picture loss indications received
	FIRs           uint64 // full intra requests received
	// Honoured counts the requests that made the publisher send a keyframe;
	// Ignored those it dropped (MinKeyFrameInterval, DropKeyFrameRequests,
	// IgnoreKeyFrameRequests).
	Honoured, Ignored uint64
}

// Publisher is a WHIP-style sender: a Pion PeerConnection with sendonly
// tracks that streams the test clip in real time, looping, once connected.
type Publisher struct {
	pc                   *webrtc.PeerConnection
	video, audio         *webrtc.TrackLocalStaticSample
	videoClip, audioClip *clip
	answerKeyRequests    bool
	onRequestOnly        bool
	minKeyInterval       time.Duration
	dropRequests         int       // guarded by c.mu
	lastHonoured         time.Time // guarded by c.mu

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// keyRequested is set by the RTCP reader and consumed by the video loop.
	keyRequested atomic.Bool

	c       cond // guards the fields below
	conn    connState
	stats   PublisherStats
	started bool
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// NewPublisher builds a publisher or fails the test. It is closed at the
// end of the test (Close may also be called earlier).
func NewPublisher(tb testing.TB, opts PublisherOptions) *Publisher {
	tb.Helper()
	p, err := newPublisher(opts)
	if err != nil {
		tb.Fatalf("mediatest: new publisher: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

func newPublisher(opts PublisherOptions) (*Publisher, error) {
	if opts.Video == "" && !opts.Audio {
		return nil, errors.New("neither video nor audio")
	}
	dir := opts.ClipDir
	if dir == "" {
		dir = DefaultClipDir()
	}
	p := &Publisher{
		c: newCond(), answerKeyRequests: !opts.IgnoreKeyFrameRequests,
		onRequestOnly: opts.KeyFramesOnRequest, minKeyInterval: opts.MinKeyFrameInterval,
		dropRequests: opts.DropKeyFrameRequests,
	}
	var videoCodecs []webrtc.RTPCodecParameters
	if opts.Video != "" {
		vp, err := VideoCodecParameters(opts.Video)
		if err != nil {
			return nil, err
		}
		videoCodecs = append(videoCodecs, vp)
		if p.videoClip, err = loadClip(dir, opts.Video); err != nil {
			return nil, err
		}
		if p.video, err = webrtc.NewTrackLocalStaticSample(vp.RTPCodecCapability, "video", "mediatest"); err != nil {
			return nil, err
		}
	}
	if opts.Audio {
		var err error
		if p.audioClip, err = loadClip(dir, "opus"); err != nil {
			return nil, err
		}
		if p.audio, err = webrtc.NewTrackLocalStaticSample(opusParameters().RTPCodecCapability, "audio", "mediatest"); err != nil {
			return nil, err
		}
	}
	var extra []interceptor.Factory
	if opts.ProbeWithRTX && len(videoCodecs) > 0 {
		videoCodecs = append(videoCodecs, webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000,
				SDPFmtpLine: fmt.Sprintf("apt=%d", videoCodecs[0].PayloadType)},
			PayloadType: videoCodecs[0].PayloadType + 1,
		})
		extra = append(extra, rtxProberFactory{})
	}
	pc, err := newPeerConnection(opts.Network, videoCodecs, opts.Audio, extra...)
	if err != nil {
		return nil, err
	}
	p.pc = pc
	p.ctx, p.cancel = context.WithCancel(context.Background())
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.c.mu.Lock()
		p.conn.set(s)
		p.c.broadcast()
		p.c.mu.Unlock()
	})
	for _, t := range []*webrtc.TrackLocalStaticSample{p.video, p.audio} {
		if t == nil {
			continue
		}
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("add %s track: %w", t.Kind(), err)
		}
		// Reading RTCP is what lets the interceptors (NACK responder,
		// reports) work; it is also where keyframe requests arrive.
		p.wg.Add(1)
		go p.readRTCP(tr.Sender())
	}
	return p, nil
}

// PeerConnection returns the underlying Pion peer, for tests that need
// more (ICE restart, stats).
func (p *Publisher) PeerConnection() *webrtc.PeerConnection { return p.pc }

// Offer returns the complete SDP offer, after ICE gathering finished.
func (p *Publisher) Offer(ctx context.Context) (string, error) { return gatheredOffer(ctx, p.pc) }

// SetAnswer applies the server's SDP answer.
func (p *Publisher) SetAnswer(sdp string) error { return setAnswer(p.pc, sdp) }

// WaitConnected waits until the peer connection is connected; it fails
// early if the connection fails or closes.
func (p *Publisher) WaitConnected(ctx context.Context) error {
	return p.c.wait(ctx, func() (bool, error) { return p.conn.check() })
}

// Start streams the clip(s) in real time, looping, with continuous RTP
// timestamps. It may be called before the connection is up: sending begins
// once the peer is connected, so the first frame a server sees is the
// clip's first keyframe. Further calls do nothing.
func (p *Publisher) Start() {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	if p.video != nil {
		p.wg.Add(1)
		go p.stream(p.video, p.videoClip, true)
	}
	if p.audio != nil {
		p.wg.Add(1)
		go p.stream(p.audio, p.audioClip, false)
	}
}

// stream writes c's frames to track at their pace until Close.
func (p *Publisher) stream(track *webrtc.TrackLocalStaticSample, c *clip, video bool) {
	defer p.wg.Done()
	err := p.c.wait(p.ctx, func() (bool, error) { return p.conn.connected, nil })
	if err != nil {
		return
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	next := time.Now()
	sent := 0
	for i := 0; ; i = (i + 1) % len(c.frames) {
		if video {
			switch asked := p.keyRequested.Swap(false); {
			case asked && !c.frames[i].key:
				i = c.nextKey(i)
			case !asked && sent > 0 && p.onRequestOnly && c.frames[i].key:
				i = c.nextDelta(i)
			}
		}
		f := c.frames[i]
		sent++
		if err := track.WriteSample(media.Sample{Data: f.data, Duration: f.dur}); errors.Is(err, io.ErrClosedPipe) {
			return
		}
		p.c.mu.Lock()
		if video {
			p.stats.VideoSamples++
			if f.key {
				p.stats.VideoKeyFrames++
			}
		} else {
			p.stats.AudioSamples++
		}
		p.c.mu.Unlock()

		// Pace on an absolute schedule so timer jitter does not add up; after
		// a long stall (a loaded CI machine) start afresh instead of bursting.
		next = next.Add(f.dur)
		if d := time.Until(next); d < -time.Second {
			next = time.Now()
		} else if d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-p.ctx.Done():
				return
			}
		}
		if p.ctx.Err() != nil {
			return
		}
	}
}

// readRTCP drains a sender's RTCP, counting keyframe requests, until the
// peer connection closes.
func (p *Publisher) readRTCP(s *webrtc.RTPSender) {
	defer p.wg.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		var plis, firs uint64
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication:
				plis++
			case *rtcp.FullIntraRequest:
				firs++
			}
		}
		if plis+firs == 0 {
			continue
		}
		// One RTCP compound is one request, however many PLI/FIR it holds.
		// Decided under mu: the audio and video senders each have a reader.
		now := time.Now()
		p.c.mu.Lock()
		honour := p.answerKeyRequests
		if p.dropRequests > 0 {
			p.dropRequests--
			honour = false
		}
		if honour && p.minKeyInterval > 0 && !p.lastHonoured.IsZero() && now.Sub(p.lastHonoured) < p.minKeyInterval {
			honour = false
		}
		if honour {
			p.lastHonoured = now
			p.keyRequested.Store(true)
			p.stats.Honoured++
		} else {
			p.stats.Ignored++
		}
		p.stats.PLIs += plis
		p.stats.FIRs += firs
		p.c.broadcast()
		p.c.mu.Unlock()
	}
}

// Stats returns the publisher's totals so far.
func (p *Publisher) Stats() PublisherStats {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.stats
}

// WaitKeyFrameRequests waits until at least n PLI or FIR packets arrived.
func (p *Publisher) WaitKeyFrameRequests(ctx context.Context, n uint64) error {
	return p.c.wait(ctx, func() (bool, error) { return p.stats.PLIs+p.stats.FIRs >= n, nil })
}

// Close stops streaming, closes the peer connection and waits for every
// goroutine the publisher started. It is idempotent.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.c.mu.Lock()
		p.closed = true
		p.c.mu.Unlock()
		if p.cancel != nil {
			p.cancel()
		}
		if p.pc != nil {
			p.closeErr = p.pc.Close()
		}
		p.wg.Wait()
	})
	return p.closeErr
}
