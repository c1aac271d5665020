package mediatest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pion/rtp/codecs/vp9"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// frame is one encoded sample of the clip, ready for WriteSample.
type frame struct {
	data []byte
	dur  time.Duration
	key  bool
}

// clip is a whole file parsed into memory: the files are ~200 KB, and
// holding them makes looping and jumping to a keyframe trivial and keeps
// file I/O out of the real-time send loop.
type clip struct {
	frames []frame
}

// nextKey returns the index of the first keyframe at or after i (wrapping),
// or i when the clip has none.
func (c *clip) nextKey(i int) int {
	n := len(c.frames)
	for k := 0; k < n; k++ {
		j := (i + k) % n
		if c.frames[j].key {
			return j
		}
	}
	return i
}

// nextDelta returns the index of the first frame at or after i that is
// not a keyframe (wrapping), or i when the clip has none.
func (c *clip) nextDelta(i int) int {
	n := len(c.frames)
	for k := 0; k < n; k++ {
		j := (i + k) % n
		if !c.frames[j].key {
			return j
		}
	}
	return i
}

// DefaultClipDir returns media/testdata, found next to this source file so
// that tests of any package (each run in its own directory) find the clip.
func DefaultClipDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("media", "testdata")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// ClipFile names the clip file for a video codec ("vp8", "video/H264"...)
// or "opus".
func ClipFile(codec string) (string, error) {
	switch MimeType(codec) {
	case webrtc.MimeTypeVP8:
		return "clip.ivf", nil
	case webrtc.MimeTypeH264:
		return "clip.h264", nil
	case webrtc.MimeTypeVP9:
		return "clip_vp9.ivf", nil
	case webrtc.MimeTypeAV1:
		return "clip_av1.ivf", nil
	}
	if codec == "opus" || codec == webrtc.MimeTypeOpus {
		return "clip.ogg", nil
	}
	return "", fmt.Errorf("mediatest: no clip for codec %q", codec)
}

// loadClip reads and parses the clip of a codec from dir.
func loadClip(dir, codec string) (*clip, error) {
	name, err := ClipFile(codec)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("mediatest: read clip: %w", err)
	}
	var c *clip
	switch MimeType(codec) {
	case webrtc.MimeTypeH264:
		c, err = parseH264(b)
	case "":
		c, err = parseOgg(b)
	default:
		c, err = parseIVF(b, MimeType(codec))
	}
	if err != nil {
		return nil, fmt.Errorf("mediatest: parse %s: %w", name, err)
	}
	if len(c.frames) == 0 {
		return nil, fmt.Errorf("mediatest: %s has no frames", name)
	}
	return c, nil
}

// parseIVF reads VP8, VP9 or AV1 frames from an IVF file. The clip is
// constant frame rate, so every frame lasts one timebase unit.
func parseIVF(b []byte, mime string) (*clip, error) {
	r, h, err := ivfreader.NewWith(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// IVF stores the rate as denominator/numerator: 30/1 for 30 fps.
	dur := time.Second * time.Duration(h.TimebaseNumerator) / time.Duration(h.TimebaseDenominator)
	c := &clip{}
	for {
		data, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return nil, err
		}
		c.frames = append(c.frames, frame{data: data, dur: dur, key: ivfKeyFrame(mime, data)})
	}
}

// ivfKeyFrame tells keyframes from the codec bitstream itself.
func ivfKeyFrame(mime string, data []byte) bool {
	switch mime {
	case webrtc.MimeTypeVP8:
		// Frame tag bit 0 is 0 on key frames (RFC 6386 section 9.1).
		return len(data) > 0 && data[0]&0x01 == 0
	case webrtc.MimeTypeVP9:
		var h vp9.Header
		return h.Unmarshal(data) == nil && !h.NonKeyFrame && !h.ShowExistingFrame
	case webrtc.MimeTypeAV1:
		return av1HasSequenceHeader(data)
	}
	return false
}

