// Package media owns pinhole's live WebRTC state: the pool of leased UDP
// ports, one Pion PeerConnection per session bound to its lease, the room
// hubs that forward publisher RTP to viewers, and the probes used by
// diagnostics. It imports nothing of pinhole's: it reports what happens to a
// session through the Event callback handed to NewEngine.
package media

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Handlers map them to HTTP statuses.
var (
	// ErrNoPortAvailable means every port of the range is leased (503).
	ErrNoPortAvailable = errors.New("no UDP port available")
	// ErrSessionNotFound means no live session has that id (404).
	ErrSessionNotFound = errors.New("session not found")
	// ErrBadOffer means the SDP offer cannot be parsed or used (400).
	ErrBadOffer = errors.New("malformed SDP offer")
	// ErrUnsupportedTracks means the offer's track set cannot be served (422).
	ErrUnsupportedTracks = errors.New("unsupported track set")
	// ErrBadFragment means a trickle-ICE SDP fragment is malformed (400).
	ErrBadFragment = errors.New("malformed trickle-ice sdpfrag")
	// ErrClosed means the engine is shutting down (503).
	ErrClosed = errors.New("media engine closed")
)

// PoolFullError is returned (wrapping ErrNoPortAvailable) when no port can be
// leased; it carries what the 503 answer tells the client.
type PoolFullError struct {
	Total      int           // ports in the range
	Leased     int           // ports with at least one session
	Sessions   int           // sessions holding leases
	RetryAfter time.Duration // a hint for the Retry-After header
}

func (e *PoolFullError) Error() string {
	return fmt.Sprintf("all %d UDP ports are leased (%d sessions)", e.Total, e.Sessions)
}

// Unwrap makes errors.Is(err, ErrNoPortAvailable) true.
func (e *PoolFullError) Unwrap() error { return ErrNoPortAvailable }

// DetailError wraps a sentinel with a client-facing detail, e.g.
// ErrBadOffer with "m-line 1: no codec".
type DetailError struct {
	Err    error
	Detail string
}

func (e *DetailError) Error() string { return e.Err.Error() + ": " + e.Detail }

// Unwrap returns the sentinel.
func (e *DetailError) Unwrap() error { return e.Err }

func detail(err error, format string, args ...any) error {
	return &DetailError{Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Role of a session.
type Role string

// Roles: publishers send media (WHIP), viewers receive it (WHEP).
const (
	RolePublisher Role = "publisher"
	RoleViewer    Role = "viewer"
)

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	// EventState: the peer connection state changed (Event.State).
	EventState EventKind = "state"
	// EventTimeline: a milestone for the diagnosis timeline (Event.Detail),
	// e.g. "offer", "answer", "first-packet", "ice-connected", "dtls-connected",
	// "first-rtp-in", "first-rtp-out", "keyframe-out", "ice-failed", "dtls-failed".
	EventTimeline EventKind = "timeline"
	// EventRemoteAddr: ICE validated a new remote address (Event.Detail), the
	// remote side of a selected candidate pair. Packets from sources ICE has
	// not validated are only counted (PortStatus.UnvalidatedPackets).
	EventRemoteAddr EventKind = "remote-addr"
	// EventSelectedPair: ICE selected a candidate pair (Event.Detail).
	EventSelectedPair EventKind = "selected-pair"
	// EventCounters: periodic media totals (Event.Counters).
	EventCounters EventKind = "counters"
	// EventClosed: the session ended and its lease is free (Event.Detail is the reason).
	EventClosed EventKind = "closed"
)

// Counters are a session's media totals.
type Counters struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
}

// Event reports something that happened to a session.
type Event struct {
	SessionID string
	Room      string
	Role      Role
	At        time.Time
	Kind      EventKind
	State     string // for EventState: new, connecting, connected, disconnected, failed, closed
	Name      string // for EventTimeline: the milestone
	Detail    string
	Counters  Counters
}
