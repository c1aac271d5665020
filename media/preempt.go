package media

import (
	"errors"
	"fmt"
	"time"
)

// The ports cannot be starved (issue 10).
//
// With five forwarded ports and one peer per port, five offers whose client
// never sends a packet used to hold every port for the setup timeout (30 s).
// Caps per client address cannot prevent that on their own: behind FRP every
// client arrives from 127.0.0.1 unless PROXY protocol is on. So the pool
// itself makes an unproven lease cheap to take back:
//
//   - A session that has not connected (PeerConnection state connected,
//     which needs ICE and DTLS with the answer's credentials) holds its port
//     only until a newcomer needs it, and not before UnprovenGrace (1 s) has
//     passed since its answer. When the pool is full, the newcomer preempts
//     the oldest such session ("preempted: ..." in its timeline) and takes
//     the port. Sessions whose ICE has connected (the client got the answer
//     and its checks come from a validated address) go after every dead
//     one, and not before handshakeGrace: only DTLS is left for them.
//   - A connected session is never preempted. Connected and preempted are
//     ordered under session.fate: whichever comes first wins, so a session
//     that connects while a newcomer picks it is left alone.
//   - A connected viewer that has had nothing to receive for
//     NoPublisherTimeout (60 s) is closed: it carries no media. A connected
//     publisher that sends nothing is the idle timeout's.
//
// The arithmetic, with N ports, an attacker posting dead offers at r per
// second and a grace g. Once the pool is full every attacker post preempts
// the oldest session past g, so each dead session lives about N/r (its N-1
// successors pass first) and the oldest of the N is at least (N-1)/r old.
// While (N-1)/r >= g there is always one past its grace, and a newcomer at
// any other address gets a port on its first request: with 3 ports, 2
// offers a second and 1 s, the oldest is 1 to 1.5 s old; with the default 5
// ports, 2 to 2.5 s. The newcomer's session is then the newest: it is
// preempted only once it is the oldest unproven one, after (N-1)/r and never
// before g. Its ICE connects after the answer's trip back and one check
// round trip (about 1.5 RTT plus the client's own work, well under a second
// for a 300 ms RTT), and from then on it is spared while any dead session can
// go, and for handshakeGrace in any case, which is many times the two round
// trips DTLS takes. A faster attacker (r above (N-1)/g) makes the newcomer
// race for the moments when a session is past its grace; Retry-After says
// when the next one will be (under a second: "1"). No offer, however fast,
// holds a port longer than about max(g, N/r) unless its client connects,
// and a client that connects is a peer like any other: caps per address
// (with PROXY protocol behind FRP) and room tokens bound those.
//
// Considered and not taken: a shorter setup timeout (it cuts slow honest
// clients, and 2 offers a second still fill 5 ports in 3 s); sharing ports
// through the ICE mux once every port is leased (it adds seats, not a way
// to take back the seats of dead sessions: --peers-per-port is that knob).

// handshakeGrace is how long after its answer a session whose ICE has
// connected, but not yet DTLS, keeps its port against a newcomer (and then
// only while no dead session can go instead). DTLS is two round trips; its
// first retransmission is a second late, so 5 s covers a lossy 1 s path.
const handshakeGrace = 5 * time.Second

// retryAfterBusy is the Retry-After of a full pool when no clock will free
// a port (every session connected, carrying media), and the most
// Retry-After ever says: sessions also end when their people leave, which
// no clock foresees. 30 s keeps a waiting page from hammering and still
// retries twice a minute.
const retryAfterBusy = 30 * time.Second

// preemptTries bounds how many sessions one newcomer may preempt: another
// newcomer can take the port just freed, and a victim can connect while it
// is being picked; after that many the newcomer gets the 503.
const preemptTries = 4

// lease leases a port for s. When the pool is full it preempts the oldest
// unproven session past its grace and tries again; when none can go it
// returns the *PoolFullError with Retry-After set to when one can.
func (e *Engine) lease(s *session) (*portLease, error) {
	for try := 0; ; try++ {
		l, err := e.pool.Acquire(s.id, s.room, s.role, s.onPortPacket)
		var full *PoolFullError
		if !errors.As(err, &full) {
			return l, err
		}
		victim, wait := e.pickVictim(s, time.Now())
		if victim == nil || try == preemptTries || s.ctx.Err() != nil {
			full.RetryAfter = wait
			return nil, full
		}
		if !victim.claimUnproven() {
			continue // it connected or is ending meanwhile: look again
		}
		what := "no ICE connectivity"
		if victim.iceUp.Load() {
			what = "ICE but no DTLS"
		}
		age := time.Since(time.Unix(0, victim.answered.Load())).Round(time.Millisecond)
		e.log.Info("preempting unproven session", "session", victim.id, "room", victim.room,
			"role", victim.role, "port", victim.lease.LocalPort, "age", age)
		reason := fmt.Sprintf("preempted: %s %s after the answer while every UDP port was leased; a new session took the port", what, age)
		if err := victim.close(reason); err != nil {
			e.log.Warn("tearing down a preempted session", "session", victim.id, "err", err)
		}
	}
}

