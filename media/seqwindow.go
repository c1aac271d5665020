package media

// seqWindow remembers which of the last 128 sequence numbers of one RTP
// stream have arrived, so the forwarder drops a packet it already has.
// libwebrtc probes the bandwidth at a call's start by resending recent
// packets on RTX, and Pion's receiver hands repaired RTX back as the
// original packet (past SRTP's replay check, which sees the RTX stream's
// own sequence numbers): without this, each probe went to every viewer
// again and into the GOP cache. A retransmission of a packet that never
// arrived is new, and passes.
type seqWindow struct {
	ssrc uint32
	top  uint16    // the highest sequence number seen
	seen [2]uint64 // bit i: top-i has arrived
	init bool
}

// seqWindowSize is how far back the window reaches: well past a NACK round
// trip of packets at a few Mbit/s. Anything older passes as new.
const seqWindowSize = 128

// duplicate records seq of ssrc and reports whether it had arrived before.
// A new SSRC starts a new window.
func (w *seqWindow) duplicate(ssrc uint32, seq uint16) bool {
	if !w.init || ssrc != w.ssrc {
		*w = seqWindow{ssrc: ssrc, top: seq, seen: [2]uint64{1, 0}, init: true}
		return false
	}
	if d := int16(seq - w.top); d > 0 {
		w.shift(int(d))
		w.top = seq
		w.seen[0] |= 1
		return false
	}
	back := int(w.top - seq)
	if back >= seqWindowSize {
		return false
	}
	word, bit := back/64, uint(back%64)
	if w.seen[word]&(1<<bit) != 0 {
		return true
	}
	w.seen[word] |= 1 << bit
	return false
}

// shift moves the window n (> 0) sequence numbers forward.
func (w *seqWindow) shift(n int) {
	switch {
	case n >= seqWindowSize:
		w.seen = [2]uint64{}
	case n >= 64:
		w.seen = [2]uint64{0, w.seen[0] << (n - 64)}
	default:
		w.seen = [2]uint64{w.seen[0] << n, w.seen[1]<<n | w.seen[0]>>(64-n)}
	}
}
