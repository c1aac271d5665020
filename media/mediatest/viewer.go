package mediatest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// ViewerOptions configure NewViewer.
type ViewerOptions struct {
	// VideoCodecs are offered in order of preference ("vp8" or mime types);
	// default VP8, H264, VP9, AV1.
	VideoCodecs []string
	// Audio and Video choose the recvonly transceivers. Leaving both false
	// means both true: a viewer that receives nothing is never wanted.
	Audio, Video bool
	// Network chooses the candidates; default loopback only.
	Network Network
}

// ViewerStats are what a viewer received.
type ViewerStats struct {
	VideoPackets, AudioPackets uint64
	VideoBytes, AudioBytes     uint64 // RTP payload bytes
	// VideoFrames counts decodable frames: complete frames from a keyframe
	// on, with no missing packet since; after a gap, frames count again only
	// from the next keyframe, as a real decoder would need.
	VideoFrames uint64
	// KeyFrames counts complete keyframes received.
	KeyFrames uint64
	// Gaps counts the times the chain of decodable frames broke.
	Gaps uint64
	// FirstRTPAt is when the first RTP packet (any kind) arrived;
	// FirstKeyFrameAt when the first complete keyframe was assembled.
	FirstRTPAt, FirstKeyFrameAt time.Time
	// ConnectedAt is when the peer connection first reached connected.
	ConnectedAt time.Time
	// FirstVideoKey is whether the first video packet received started a
	// keyframe: a stream a decoder can start on.
	FirstVideoKey bool
	// SeqGaps and SeqRepeats count video packets, in arrival order after
	// the first, whose sequence number skipped ahead (a packet missing) or
	// did not advance (a duplicate or a reordered one); TSBackwards those
	// that advanced the sequence number but moved the RTP timestamp back.
	SeqGaps, SeqRepeats, TSBackwards uint64
	// Width and Height come from the last VP8 or VP9 keyframe (0 for other codecs).
	Width, Height int
	// Codec is the negotiated video mime type, AudioCodec the audio one.
	Codec, AudioCodec string
}

// Viewer is a WHEP-style receiver: a Pion PeerConnection with recvonly
// transceivers that reads every remote track, rebuilds video frames and
// counts the decodable ones.
type Viewer struct {
	pc *webrtc.PeerConnection
	wg sync.WaitGroup

	c          cond // guards the fields below
	conn       connState
	stats      ViewerStats
	videoTrack *webrtc.TrackRemote
	closed     bool

	closeOnce sync.Once
	closeErr  error
}

// NewViewer builds a viewer or fails the test. It is closed at the end of
// the test (Close may also be called earlier).
func NewViewer(tb testing.TB, opts ViewerOptions) *Viewer {
	tb.Helper()
	v, err := newViewer(opts)
	if err != nil {
		tb.Fatalf("mediatest: new viewer: %v", err)
	}
	tb.Cleanup(func() { _ = v.Close() })
	return v
}

func newViewer(opts ViewerOptions) (*Viewer, error) {
	if !opts.Audio && !opts.Video {
		opts.Audio, opts.Video = true, true
	}
	var video []webrtc.RTPCodecParameters
	if opts.Video {
		names := opts.VideoCodecs
		if len(names) == 0 {
			names = []string{CodecVP8, CodecH264, CodecVP9, CodecAV1}
		}
		for _, n := range names {
			p, err := VideoCodecParameters(n)
			if err != nil {
				return nil, err
			}
			video = append(video, p)
		}
	}
	pc, err := newPeerConnection(opts.Network, video, opts.Audio)
	if err != nil {
		return nil, err
	}
	v := &Viewer{pc: pc, c: newCond()}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		v.c.mu.Lock()
		v.conn.set(s)
		if s == webrtc.PeerConnectionStateConnected && v.stats.ConnectedAt.IsZero() {
			v.stats.ConnectedAt = time.Now()
		}
		v.c.broadcast()
		v.c.mu.Unlock()
	})
	pc.OnTrack(v.onTrack)
	recvonly := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	if opts.Video {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recvonly); err != nil {
			_ = v.Close()
			return nil, fmt.Errorf("add video transceiver: %w", err)
		}
	}
	if opts.Audio {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recvonly); err != nil {
			_ = v.Close()
			return nil, fmt.Errorf("add audio transceiver: %w", err)
		}
	}
	return v, nil
}

// PeerConnection returns the underlying Pion peer.
func (v *Viewer) PeerConnection() *webrtc.PeerConnection { return v.pc }

// Offer returns the complete SDP offer, after ICE gathering finished.
func (v *Viewer) Offer(ctx context.Context) (string, error) { return gatheredOffer(ctx, v.pc) }

// SetAnswer applies the server's SDP answer.
func (v *Viewer) SetAnswer(sdp string) error { return setAnswer(v.pc, sdp) }

