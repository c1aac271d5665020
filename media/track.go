package media

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sinkTrack is a viewer's outgoing track of one kind. Unlike
// TrackLocalStaticRTP it is not tied to one codec: the viewer's answer
// carries every codec both sides support, and the sink writes each packet
// with the payload type the viewer negotiated for the *publisher's* codec.
// That is what lets a viewer arrive before any publisher, or stay while
// publishers with another codec come and go, without renegotiation (WHEP
// has no server-initiated renegotiation).
type sinkTrack struct {
	kind     webrtc.RTPCodecType
	id       string
	streamID string

	// bound holds the binding once Pion has negotiated the sender.
	bound atomic.Pointer[binding]
	// ready is set once the viewer's peer connection is connected. Pion
	// binds the sender when the answer is set, but silently drops what is
	// written before DTLS has made the SRTP keys: a keyframe forwarded then
	// would clear needKey and reach nobody, leaving the viewer without a
	// picture until the publisher's next periodic keyframe.
	ready atomic.Bool

	// mu guards the rewrite state below. It is held only to compute the
	// outgoing header, never across WriteRTP.
	mu sync.Mutex
	// srcSSRC is the publisher stream currently followed; 0 none yet.
	srcSSRC  uint32
	haveOut  bool
	seqDelta uint16
	tsDelta  uint32
	lastSeq  uint16
	lastTS   uint32
	// needKey is set while a video sink waits for a keyframe: after it
	// attaches to a publisher, nothing else can be decoded.
	needKey bool
	// held is set while a GOP burst to this sink is unfinished (its
	// packets went out held, sendHeld).
	held bool
	// waiting mirrors needKey for readers that must not take mu: the
	// forwarder deciding whom to serve from its GOP cache, and the
	// publisher's keyframe re-ask deciding whether to ask again.
	waiting atomic.Bool
	// ptSrc, ptVal and ptOK cache the viewer's payload type for the codec
	// of the forwarder last written from (its parameters never change), so
	// the packet path neither allocates nor searches.
	ptSrc *webrtc.RTPCodecParameters
	ptVal uint8
	ptOK  bool

	// src is the forwarder the sink is attached to, for retransmissions.
	src atomic.Pointer[forwarder]
	// resent counts packets retransmitted on the viewer's NACKs.
	resent atomic.Uint64

	// burst describes the sink's GOP burst under way (mu, while held).
	burst keyframeNote
	// onKeyframe fires, outside mu, each time the sink stops waiting for a
	// keyframe.
	onKeyframe func(keyframeNote)

	// onFirstWrite fires once, at the first packet written.
	onFirstWrite func()
	wroteOnce    atomic.Bool
	packets      atomic.Uint64
	bytes        atomic.Uint64
}

type binding struct {
	ssrc   uint32
	stream webrtc.TrackLocalWriter
	codecs []webrtc.RTPCodecParameters
}

func newSinkTrack(kind webrtc.RTPCodecType, streamID string) *sinkTrack {
	return &sinkTrack{kind: kind, id: kind.String(), streamID: streamID}
}