// pickVictim returns the session to preempt for self, if one can go now,
// and how soon a port can come back otherwise (0 when one can now).
func (e *Engine) pickVictim(self *session, now time.Time) (victim *session, wait time.Duration) {
	e.mu.Lock()
	others := make([]*session, 0, len(e.sessions))
	for _, o := range e.sessions {
		if o != self {
			others = append(others, o)
		}
	}
	e.mu.Unlock()
	soonest := now.Add(retryAfterBusy)
	var victimAt time.Time
	victimTier := 0
	for _, o := range others {
		at, tier, ok := e.freesAt(o, now)
		if !ok {
			continue
		}
		if at.Before(soonest) {
			soonest = at
		}
		if tier == 0 || at.After(now) {
			continue // freed by a clock (or already ending), not preemptible now
		}
		answered := time.Unix(0, o.answered.Load())
		if victim == nil || tier < victimTier || (tier == victimTier && answered.Before(victimAt)) {
			victim, victimTier, victimAt = o, tier, answered
		}
	}
	if victim != nil {
		return victim, 0
	}
	return nil, max(soonest.Sub(now), 0)
}

// freesAt says when o can give its port back at the earliest: preemptible
// (tier 1 for a session with no ICE, 2 with ICE only), or ending by a clock
// (tier 0: setup timeout, no-publisher or idle timeout, or already ending).
// ok is false when nothing but its client will end it.
func (e *Engine) freesAt(o *session, now time.Time) (at time.Time, tier int, ok bool) {
	grace := e.cfg.UnprovenGrace
	switch {
	case o.closing.Load():
		return now, 0, true
	case !o.started.Load():
		// Still answering: its grace starts after the answer.
		if grace > 0 {
			return now.Add(grace), 0, true
		}
		if e.cfg.SetupTimeout > 0 {
			return o.created.Add(e.cfg.SetupTimeout), 0, true
		}
		return time.Time{}, 0, false
	case !o.connected.Load():
		at, tier = time.Time{}, 0
		if grace > 0 {
			tier = 1
			if o.iceUp.Load() {
				tier, grace = 2, max(grace, handshakeGrace)
			}
			at = time.Unix(0, o.answered.Load()).Add(grace)
		}
		if e.cfg.SetupTimeout > 0 {
			if st := o.created.Add(e.cfg.SetupTimeout); at.IsZero() || st.Before(at) {
				at, tier = st, 0
			}
		}
		return at, tier, !at.IsZero()
	case o.role == RoleViewer:
		if since := o.noPubSince.Load(); since != 0 && e.cfg.NoPublisherTimeout > 0 {
			return time.Unix(0, since).Add(e.cfg.NoPublisherTimeout), 0, true
		}
	case o.role == RolePublisher && e.cfg.IdleTimeout > 0:
		// Only a publisher already quiet: one sending media renews its
		// clock with every packet.
		last := o.lastRTPIn.Load()
		if last == 0 {
			last = o.created.UnixNano()
		}
		if t := time.Unix(0, last); now.Sub(t) > counterInterval {
			return t.Add(e.cfg.IdleTimeout), 0, true
		}
	}
	return time.Time{}, 0, false
}

// claimUnproven claims a session that has not connected for closing as
// unproven (preemption, setup timeout). It fails once the session is
// connected, claimed or ending; a claimed session is never marked
// connected, so the check and the close cannot straddle a connection.
func (s *session) claimUnproven() bool {
	s.fate.Lock()
	defer s.fate.Unlock()
	if s.connected.Load() || s.claimed || s.closing.Load() {
		return false
	}
	s.claimed = true
	return true
}

// markConnected marks the session connected, unless it was claimed as
// unproven first; it reports whether it did (true only once).
func (s *session) markConnected() bool {
	s.fate.Lock()
	defer s.fate.Unlock()
	if s.connected.Load() || s.claimed {
		return false
	}
	s.connected.Store(true)
	return true
}

// noPublisher runs on the tick goroutine. It keeps a connected viewer's
// no-publisher clock and reports whether it ran past d.
func (s *session) noPublisher(now time.Time, d time.Duration) bool {
	if d <= 0 || s.role != RoleViewer || !s.started.Load() || !s.connected.Load() {
		return false
	}
	if s.view.receiving() {
		s.noPubSince.Store(0)
		return false
	}
	since := s.noPubSince.Load()
	if since == 0 {
		s.noPubSince.Store(now.UnixNano())
		return false
	}
	return now.Sub(time.Unix(0, since)) >= d
}

// receiving reports whether any of the viewer's sinks is attached to a
// publisher track: a viewer with none carries no media, whether its room
// has no publisher or only one with codecs it did not offer.
func (v *viewer) receiving() bool {
	for _, t := range v.sinks {
		if t.src.Load() != nil {
			return true
		}
	}
	return false
}