// WaitConnected waits until the peer connection is connected; it fails
// early if the connection fails or closes.
func (v *Viewer) WaitConnected(ctx context.Context) error {
	return v.c.wait(ctx, func() (bool, error) { return v.conn.check() })
}

// onTrack starts a reader for each remote track, unless the viewer is closing.
func (v *Viewer) onTrack(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	v.c.mu.Lock()
	if v.closed {
		v.c.mu.Unlock()
		return
	}
	v.wg.Add(1)
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		v.videoTrack = t
		v.stats.Codec = t.Codec().MimeType
	} else {
		v.stats.AudioCodec = t.Codec().MimeType
	}
	v.c.mu.Unlock()
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		go v.readVideo(t)
	} else {
		go v.readAudio(t)
	}
}

// readAudio counts audio packets until the track ends.
func (v *Viewer) readAudio(t *webrtc.TrackRemote) {
	defer v.wg.Done()
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		v.c.mu.Lock()
		if v.stats.FirstRTPAt.IsZero() {
			v.stats.FirstRTPAt = now
		}
		v.stats.AudioPackets++
		v.stats.AudioBytes += uint64(len(pkt.Payload))
		v.c.broadcast()
		v.c.mu.Unlock()
	}
}

// depacketizer returns the payload reader for a video codec.
func depacketizer(mime string) rtp.Depacketizer {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return &codecs.VP8Packet{}
	case strings.ToLower(webrtc.MimeTypeH264):
		return &codecs.H264Packet{}
	case strings.ToLower(webrtc.MimeTypeVP9):
		return &codecs.VP9Packet{}
	case strings.ToLower(webrtc.MimeTypeAV1):
		return &codecs.AV1Depacketizer{}
	}
	return nil
}

// maxLatePackets is how far the sample builder waits for a missing packet
// (NACK retransmissions arrive within a few round trips on loopback) before
// it gives the frame up: a 400 kbit/s keyframe is ~20 packets, so 256 covers
// several frames.
const maxLatePackets = 256

// keyRing remembers the RTP timestamps of the last keyframe starts seen, so
// a frame popped from the sample builder can be recognised as a keyframe
// (the builder hands out depacketized data, not the first packet).
type keyRing struct {
	ts [8]uint32
	n  int
}

func (r *keyRing) add(ts uint32) {
	r.ts[r.n%len(r.ts)] = ts
	r.n++
}

func (r *keyRing) has(ts uint32) bool {
	for i := 0; i < r.n && i < len(r.ts); i++ {
		if r.ts[i] == ts {
			return true
		}
	}
	return false
}

// videoFrames rebuilds a track's frames and judges which are decodable.
// It is separate from the RTP reading so it can be tested packet by packet.
type videoFrames struct {
	mime      string
	clockRate uint32
	sb        *samplebuilder.SampleBuilder
	keys      keyRing
	lastSeq   uint16 // last sequence number of the last frame popped
	haveSeq   bool
	pushed    uint16 // last sequence number pushed
	havePush  bool
	synced    bool // a keyframe arrived and nothing was lost since
}

// frameResult describes one rebuilt frame.
type frameResult struct {
	key       bool // a complete keyframe
	decodable bool // a decoder fed since the last keyframe could show it
	gap       bool // the decodable chain broke just before this frame
}

// seqJump is a sequence-number jump treated as a new stream (a publisher
// replaced behind the same track) rather than loss: the sample builder
// measures distances modulo 2^16 and would otherwise drop the new
// packets as too old.
const seqJump = 2 * maxLatePackets

func newVideoFrames(mime string, clockRate uint32) *videoFrames {
	f := &videoFrames{mime: mime, clockRate: clockRate}
	f.reset()
	return f
}

// reset starts a new sample builder; nil when the codec is unknown.
func (f *videoFrames) reset() {
	f.sb = nil
	if d := depacketizer(f.mime); d != nil {
		f.sb = samplebuilder.New(maxLatePackets, d, f.clockRate, samplebuilder.WithRTPHeaders(true))
	}
}

// push adds a packet and calls fn for every frame completed by it.
func (f *videoFrames) push(pkt *rtp.Packet, fn func(frameResult)) {
	if f.sb == nil {
		return
	}
	if f.havePush {
		if d := int16(pkt.SequenceNumber - f.pushed); d > seqJump || d < -seqJump {
			f.reset()
		}
	}
	f.pushed, f.havePush = pkt.SequenceNumber, true
	if IsKeyFrame(f.mime, pkt.Payload) {
		f.keys.add(pkt.Timestamp)
	}
	f.sb.Push(pkt)
	for s := f.sb.Pop(); s != nil; s = f.sb.Pop() {
		var r frameResult
		r.key = f.keys.has(s.PacketTimestamp)
		// Frames are decodable in a chain: consecutive sequence numbers
		// from one frame to the next and no packet the builder dropped.
		contiguous := f.haveSeq && len(s.RTPHeaders) > 0 &&
			s.RTPHeaders[0].SequenceNumber == f.lastSeq+1 && s.PrevDroppedPackets == 0
		if len(s.RTPHeaders) > 0 {
			f.lastSeq = s.RTPHeaders[len(s.RTPHeaders)-1].SequenceNumber
			f.haveSeq = true
		}
		switch {
		case r.key:
			f.synced = true
		case f.synced && !contiguous:
			f.synced = false
			r.gap = true
		}
		r.decodable = f.synced
		fn(r)
	}
}

