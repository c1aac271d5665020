package mediatest

import (
	"encoding/binary"
	"strings"

	"github.com/pion/webrtc/v4"
)

// IsKeyFrame reports whether an RTP payload of the given video codec (mime
// type) is the first packet of a keyframe, the point from which a viewer can
// start decoding. It reads only the payload descriptor and the first bytes
// of the codec bitstream, so it works on every packet as it arrives.
func IsKeyFrame(mime string, payload []byte) bool {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return vp8KeyFrame(payload)
	case strings.ToLower(webrtc.MimeTypeH264):
		return h264KeyFrame(payload)
	case strings.ToLower(webrtc.MimeTypeVP9):
		return vp9KeyFrame(payload)
	case strings.ToLower(webrtc.MimeTypeAV1):
		return av1KeyFrame(payload)
	}
	return false
}

// KeyFrameSize returns the picture size carried by the first packet of a
// keyframe: the VP8 key frame header (RFC 6386 section 9.1) or the VP9
// scalability structure (RFC 9628 section 4.2.1). Other codecs (and other
// packets) report ok == false.
func KeyFrameSize(mime string, payload []byte) (width, height int, ok bool) {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return vp8Size(payload)
	case strings.ToLower(webrtc.MimeTypeVP9):
		return vp9Size(payload)
	}
	return 0, 0, false
}

// vp8Bitstream skips the VP8 payload descriptor (RFC 7741 section 4.2) and
// returns the VP8 bitstream of the first packet of a frame (S=1, PID=0),
// or nil for any other packet.
//
//	 0 1 2 3 4 5 6 7
//	|X|R|N|S|R| PID |  X: extensions follow
//	|I|L|T|K| RSV   |  I: picture id, L: TL0PICIDX, T/K: TID/KEYIDX
//	|M| PictureID   |  M: 15-bit picture id (one more byte)
func vp8Bitstream(p []byte) []byte {
	if len(p) < 1 {
		return nil
	}
	if p[0]&0x10 == 0 || p[0]&0x07 != 0 { // not S=1, PID=0
		return nil
	}
	off := 1
	if p[0]&0x80 != 0 {
		if len(p) < 2 {
			return nil
		}
		x := p[1]
		off = 2
		if x&0x80 != 0 { // I
			if len(p) <= off {
				return nil
			}
			if p[off]&0x80 != 0 { // M: two-byte picture id
				off++
			}
			off++
		}
		if x&0x40 != 0 { // L
			off++
		}
		if x&0x30 != 0 { // T or K share one byte
			off++
		}
	}
	if off >= len(p) {
		return nil
	}
	return p[off:]
}

// vp8KeyFrame: the frame tag's P bit (bit 0 of the first byte) is 0 for key
// frames (RFC 6386 section 9.1).
func vp8KeyFrame(p []byte) bool {
	b := vp8Bitstream(p)
	return len(b) > 0 && b[0]&0x01 == 0
}

// vp8Size parses the 10-byte key frame header: a 3-byte frame tag, the
// start code 9d 01 2a, then 14-bit width and height (2 bits of scaling each).
func vp8Size(p []byte) (int, int, bool) {
	b := vp8Bitstream(p)
	if len(b) < 10 || b[0]&0x01 != 0 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, false
	}
	w := int(binary.LittleEndian.Uint16(b[6:8]) & 0x3fff)
	h := int(binary.LittleEndian.Uint16(b[8:10]) & 0x3fff)
	return w, h, true
}

// H.264 NAL unit types (RFC 6184 section 5.4).
const (
	naluIDR   = 5
	naluSPS   = 7
	naluSTAPA = 24
	naluFUA   = 28
)

// h264KeyFrame reports an IDR slice or an SPS (which Pion and browsers send
// right before the IDR) in a single NAL packet, inside a STAP-A
// aggregate, or at the start of an FU-A fragment (RFC 6184 sections 5.6-5.8).
func h264KeyFrame(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true
	case naluSTAPA:
		for off := 1; off+2 < len(p); {
			size := int(binary.BigEndian.Uint16(p[off:]))
			off += 2
			if size == 0 || off+size > len(p) {
				return false
			}
			if nt := p[off] & 0x1f; nt == naluIDR || nt == naluSPS {
				return true
			}
			off += size
		}
	case naluFUA:
		// FU header: S E R Type; only the start fragment begins a frame.
		return len(p) >= 2 && p[1]&0x80 != 0 && p[1]&0x1f == naluIDR
	}
	return false
}

// vp9Descriptor holds the fields of the VP9 payload descriptor (RFC 9628
// section 4.2) that keyframe detection needs.
type vp9Descriptor struct {
	interPredicted, begin, layered bool
	spatialID                      uint8
	ssOffset                       int // offset of the scalability structure, -1 if absent
}

// parseVP9Descriptor reads
//
//	|I|P|L|F|B|E|V|Z|  then picture id (I), layer indices (L), P_DIFFs (F&&P), SS (V).
func parseVP9Descriptor(p []byte) (vp9Descriptor, bool) {
	d := vp9Descriptor{ssOffset: -1}
	if len(p) < 1 {
		return d, false
	}
	b := p[0]
	d.interPredicted = b&0x40 != 0
	d.layered = b&0x20 != 0
	flexible := b&0x10 != 0
	d.begin = b&0x08 != 0
	off := 1
	if b&0x80 != 0 { // I: picture id, 7 or 15 bits
		if len(p) <= off {
			return d, false
		}
		if p[off]&0x80 != 0 {
			off++
		}
		off++
	}
	if d.layered { // TID U SID D, plus TL0PICIDX in non-flexible mode
		if len(p) <= off {
			return d, false
		}
		d.spatialID = (p[off] >> 1) & 0x07
		off++
		if !flexible {
			off++
		}
	}
	if flexible && d.interPredicted { // up to 3 P_DIFF bytes, N bit chains them
		for i := 0; i < 3; i++ {
			if len(p) <= off {
				return d, false
			}
			more := p[off]&0x01 != 0
			off++
			if !more {
				break
			}
		}
	}
	if b&0x02 != 0 { // V
		if len(p) <= off {
			return d, false
		}
		d.ssOffset = off
	}
	return d, true
}

// vp9KeyFrame: the first packet (B=1) of a picture that is not inter
// predicted (P=0) in the base spatial layer.
func vp9KeyFrame(p []byte) bool {
	d, ok := parseVP9Descriptor(p)
	return ok && d.begin && !d.interPredicted && d.spatialID == 0
}

// vp9Size reads the base layer's size from the scalability structure:
// |N_S|Y|G|RSV| then, when Y, N_S+1 pairs of 16-bit width and height.
func vp9Size(p []byte) (int, int, bool) {
	d, ok := parseVP9Descriptor(p)
	if !ok || d.ssOffset < 0 {
		return 0, 0, false
	}
	off := d.ssOffset
	if p[off]&0x10 == 0 || len(p) < off+5 { // no Y: no resolution
		return 0, 0, false
	}
	w := int(binary.BigEndian.Uint16(p[off+1:]))
	h := int(binary.BigEndian.Uint16(p[off+3:]))
	return w, h, true
}

// av1KeyFrame: the N bit of the aggregation header |Z|Y|W|W|N|-|-|-| marks
// the first packet of a coded video sequence, which starts with a keyframe
// (AV1 RTP spec section 4.4).
func av1KeyFrame(p []byte) bool {
	return len(p) > 0 && p[0]&0x08 != 0
}
