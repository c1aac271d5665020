// Package store holds pinhole's records: rooms and sessions as plain,
// serialisable data. It knows nothing of Pion or HTTP; live peer connections
// live in package media, and what the API shows lives here, so a second
// implementation (Redis) can share rooms and sessions between nodes.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors shared by every Store implementation. Handlers map them to
// HTTP statuses in one place.
var (
	// ErrNotFound is returned when a room or session does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when creating a room whose name is taken.
	ErrExists = errors.New("already exists")
	// ErrLimit is returned (wrapped in a *LimitError) when creating a record
	// would exceed a count limit.
	ErrLimit = errors.New("limit reached")
)

// Count limits a store enforces atomically where a record is created, so
// concurrent creations can never overshoot them.
const (
	LimitRooms           = "rooms"             // rooms that exist
	LimitSessionsPerRoom = "sessions-per-room" // live sessions of one room
)

// LimitError says which count limit refused a creation. It wraps ErrLimit.
type LimitError struct {
	Limit string // LimitRooms or LimitSessionsPerRoom
	Max   int    // the limit
	Count int    // how many exist
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s limit reached: %d of %d", e.Limit, e.Count, e.Max)
}

// Unwrap makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Unwrap() error { return ErrLimit }

// Role says which side of the media a session is on.
type Role string

// The two roles: WHIP publishers send media into a room, WHEP viewers receive it.
const (
	RolePublisher Role = "publisher"
	RoleViewer    Role = "viewer"
)

// State is a session's connection state, following RTCPeerConnectionState.
type State string

// Session states in the order a healthy session passes through them.
const (
	StateNew          State = "new"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateDisconnected State = "disconnected"
	StateFailed       State = "failed"
	StateClosed       State = "closed"
)

// Ended reports whether no further transition can follow s.
func (s State) Ended() bool { return s == StateClosed }

// Room is a meeting place for publishers and viewers.
type Room struct {
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	// PublishToken, when set, is required as a Bearer token by WHIP.
	PublishToken string `json:"publish_token,omitempty"`
	// ViewToken, when set, is required as a Bearer token by WHEP.
	ViewToken string `json:"view_token,omitempty"`
	// AutoCreated marks rooms made implicitly by a WHIP/WHEP request.
	AutoCreated bool `json:"auto_created,omitempty"`
}

// Transition is one state change with the time it happened.
type Transition struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// Lease is the UDP port a session's peer connection is bound to.
type Lease struct {
	LocalPort  int    `json:"local_port"`
	PublicAddr string `json:"public_addr"` // ip:port advertised in the answer
}

// Counters are media totals for one session, as seen by pinhole.
type Counters struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
}

// Event is one entry in a session's timeline (offer received, first packet,
// ICE connected, DTLS done, first RTP, close...). Diagnostics reads them.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// Session is the record of one peer connection.
type Session struct {
	ID string `json:"id"`
	// PublicID names the session to other participants (participant
	// lists, ?publisher=): unlike ID, which is the secret in the session
	// URL, it grants nothing.
	PublicID     string            `json:"public_id,omitempty"`
	Room         string            `json:"room"`
	Role         Role              `json:"role"`
	UserID       string            `json:"user_id,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	State        State             `json:"state"`
	Transitions  []Transition      `json:"transitions"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	Lease        Lease             `json:"lease"`
	RemoteAddrs  []string          `json:"remote_addrs,omitempty"`
	SelectedPair string            `json:"selected_pair,omitempty"`
	Counters     Counters          `json:"counters"`
	CloseReason  string            `json:"close_reason,omitempty"`
	// PublisherID is, for a viewer, the publisher it follows ("" = newest).
	PublisherID string `json:"publisher_id,omitempty"`
	// Codecs lists the negotiated codecs (mime types).
	Codecs []string `json:"codecs,omitempty"`
	Events []Event  `json:"events,omitempty"`
	// Node names the pinhole instance that owns the live peer connection.
	Node string `json:"node,omitempty"`
}

// SetState appends a transition to s when state differs from the current one.
// It never leaves StateClosed.
func (s *Session) SetState(state State, at time.Time) bool {
	if s.State == state || s.State.Ended() {
		return false
	}
	s.State = state
	s.Transitions = append(s.Transitions, Transition{State: state, At: at})
	s.UpdatedAt = at
	return true
}

// AddRemoteAddr records addr once.
func (s *Session) AddRemoteAddr(addr string) {
	for _, a := range s.RemoteAddrs {
		if a == addr {
			return
		}
	}
	s.RemoteAddrs = append(s.RemoteAddrs, addr)
}

// SessionFilter selects sessions in List. Zero fields match everything;
// closed sessions are listed only when State is StateClosed or IncludeClosed.
type SessionFilter struct {
	Room          string
	State         State
	Role          Role
	IncludeClosed bool
}

// Store is the record keeper. Every method is safe for concurrent use and
// returns copies: callers may modify what they get without locking.
type Store interface {
	// CreateRoom stores r; ErrExists when the name is taken, a *LimitError
	// when maxRooms (> 0) rooms exist already.
	CreateRoom(ctx context.Context, r Room, maxRooms int) (Room, error)
	// EnsureRoom returns the room, creating it from r when it does not exist
	// (and fewer than maxRooms exist, when maxRooms > 0).
	EnsureRoom(ctx context.Context, r Room, maxRooms int) (Room, bool, error)
	// UpdateRoom applies fn to the room atomically and stores the result;
	// fn's error aborts the update and is returned; ErrNotFound if absent.
	UpdateRoom(ctx context.Context, name string, fn func(*Room) error) (Room, error)
	// GetRoom returns the room or ErrNotFound.
	GetRoom(ctx context.Context, name string) (Room, error)
	// ListRooms returns every room, ordered by name.
	ListRooms(ctx context.Context) ([]Room, error)
	// DeleteRoom removes the room (not its sessions); ErrNotFound if absent.
	DeleteRoom(ctx context.Context, name string) error

	// CreateSession stores a new session; ErrExists on a duplicate id, a
	// *LimitError when maxLiveInRoom (> 0) live sessions of its room exist.
	CreateSession(ctx context.Context, s Session, maxLiveInRoom int) error
	// GetSession returns the session or ErrNotFound. Closed sessions are
	// kept for the retention period so their diagnosis can be read.
	GetSession(ctx context.Context, id string) (Session, error)
	// UpdateSession applies fn to the session atomically and stores the
	// result; fn's error aborts the update and is returned.
	UpdateSession(ctx context.Context, id string, fn func(*Session) error) (Session, error)
	// ListSessions returns the matching sessions, oldest first.
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)
	// CountSessions returns how many sessions ListSessions would return,
	// without copying them: limits check it on every session creation.
	CountSessions(ctx context.Context, f SessionFilter) (int, error)
	// DeleteSession forgets the session entirely; ErrNotFound if absent.
	DeleteSession(ctx context.Context, id string) error
}
