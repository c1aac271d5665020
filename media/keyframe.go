package media

import "strings"

// codecKind identifies the video payload formats the hub understands well
// enough to find keyframes in, without depacketizing whole frames.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecVP8
	codecVP9
	codecH264
	codecAV1
	codecOpus
)

func kindOf(mime string) codecKind {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	case "video/h264":
		return codecH264
	case "video/av1":
		return codecAV1
	case "audio/opus":
		return codecOpus
	}
	return codecOther
}

// isKeyframeStart reports whether an RTP payload is the first packet of a
// keyframe: the point where a viewer's decoder can start. A viewer that joins
// or switches publisher is fed video only from such a packet on.
func isKeyframeStart(k codecKind, p []byte) bool {
	switch k {
	case codecVP8:
		return vp8Keyframe(p)
	case codecVP9:
		return vp9Keyframe(p)
	case codecH264:
		return h264Keyframe(p)
	case codecAV1:
		return av1Keyframe(p)
	}
	return false
}

// vp8Keyframe: RFC 7741 section 4.2 payload descriptor, then the VP8 frame
// tag (RFC 6386 section 9.1) whose low bit is 0 for a key frame.
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false // not the start of partition 0
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: PictureID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit picture id
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// vp9Keyframe: draft-ietf-payload-vp9 section 4.2: B (start of frame) set and
// P (inter-picture predicted) clear in the first byte.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	pBit, bBit := p[0]&0x40 != 0, p[0]&0x08 != 0
	return bBit && !pBit
}

// h264Keyframe: RFC 6184: an IDR slice (5) or SPS (7), alone, inside a
// STAP-A (24) or at the start of an FU-A (28).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch nal := p[0] & 0x1f; nal {
	case 5, 7:
		return true
	case 24: // STAP-A: 2-byte sizes then NAL units
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if i >= len(p) {
				break
			}
			if t := p[i] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A: start bit and the original NAL type
		if len(p) < 2 {
			return false
		}
		start, t := p[1]&0x80 != 0, p[1]&0x1f
		return start && (t == 5 || t == 7)
	}
	return false
}

// av1Keyframe: AV1 RTP spec section 4.4: the N bit of the aggregation header
// marks the first packet of a coded video sequence, which starts with a key
// frame.
func av1Keyframe(p []byte) bool {
	return len(p) > 0 && p[0]&0x08 != 0
}