// Bind is called by Pion once the answer is negotiated. It returns the
// preferred codec so Pion's reports and interceptors have one to describe
// the stream; packets carry the payload type of the publisher's codec.
func (t *sinkTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	var first *webrtc.RTPCodecParameters
	for i := range codecs {
		if !isAuxCodec(codecs[i].MimeType) {
			first = &codecs[i]
			break
		}
	}
	if first == nil {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	t.mu.Lock()
	t.ptSrc = nil // payload types belong to the previous binding
	t.mu.Unlock()
	t.bound.Store(&binding{ssrc: uint32(ctx.SSRC()), stream: ctx.WriteStream(), codecs: codecs})
	return *first, nil
}

// Unbind is called when the sender stops.
func (t *sinkTrack) Unbind(webrtc.TrackLocalContext) error {
	t.bound.Store(nil)
	return nil
}

// ID implements webrtc.TrackLocal.
func (t *sinkTrack) ID() string { return t.id }

// RID implements webrtc.TrackLocal.
func (t *sinkTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (t *sinkTrack) StreamID() string { return t.streamID }

// Kind implements webrtc.TrackLocal.
func (t *sinkTrack) Kind() webrtc.RTPCodecType { return t.kind }

// isAuxCodec tells retransmission and FEC formats from media codecs.
func isAuxCodec(mime string) bool {
	m := strings.ToLower(mime)
	return strings.HasSuffix(m, "/rtx") || strings.HasSuffix(m, "/red") || strings.HasSuffix(m, "/ulpfec") || strings.HasSuffix(m, "/flexfec-03")
}

// payloadType finds the viewer's payload type for a publisher codec. Called
// with mu held.
func (t *sinkTrack) payloadType(b *binding, src *webrtc.RTPCodecParameters) (uint8, bool) {
	if t.ptSrc != src {
		c, ok := matchCodec(b.codecs, src.RTPCodecCapability)
		t.ptSrc, t.ptVal, t.ptOK = src, uint8(c.PayloadType), ok
	}
	return t.ptVal, t.ptOK
}

// accepts reports whether the viewer negotiated a codec that can carry src.
// Before binding (answer not yet applied) it cannot tell and says yes.
func (t *sinkTrack) accepts(src webrtc.RTPCodecCapability) bool {
	b := t.bound.Load()
	if b == nil {
		return true
	}
	_, ok := matchCodec(b.codecs, src)
	return ok
}

// matchCodec picks among negotiated codecs the one that can carry src: same
// mime type and, for H.264, the same packetization mode and profile.
func matchCodec(codecs []webrtc.RTPCodecParameters, src webrtc.RTPCodecCapability) (webrtc.RTPCodecParameters, bool) {
	var loose *webrtc.RTPCodecParameters
	for i := range codecs {
		c := &codecs[i]
		if !strings.EqualFold(c.MimeType, src.MimeType) {
			continue
		}
		if kindOf(src.MimeType) != codecH264 {
			return *c, true
		}
		if fmtpValue(c.SDPFmtpLine, "packetization-mode") != fmtpValue(src.SDPFmtpLine, "packetization-mode") {
			continue
		}
		if h264Profile(c.SDPFmtpLine) == h264Profile(src.SDPFmtpLine) {
			return *c, true
		}
		if loose == nil {
			loose = c
		}
	}
	if loose != nil {
		return *loose, true
	}
	return webrtc.RTPCodecParameters{}, false
}

func fmtpValue(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return strings.ToLower(v)
		}
	}
	if key == "packetization-mode" {
		return "0" // RFC 6184 section 8.1 default
	}
	return ""
}

// h264Profile returns profile_idc and the constraint byte of profile-level-id
// (the level does not matter for decoding compatibility here).
func h264Profile(fmtp string) string {
	v := fmtpValue(fmtp, "profile-level-id")
	if len(v) < 4 {
		return "42e0" // constrained baseline, what browsers assume by default
	}
	return v[:4]
}

// resetSource makes the sink wait for a keyframe (video) and rebase its
// sequence numbers and timestamps on the next packet, so the stream the
// viewer sees stays continuous across a publisher switch.
func (t *sinkTrack) resetSource() {
	t.mu.Lock()
	t.srcSSRC = 0
	t.needKey = t.kind == webrtc.RTPCodecTypeVideo
	t.held = false
	t.waiting.Store(t.needKey)
	t.mu.Unlock()
}

// holding reports whether the sink still drops live video until a keyframe.
func (t *sinkTrack) holding() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.needKey
}

// waitingForKey reports whether the sink could take a keyframe now and is
// waiting for one: bound, connected, and dropping video until a keyframe.
func (t *sinkTrack) waitingForKey() bool {
	return t.waiting.Load() && t.ready.Load() && t.bound.Load() != nil
}

// tsGap is the timestamp step put between the last packet of one source
// and the first of the next: one 30 fps video frame, one 20 ms Opus frame.
func tsGap(kind webrtc.RTPCodecType) uint32 {
	if kind == webrtc.RTPCodecTypeVideo {
		return 90000 / 30
	}
	return 960
}

// write forwards one publisher packet to this viewer. out is scratch space
// owned by the calling forwarder goroutine. It returns false when the sink is
// not ready or the packet was dropped (waiting for a keyframe, codec the
// viewer did not offer).
func (t *sinkTrack) write(p *rtp.Packet, src *webrtc.RTPCodecParameters, keyframe bool, out *rtp.Header) bool {
	return t.send(p, src, keyframe, sendLive, out)
}

// keyframeNote is how a video sink got its picture: a GOP burst of n
// cached packets begun at at, or a live keyframe (n 0); ts is the
// keyframe's RTP timestamp as the viewer gets it.
type keyframeNote struct {
	n  int
	at time.Time
	ts uint32
}

// sendMode tells a live packet from the packets of a GOP burst.
type sendMode uint8

const (
	// sendLive: a packet as it arrives; dropped while the sink waits for a
	// keyframe, unless it starts one.
	sendLive sendMode = iota
	// sendHeld: a burst packet before the last, written although the sink
	// waits and leaving it waiting, so live packets stay dropped until the
	// burst has caught up with them.
	sendHeld
	// sendLast: the burst's last packet, the one the forwarder just
	// received; from it on the sink is live.
	sendLast
)

