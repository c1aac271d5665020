package mediatest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/transport/v5/test"
	"github.com/pion/webrtc/v4"
)

// TestClipKeyFrames checks the clip parsers and the RTP keyframe detector
// together: every clip frame is packetized by Pion's own payloader, and the
// detector must find exactly the clip's keyframes (every 30th frame).
func TestClipKeyFrames(t *testing.T) {
	for _, tc := range []struct {
		codec     string
		payloader func() rtp.Payloader
		sized     bool
	}{
		{CodecVP8, func() rtp.Payloader { return &codecs.VP8Payloader{EnablePictureID: true} }, true},
		{CodecH264, func() rtp.Payloader { return &codecs.H264Payloader{} }, false},
		{CodecVP9, func() rtp.Payloader { return &codecs.VP9Payloader{} }, true},
		{CodecAV1, func() rtp.Payloader { return &codecs.AV1Payloader{} }, false},
	} {
		t.Run(tc.codec, func(t *testing.T) {
			c, err := loadClip(DefaultClipDir(), tc.codec)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.frames) != 120 {
				t.Fatalf("frames = %d, want 120 (4 s at 30 fps)", len(c.frames))
			}
			mime := MimeType(tc.codec)
			pl := tc.payloader()
			for i, f := range c.frames {
				if want := i%30 == 0; f.key != want {
					t.Fatalf("frame %d: clip key = %v, want %v", i, f.key, want)
				}
				if f.dur != time.Second/30 {
					t.Fatalf("frame %d: duration %v", i, f.dur)
				}
				pkts := pl.Payload(1200, f.data)
				if len(pkts) == 0 {
					t.Fatalf("frame %d: no packets", i)
				}
				if got := IsKeyFrame(mime, pkts[0]); got != f.key {
					t.Fatalf("frame %d: IsKeyFrame(first packet) = %v, want %v", i, got, f.key)
				}
				for j, p := range pkts[1:] {
					if IsKeyFrame(mime, p) && !f.key {
						t.Fatalf("frame %d packet %d: delta frame packet detected as key", i, j+1)
					}
				}
				if f.key && tc.sized {
					w, h, ok := KeyFrameSize(mime, pkts[0])
					if !ok || w != 320 || h != 240 {
						t.Fatalf("frame %d: size %dx%d ok=%v, want 320x240", i, w, h, ok)
					}
				}
			}
		})
	}
}

// TestClipOpus checks the Ogg parser: 4 s of 20 ms packets.
func TestClipOpus(t *testing.T) {
	c, err := loadClip(DefaultClipDir(), "opus")
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for i, f := range c.frames {
		if f.dur != 20*time.Millisecond {
			t.Fatalf("packet %d: duration %v, want 20ms", i, f.dur)
		}
		total += f.dur
	}
	if total < 4*time.Second || total > 4100*time.Millisecond {
		t.Fatalf("total %v, want about 4 s", total)
	}
}

func TestIsKeyFrameEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 empty", webrtc.MimeTypeVP8, nil, false},
		{"vp8 key no ext", webrtc.MimeTypeVP8, []byte{0x10, 0x00}, true},
		{"vp8 delta", webrtc.MimeTypeVP8, []byte{0x10, 0x01}, false},
		{"vp8 continuation", webrtc.MimeTypeVP8, []byte{0x00, 0x00}, false},
		{"vp8 key 15-bit picture id", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x81, 0x02, 0x00}, true},
		{"vp8 truncated ext", webrtc.MimeTypeVP8, []byte{0x90, 0x80}, false},
		{"h264 idr", webrtc.MimeTypeH264, []byte{0x65, 0x88}, true},
		{"h264 non-idr", webrtc.MimeTypeH264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68}, true},
		{"h264 stap-a truncated", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", webrtc.MimeTypeH264, []byte{0x7c, 0x85, 0x00}, true},
		{"h264 fu-a idr middle", webrtc.MimeTypeH264, []byte{0x7c, 0x05, 0x00}, false},
		{"vp9 key", webrtc.MimeTypeVP9, []byte{0x88, 0x00}, true},
		{"vp9 inter", webrtc.MimeTypeVP9, []byte{0xc8, 0x00, 0x00}, false},
		{"av1 new sequence", webrtc.MimeTypeAV1, []byte{0x18}, true},
		{"av1 other", webrtc.MimeTypeAV1, []byte{0x10}, false},
		{"unknown codec", "video/H265", []byte{0x00}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsKeyFrame(tc.mime, tc.payload); got != tc.want {
				t.Fatalf("IsKeyFrame = %v, want %v", got, tc.want)
			}
		})
	}
}

