package media

import (
	"context"
	"log/slog"
	"time"
)

// Config configures the Engine. main fills it from flags.
type Config struct {
	// Ports is the local UDP port range, one entry per port.
	Ports []int
	// PublicPorts, when set, has the same length as Ports: local Ports[i] is
	// reachable as PublicPorts[i] through the router or tunnel.
	PublicPorts []int
	// PublicIPs replace the host candidates' addresses in answers. Empty:
	// advertise this host's interface addresses.
	PublicIPs []string
	// BindIP is the local address the leased sockets bind to ("" = all).
	BindIP string
	// PeersPerPort is how many sessions may share one leased port.
	PeersPerPort int
	// SetupTimeout closes a session that is not connected in time.
	SetupTimeout time.Duration
	// ICEDisconnectedTimeout, ICEFailedTimeout and ICEKeepalive tune how fast a
	// vanished client is detected (zero: Pion defaults).
	ICEDisconnectedTimeout, ICEFailedTimeout, ICEKeepalive time.Duration
	// IdleTimeout closes a connected publisher that sends no RTP for this long.
	IdleTimeout time.Duration
	// MaxCandidates caps the remote candidates of a session, its offer and
	// trickle fragments together; zero means DefaultMaxCandidates.
	MaxCandidates int
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// SessionRequest asks the engine for a new peer connection.
type SessionRequest struct {
	ID    string // unguessable session id chosen by the caller
	Room  string
	Role  Role
	Offer string // SDP offer
	// PublisherID makes a viewer follow one publisher; "" follows the newest.
	PublisherID string
	// TrustLocalCandidates keeps remote candidates naming loopback or this
	// host's own addresses, which are otherwise dropped so that a client
	// cannot make pinhole send to itself. Set it only for a client that is
	// really on this host: behind a TCP proxy on the box (FRP) every client
	// arrives from loopback.
	TrustLocalCandidates bool
}

// Answer is the engine's reply to an offer.
type Answer struct {
	SDP        string   // complete answer, all candidates included
	LocalPort  int      // leased local UDP port
	PublicAddr string   // ip:port advertised for the lease
	Codecs     []string // negotiated mime types
}

// PortHolder is one session holding a port.
type PortHolder struct {
	SessionID string    `json:"session_id"`
	Room      string    `json:"room"`
	Role      Role      `json:"role"`
	Since     time.Time `json:"since"`
}

// PortStatus describes one port of the range.
type PortStatus struct {
	LocalPort   int          `json:"local_port"`
	PublicPort  int          `json:"public_port"`
	PublicAddrs []string     `json:"public_addrs"`
	Leased      bool         `json:"leased"`
	Holders     []PortHolder `json:"holders"`
	PacketsIn   uint64       `json:"packets_in"`
	BytesIn     uint64       `json:"bytes_in"`
	LastPacket  time.Time    `json:"last_packet,omitempty"`

	// UnvalidatedPackets counts the packets from sources ICE has not
	// validated (no selected pair of a session on the port names them):
	// strangers, stale paths, checks that failed.
	UnvalidatedPackets uint64 `json:"unvalidated_packets"`
}

// Engine is the media plane. Construct with NewEngine, stop with Close.
type Engine struct {
	*engine
}

// NewEngine builds the media engine: the shared media engine, the port pool
// (every port is checked bindable, so a port in use fails here), and room
// hubs. onEvent may be nil; it is called from Pion goroutines and must not
// block for long.
func NewEngine(cfg Config, onEvent func(Event)) (*Engine, error) {
	return newEngine(cfg, onEvent)
}

// Publish answers a WHIP offer: leases a port, creates the peer connection
// and registers the publisher in its room.
func (e *Engine) Publish(ctx context.Context, req SessionRequest) (*Answer, error) {
	req.Role = RolePublisher
	return e.open(ctx, req)
}

// Watch answers a WHEP offer: leases a port and subscribes the viewer to the
// room's publisher (now or when one arrives).
func (e *Engine) Watch(ctx context.Context, req SessionRequest) (*Answer, error) {
	req.Role = RoleViewer
	return e.open(ctx, req)
}

// Trickle adds the remote candidates of a trickle-ice-sdpfrag (RFC 8840).
func (e *Engine) Trickle(id, fragment string) error { return e.trickle(id, fragment) }

// Restart performs an ICE restart with the fragment's new credentials and
// returns the answer fragment (new ufrag/pwd and all local candidates).
func (e *Engine) Restart(id, fragment string) (string, error) { return e.restart(id, fragment) }

// CloseSession ends a session and frees its lease; ErrSessionNotFound if it
// is not live. Safe to call concurrently and repeatedly.
func (e *Engine) CloseSession(id, reason string) error { return e.closeSession(id, reason) }

// CloseRoom ends every session of a room and returns how many were ended.
func (e *Engine) CloseRoom(room, reason string) int { return e.closeRoom(room, reason) }

// Ports returns the state of every port of the range.
func (e *Engine) Ports() []PortStatus { return e.pool.Status() }

// Capacity returns how many more sessions can be leased now, and the total.
func (e *Engine) Capacity() (free, total int) { return e.pool.Capacity() }

// Publishers returns the live publisher session ids of a room, newest first.
func (e *Engine) Publishers(room string) []string { return e.publishers(room) }

// Live reports whether a session is live on this engine.
func (e *Engine) Live(id string) bool { return e.live(id) }

// Close ends every session, frees every lease and waits for the engine's
// goroutines. Idempotent.
func (e *Engine) Close() error { return e.close() }