func (t *sinkTrack) send(p *rtp.Packet, src *webrtc.RTPCodecParameters, keyframe bool, mode sendMode, out *rtp.Header) bool {
	b := t.bound.Load()
	if b == nil || !t.ready.Load() {
		return false
	}
	t.mu.Lock()
	if t.needKey && !keyframe && mode == sendLive {
		t.mu.Unlock()
		return false
	}
	pt, ok := t.payloadType(b, src)
	if !ok {
		t.mu.Unlock()
		return false
	}
	wentLive := false
	var note keyframeNote
	switch {
	case mode == sendHeld:
		if !t.held {
			t.held, t.burst = true, keyframeNote{at: time.Now()}
		}
	case t.needKey:
		if mode == sendLive && t.held {
			// A live keyframe overtook an unfinished burst: the sink
			// jumps to it, its stream rebased as on a source switch so
			// the burst's untransmitted tail is no gap to NACK.
			t.srcSSRC = 0
		}
		wentLive = true
		if t.held && mode == sendLast {
			note = t.burst
		}
		t.held = false
		t.needKey = false
		t.waiting.Store(false)
	}
	if p.SSRC != t.srcSSRC {
		if t.haveOut {
			t.seqDelta = t.lastSeq + 1 - p.SequenceNumber
			t.tsDelta = t.lastTS + tsGap(t.kind) - p.Timestamp
		} else {
			t.seqDelta, t.tsDelta = 0, 0
		}
		t.srcSSRC = p.SSRC
	}
	seq := p.SequenceNumber + t.seqDelta
	ts := p.Timestamp + t.tsDelta
	switch {
	case mode == sendHeld:
		if t.burst.n == 0 {
			t.burst.ts = ts // the cached keyframe, first of the burst
		}
		t.burst.n++
	case wentLive && note.n > 0:
		note.n++ // this packet ends the burst
	case wentLive && mode == sendLast:
		note = keyframeNote{n: 1, at: time.Now(), ts: ts} // a burst of one
	case wentLive:
		note.ts = ts // a live keyframe
	}
	// Only move forward: a reordered or retransmitted older packet must not
	// pull the base back for the next source switch.
	if !t.haveOut || int16(seq-t.lastSeq) > 0 {
		t.lastSeq, t.lastTS = seq, ts
	}
	t.haveOut = true
	t.mu.Unlock()

	*out = rtp.Header{
		Version:        2,
		Marker:         p.Marker,
		PayloadType:    pt,
		SequenceNumber: seq,
		Timestamp:      ts,
		SSRC:           b.ssrc,
		CSRC:           p.CSRC,
	}
	if _, err := b.stream.WriteRTP(out, p.Payload); err != nil {
		// io.ErrClosedPipe and friends: the viewer left; its session
		// teardown detaches the sink.
		return false
	}
	t.packets.Add(1)
	t.bytes.Add(uint64(len(p.Payload) + 12))
	if wentLive && t.onKeyframe != nil {
		t.onKeyframe(note)
	}
	if !t.wroteOnce.Load() && t.wroteOnce.CompareAndSwap(false, true) && t.onFirstWrite != nil {
		t.onFirstWrite()
	}
	return true
}

// retransmit answers a viewer's NACK (RFC 4585 section 6.2.1) from the
// followed publisher's shared history, with this viewer's rewrite applied.
// Packets already gone from the history are skipped; the viewer's decoder
// then asks for a keyframe. buf and out are the caller's scratch space.
func (t *sinkTrack) retransmit(n *rtcp.TransportLayerNack, buf []byte, out *rtp.Header) {
	b, f := t.bound.Load(), t.src.Load()
	if b == nil || f == nil || f.hist == nil {
		return
	}
	t.mu.Lock()
	ssrc, seqDelta, tsDelta := t.srcSSRC, t.seqDelta, t.tsDelta
	live := t.haveOut && !t.needKey && ssrc != 0
	pt, ok := t.payloadType(b, &f.codec)
	t.mu.Unlock()
	if !live || !ok {
		return
	}
	for i := range n.Nacks {
		n.Nacks[i].Range(func(seq uint16) bool {
			size, ts, marker, found := f.hist.get(ssrc, seq-seqDelta, buf)
			if !found {
				return true
			}
			*out = rtp.Header{
				Version: 2, Marker: marker, PayloadType: pt,
				SequenceNumber: seq, Timestamp: ts + tsDelta, SSRC: b.ssrc,
			}
			if _, err := b.stream.WriteRTP(out, buf[:size]); err != nil {
				return false
			}
			t.resent.Add(1)
			return true
		})
	}
}