// forwarder is a minimal SFU for these tests: it answers a publisher and a
// viewer with plain Pion peers on loopback, copies RTP from the publisher's
// tracks to TrackLocalStaticRTP tracks the viewer receives, and forwards the
// viewer's PLIs to the publisher.
type forwarder struct {
	pub, view    *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP

	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	pubVideo webrtc.SSRC
}

func newForwarder(t *testing.T, codec string) *forwarder {
	t.Helper()
	vp, err := VideoCodecParameters(codec)
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{}
	if f.pub, err = newPeerConnection(Network{}, []webrtc.RTPCodecParameters{vp}, true); err != nil {
		t.Fatal(err)
	}
	if f.view, err = newPeerConnection(Network{}, []webrtc.RTPCodecParameters{vp}, true); err != nil {
		t.Fatal(err)
	}
	if f.video, err = webrtc.NewTrackLocalStaticRTP(vp.RTPCodecCapability, "video", "fwd"); err != nil {
		t.Fatal(err)
	}
	if f.audio, err = webrtc.NewTrackLocalStaticRTP(opusParameters().RTPCodecCapability, "audio", "fwd"); err != nil {
		t.Fatal(err)
	}
	f.pub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		dst := f.audio
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return
		}
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			dst = f.video
			f.pubVideo = tr.SSRC()
		}
		f.wg.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				_ = dst.WriteRTP(pkt)
			}
		}()
	})
	t.Cleanup(func() { f.Close() })
	return f
}

// answerSDP answers an offer on pc with every candidate gathered.
func answerSDP(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// answer is answerSDP failing the test on error.
func answer(ctx context.Context, t *testing.T, pc *webrtc.PeerConnection, offer string) string {
	t.Helper()
	sdp, err := answerSDP(ctx, pc, offer)
	if err != nil {
		t.Fatal(err)
	}
	return sdp
}

// connectPublisher answers p on the forwarder's publisher side.
func (f *forwarder) connectPublisher(ctx context.Context, t *testing.T, p *Publisher) {
	t.Helper()
	offer, err := p.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetAnswer(answer(ctx, t, f.pub, offer)); err != nil {
		t.Fatal(err)
	}
}

// connectViewer answers v on the forwarder's viewer side, sending both tracks.
func (f *forwarder) connectViewer(ctx context.Context, t *testing.T, v *Viewer) {
	t.Helper()
	offer, err := v.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.view.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{f.video, f.audio} {
		s, err := f.view.AddTrack(tr)
		if err != nil {
			t.Fatal(err)
		}
		f.wg.Add(1)
		go f.forwardRTCP(s)
	}
	ans, err := f.view.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(f.view)
	if err := f.view.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := v.SetAnswer(f.view.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
}

// forwardRTCP passes the viewer's keyframe requests on to the publisher.
func (f *forwarder) forwardRTCP(s *webrtc.RTPSender) {
	defer f.wg.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if _, ok := p.(*rtcp.PictureLossIndication); ok {
				f.mu.Lock()
				ssrc := f.pubVideo
				f.mu.Unlock()
				_ = f.pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
			}
		}
	}
}

func (f *forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	_ = f.view.Close()
	_ = f.pub.Close()
	f.wg.Wait()
}