// readVideo counts packets, rebuilds frames and counts decodable ones
// until the track ends.
func (v *Viewer) readVideo(t *webrtc.TrackRemote) {
	defer v.wg.Done()
	mime := t.Codec().MimeType
	frames := newVideoFrames(mime, t.Codec().ClockRate)
	onFrame := func(r frameResult) {
		v.c.mu.Lock()
		if r.key {
			v.stats.KeyFrames++
			if v.stats.FirstKeyFrameAt.IsZero() {
				v.stats.FirstKeyFrameAt = time.Now()
			}
		}
		if r.gap {
			v.stats.Gaps++
		}
		if r.decodable {
			v.stats.VideoFrames++
		}
		v.c.broadcast()
		v.c.mu.Unlock()
	}
	var (
		lastSeq uint16
		lastTS  uint32
		seen    bool
	)
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		w, h, sized := KeyFrameSize(mime, pkt.Payload)
		v.c.mu.Lock()
		if v.stats.FirstRTPAt.IsZero() {
			v.stats.FirstRTPAt = now
		}
		if !seen {
			v.stats.FirstVideoKey = IsKeyFrame(mime, pkt.Payload)
			lastSeq, lastTS, seen = pkt.SequenceNumber, pkt.Timestamp, true
		} else {
			switch d := int16(pkt.SequenceNumber - lastSeq); {
			case d <= 0:
				v.stats.SeqRepeats++
			default:
				if d > 1 {
					v.stats.SeqGaps++
				}
				if int32(pkt.Timestamp-lastTS) < 0 {
					v.stats.TSBackwards++
				}
				lastSeq, lastTS = pkt.SequenceNumber, pkt.Timestamp
			}
		}
		v.stats.VideoPackets++
		v.stats.VideoBytes += uint64(len(pkt.Payload))
		if sized {
			v.stats.Width, v.stats.Height = w, h
		}
		v.c.mu.Unlock()
		frames.push(pkt, onFrame)
	}
}

// Stats returns what the viewer received so far.
func (v *Viewer) Stats() ViewerStats {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	return v.stats
}

// WaitVideoFrames waits until at least n decodable video frames arrived.
func (v *Viewer) WaitVideoFrames(ctx context.Context, n uint64) error {
	return v.wait(ctx, "video frames", n, func(s *ViewerStats) uint64 { return s.VideoFrames })
}

// WaitKeyFrames waits until at least n complete keyframes arrived.
func (v *Viewer) WaitKeyFrames(ctx context.Context, n uint64) error {
	return v.wait(ctx, "keyframes", n, func(s *ViewerStats) uint64 { return s.KeyFrames })
}

// WaitAudioPackets waits until at least n audio packets arrived.
func (v *Viewer) WaitAudioPackets(ctx context.Context, n uint64) error {
	return v.wait(ctx, "audio packets", n, func(s *ViewerStats) uint64 { return s.AudioPackets })
}

// wait waits for a counter and, on timeout, says how far it got, which is
// what a failing test needs to print.
func (v *Viewer) wait(ctx context.Context, what string, n uint64, get func(*ViewerStats) uint64) error {
	err := v.c.wait(ctx, func() (bool, error) { return get(&v.stats) >= n, nil })
	if err != nil {
		s := v.Stats()
		return fmt.Errorf("waiting for %d %s: got %d (stats %+v): %w", n, what, get(&s), s, err)
	}
	return nil
}

// ErrNoVideoTrack is returned by RequestKeyFrame before any video arrived.
var ErrNoVideoTrack = errors.New("mediatest: no video track yet")

// RequestKeyFrame sends a PLI for the received video track to the server,
// as a browser does when it cannot decode.
func (v *Viewer) RequestKeyFrame() error {
	v.c.mu.Lock()
	t := v.videoTrack
	v.c.mu.Unlock()
	if t == nil {
		return ErrNoVideoTrack
	}
	return v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.SSRC())}})
}

// Close closes the peer connection and waits for the track readers. It is
// idempotent.
func (v *Viewer) Close() error {
	v.closeOnce.Do(func() {
		v.c.mu.Lock()
		v.closed = true
		v.c.mu.Unlock()
		v.closeErr = v.pc.Close()
		v.wg.Wait()
	})
	return v.closeErr
}
