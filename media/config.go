package media

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
	// UnprovenGrace is how long after its answer a session that has not
	// connected keeps its port against a newcomer when every port is leased;
	// past it the oldest such session is preempted (see preempt.go). Zero:
	// no preemption, a full pool refuses until a session ends.
	UnprovenGrace time.Duration
	// NoPublisherTimeout closes a connected viewer that has had nothing to
	// receive (no publisher, or none with a codec it offered) for this long.
	// Zero: such a viewer stays until its client leaves.
	NoPublisherTimeout time.Duration
	// GOPCacheAge is how old a publisher's cached group of pictures may be
	// and still start a joining viewer at once (0: one second, see gop.go;
	// negative: no cache, joiners wait for a requested keyframe).
	GOPCacheAge time.Duration
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
	// ICEUfrag is pinhole's ICE ufrag in the answer: the session URL's ETag
	// is derived from it.
	ICEUfrag string
}

// PortHolder is one session holding a port.
type PortHolder struct {
	SessionID string    `json:"session_id"`
	Room      string    `json:"room"`
	Role      Role      `json:"role"`
	Since     time.Time `json:"since"`
	// Transport is what ICE selected for the session, "udp" or "tcp"
	// (ICE-TCP on the HTTP port); empty until connected.
	Transport string `json:"transport,omitempty"`
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

// FormatPorts prints ports compactly: "10111-10115" for a run, else a
// comma-separated list.
func FormatPorts(ports []int) string {
	if len(ports) == 0 {
		return ""
	}
	if ports[len(ports)-1]-ports[0] == len(ports)-1 {
		return fmt.Sprintf("%d-%d", ports[0], ports[len(ports)-1])
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}