// TestPublisherViewer sends the clip from a Publisher through a Pion
// forwarder to a Viewer over loopback, for every codec, and checks that
// decodable video and audio arrive, that the picture size is read from
// keyframes, and that a viewer's PLI reaches the publisher and brings a
// new keyframe. Nothing may leak after Close.
func TestPublisherViewer(t *testing.T) {
	for _, codec := range []string{CodecVP8, CodecH264, CodecVP9, CodecAV1} {
		t.Run(codec, func(t *testing.T) {
			defer test.CheckRoutines(t)()
			lim := test.TimeOut(60 * time.Second)
			defer lim.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			fwd := newForwarder(t, codec)
			defer fwd.Close()
			p := NewPublisher(t, PublisherOptions{Video: codec, Audio: true})
			defer func() { _ = p.Close() }()
			v := NewViewer(t, ViewerOptions{VideoCodecs: []string{codec}, Audio: true, Video: true})
			defer func() { _ = v.Close() }()

			// The viewer connects first so that the forwarder can deliver the
			// publisher's very first frame, a keyframe.
			fwd.connectViewer(ctx, t, v)
			if err := v.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			fwd.connectPublisher(ctx, t, p)
			p.Start()
			if err := p.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			if err := v.WaitVideoFrames(ctx, 45); err != nil {
				t.Fatal(err)
			}
			if err := v.WaitAudioPackets(ctx, 50); err != nil {
				t.Fatal(err)
			}
			s := v.Stats()
			if s.Codec != MimeType(codec) || s.AudioCodec != webrtc.MimeTypeOpus {
				t.Fatalf("codecs %q %q", s.Codec, s.AudioCodec)
			}
			if s.KeyFrames < 1 || s.FirstKeyFrameAt.IsZero() || s.FirstRTPAt.IsZero() {
				t.Fatalf("no keyframe: %+v", s)
			}
			if codec == CodecVP8 || codec == CodecVP9 {
				if s.Width != 320 || s.Height != 240 {
					t.Fatalf("size %dx%d, want 320x240", s.Width, s.Height)
				}
			}

			// A viewer's PLI travels to the publisher, which answers with a
			// keyframe.
			before := s.KeyFrames
			if err := v.RequestKeyFrame(); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitKeyFrameRequests(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if err := v.WaitKeyFrames(ctx, before+1); err != nil {
				t.Fatal(err)
			}
			ps := p.Stats()
			t.Logf("publisher %+v", ps)
			t.Logf("viewer %+v", v.Stats())
			if ps.PLIs < 1 || ps.VideoSamples == 0 || ps.AudioSamples == 0 {
				t.Fatalf("publisher stats %+v", ps)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil { // idempotent
				t.Fatal(err)
			}
		})
	}
}

// clipPackets packetizes n frames of a codec's clip (looping) as Pion's
// sender would: one RTP timestamp per frame, marker on its last packet.
func clipPackets(t *testing.T, codec string, payloader rtp.Payloader, n int) (pkts []*rtp.Packet, frameOf []int) {
	t.Helper()
	c, err := loadClip(DefaultClipDir(), codec)
	if err != nil {
		t.Fatal(err)
	}
	seq, ts := uint16(65000), uint32(1) // wraps the sequence number on purpose
	for i := 0; i < n; i++ {
		payloads := payloader.Payload(1200, c.frames[i%len(c.frames)].data)
		for j, pl := range payloads {
			pkts = append(pkts, &rtp.Packet{
				Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: j == len(payloads)-1},
				Payload: pl,
			})
			frameOf = append(frameOf, i)
			seq++
		}
		ts += 3000
	}
	return pkts, frameOf
}

type frameTally struct{ frames, keys, decodable, gaps int }

func (ft *frameTally) add(r frameResult) {
	ft.frames++
	if r.key {
		ft.keys++
	}
	if r.decodable {
		ft.decodable++
	}
	if r.gap {
		ft.gaps++
	}
}

// TestVideoFrames checks the decodability judgement packet by packet: a
// clean stream is decodable from its first keyframe, a lost packet stops
// decoding until the next keyframe, and a stream replaced behind the same
// track (a sequence number jump) recovers at its first keyframe.
func TestVideoFrames(t *testing.T) {
	const n = 240 // two loops of the clip: keyframes at 0, 30, ... 210
	t.Run("clean", func(t *testing.T) {
		pkts, _ := clipPackets(t, CodecVP8, &codecs.VP8Payloader{EnablePictureID: true}, n)
		var ft frameTally
		f := newVideoFrames(webrtc.MimeTypeVP8, 90000)
		for _, p := range pkts {
			f.push(p, ft.add)
		}
		// The last frame stays buffered until a later packet shows it ended.
		if ft.frames != n-1 || ft.decodable != n-1 || ft.keys != 8 || ft.gaps != 0 {
			t.Fatalf("%+v, want %d frames all decodable, 8 keys, no gap", ft, n-1)
		}
	})
	t.Run("loss", func(t *testing.T) {
		pkts, frameOf := clipPackets(t, CodecH264, &codecs.H264Payloader{}, n)
		var ft frameTally
		f := newVideoFrames(webrtc.MimeTypeH264, 90000)
		dropped := false
		for i, p := range pkts {
			if !dropped && frameOf[i] == 40 { // a delta frame's packet
				dropped = true
				continue
			}
			f.push(p, ft.add)
		}
		// Frames 0-39 decode; 41-59 wait for the keyframe at 60 (frame 40
		// itself is lost); 60-238 decode again.
		if ft.gaps != 1 || ft.decodable != 40+179 {
			t.Fatalf("%+v, want 1 gap and %d decodable", ft, 40+179)
		}
	})
	t.Run("new-stream", func(t *testing.T) {
		pkts, frameOf := clipPackets(t, CodecVP8, &codecs.VP8Payloader{EnablePictureID: true}, n)
		var ft frameTally
		f := newVideoFrames(webrtc.MimeTypeVP8, 90000)
		for i, p := range pkts {
			if frameOf[i] >= 100 { // another publisher: other seq and timestamp bases
				q := *p
				q.SequenceNumber -= 30000
				q.Timestamp += 123456789
				p = &q
			}
			f.push(p, ft.add)
		}
		// The old stream's last frame (99) never completes; 100-119 wait for
		// the keyframe at 120.
		if ft.gaps != 1 || ft.decodable != 99+119 {
			t.Fatalf("%+v, want 1 gap and %d decodable", ft, 99+119)
		}
	})
}