// av1HasSequenceHeader walks the temporal unit's OBUs (low overhead format,
// each with obu_size) looking for a sequence header, which encoders emit
// with every keyframe.
func av1HasSequenceHeader(data []byte) bool {
	for off := 0; off < len(data); {
		h := data[off]
		typ := (h >> 3) & 0x0f
		if typ == 1 { // OBU_SEQUENCE_HEADER
			return true
		}
		off++
		if h&0x04 != 0 { // extension byte
			off++
		}
		if h&0x02 == 0 { // no size field: the OBU runs to the end
			return false
		}
		size, n := leb128(data[off:])
		if n == 0 {
			return false
		}
		off += n + int(size)
	}
	return false
}

// leb128 decodes an unsigned LEB128 value, returning it and its length (0 on error).
func leb128(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 8; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// parseH264 groups Annex-B NAL units into access units, one sample per
// frame: parameter sets and SEI are kept with the slice that follows them,
// so an IDR sample carries SPS+PPS+IDR and Pion's payloader sends the
// parameter sets in a STAP-A right before it. The clip is 30 fps.
func parseH264(b []byte) (*clip, error) {
	r, err := h264reader.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	const dur = time.Second / 30
	c := &clip{}
	var (
		cur     []byte
		key     bool
		haveVCL bool
	)
	flush := func() {
		if haveVCL {
			c.frames = append(c.frames, frame{data: cur, dur: dur, key: key})
		}
		cur, key, haveVCL = nil, false, false
	}
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			flush()
			return c, nil
		}
		if err != nil {
			return nil, err
		}
		t := nal.UnitType
		vcl := t == h264reader.NalUnitTypeCodedSliceNonIdr || t == h264reader.NalUnitTypeCodedSliceIdr
		// A new access unit starts with a non-VCL NAL after a slice, or
		// with a slice whose first_mb_in_slice is 0 (ue(v) '1' bit).
		if haveVCL && (!vcl || (len(nal.Data) > 1 && nal.Data[1]&0x80 != 0)) {
			flush()
		}
		if t == h264reader.NalUnitTypeAUD {
			continue
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if vcl {
			haveVCL = true
		}
		if t == h264reader.NalUnitTypeCodedSliceIdr {
			key = true
		}
	}
}

// parseOgg reads Opus packets from an Ogg file made with one packet per
// page (gen.sh uses -page_duration 20000); the packet duration comes from
// its TOC byte, so the pre-skip in the first granule position does not matter.
func parseOgg(b []byte) (*clip, error) {
	r, _, err := oggreader.NewWith(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c := &clip{}
	for {
		page, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return c, nil
		}
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(page, []byte("OpusTags")) || len(page) == 0 {
			continue
		}
		dur := opusDuration(page)
		if dur == 0 {
			return nil, fmt.Errorf("bad opus packet (toc %#x)", page[0])
		}
		c.frames = append(c.frames, frame{data: page, dur: dur, key: true})
	}
}

// opusDuration returns a packet's duration from its TOC byte (RFC 6716
// section 3.1): the config gives the frame size, the code the frame count.
func opusDuration(p []byte) time.Duration {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	config := toc >> 3
	var frameDur time.Duration
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frameDur = []time.Duration{10, 20, 40, 60}[config%4] * time.Millisecond
	case config < 16: // hybrid: 10, 20 ms
		frameDur = []time.Duration{10, 20}[config%2] * time.Millisecond
	default: // CELT: 2.5, 5, 10, 20 ms
		frameDur = []time.Duration{2500, 5000, 10000, 20000}[config%4] * time.Microsecond
	}
	switch toc & 0x03 {
	case 0:
		return frameDur
	case 1, 2:
		return 2 * frameDur
	default:
		if len(p) < 2 {
			return 0
		}
		return time.Duration(p[1]&0x3f) * frameDur
	}
}
