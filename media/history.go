package media

import (
	"sync"

	"github.com/pion/rtp"
)

// historySize is how many packets of a publisher's video track are kept for
// retransmission: about 1.7 s at 2.5 Mbit/s (300 packets/s) and 12 s for a
// 400 kbit/s stream, well beyond the round trip after which a viewer's NACK
// is still useful (a receiver gives a frame up after a few hundred ms).
const historySize = 512

// historyMaxPayload is the largest payload kept; RTP over UDP on a 1500-byte
// MTU never carries more.
const historyMaxPayload = 1500

// history keeps the last packets of one publisher video track so pinhole
// answers its viewers' NACKs itself, from one copy shared by all of them.
// Pion's NACK responder keeps a copy per viewer stream instead (1024 packets
// of a pooled 1460-byte buffer: about 1.5 MB per viewer once full), which
// was nearly all of a viewer session's memory.
//
// The forwarder goroutine writes one slot per packet it receives (a copy
// under a lock that only NACK handling contends for: per publisher packet,
// not per forwarded packet); viewers' RTCP goroutines read.
type history struct {
	mu    sync.RWMutex
	slots []histSlot
}

type histSlot struct {
	valid  bool
	marker bool
	seq    uint16
	ssrc   uint32
	ts     uint32
	n      int
	buf    [historyMaxPayload]byte
}

func newHistory() *history {
	return &history{slots: make([]histSlot, historySize)}
}

// put stores p, replacing the packet historySize sequence numbers older.
func (h *history) put(p *rtp.Packet) {
	if len(p.Payload) > historyMaxPayload {
		return
	}
	h.mu.Lock()
	s := &h.slots[int(p.SequenceNumber)%len(h.slots)]
	s.valid, s.marker = true, p.Marker
	s.seq, s.ssrc, s.ts = p.SequenceNumber, p.SSRC, p.Timestamp
	s.n = copy(s.buf[:], p.Payload)
	h.mu.Unlock()
}

// get copies the payload of packet (ssrc, seq) into dst and returns its
// length, timestamp and marker; ok is false when it is no longer kept.
func (h *history) get(ssrc uint32, seq uint16, dst []byte) (n int, ts uint32, marker, ok bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := &h.slots[int(seq)%len(h.slots)]
	if !s.valid || s.seq != seq || s.ssrc != ssrc {
		return 0, 0, false, false
	}
	return copy(dst, s.buf[:s.n]), s.ts, s.marker, true
}
