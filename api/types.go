// Package api holds pinhole's wire types: the JSON bodies of the REST API,
// their validation rules, and the RFC 9457 problem details every error is
// answered with. It imports nothing of pinhole's.
package api

import "time"

// CreateRoomRequest is the body of POST /api/v1/rooms.
type CreateRoomRequest struct {
	// Room name: letters, digits, '-', '_' and '.', 1 to 64 characters.
	Name     string            `json:"name" validate:"required,roomname" example:"studio"`
	Metadata map[string]string `json:"metadata,omitempty" validate:"omitempty,max=32,dive,keys,max=64,endkeys,max=1024"`
	// PublishToken, when set, is required as "Authorization: Bearer" by WHIP.
	PublishToken string `json:"publish_token,omitempty" validate:"omitempty,min=8,max=256"`
	// ViewToken, when set, is required as "Authorization: Bearer" by WHEP.
	ViewToken string `json:"view_token,omitempty" validate:"omitempty,min=8,max=256"`
}

// Room is a room as the API shows it. Tokens are never shown.
type Room struct {
	Name       string            `json:"name" example:"studio"`
	CreatedAt  time.Time         `json:"created_at"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Publishers int               `json:"publishers"`
	Viewers    int               `json:"viewers"`
	// PublishProtected and ViewProtected say whether a token is required.
	PublishProtected bool `json:"publish_protected"`
	ViewProtected    bool `json:"view_protected"`
}

// RoomList is the body of GET /api/v1/rooms.
type RoomList struct {
	Rooms []Room `json:"rooms"`
}

// Participant is one live session of a room as others see it.
type Participant struct {
	// ID is the participant's public id: what ?publisher= takes. It is not
	// the session id, which is the secret in the session URL.
	ID string `json:"id" example:"9c1e2f4a5b6d7e8f"`
	// SessionID is shown to the admin only.
	SessionID string            `json:"session_id,omitempty"`
	UserID    string            `json:"user_id,omitempty"`
	Role      string            `json:"role" enums:"publisher,viewer"`
	State     string            `json:"state" enums:"new,connecting,connected,disconnected,failed,closed"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Since     time.Time         `json:"since"`
}

// ParticipantList is the body of GET /api/v1/rooms/{room}/participants.
type ParticipantList struct {
	Room         string        `json:"room"`
	Participants []Participant `json:"participants"`
}

// CreateSessionRequest is the body of POST /api/v1/rooms/{room}/sessions:
// the JSON twin of WHIP (role publisher) and WHEP (role viewer).
type CreateSessionRequest struct {
	Role     string            `json:"role" validate:"required,oneof=publisher viewer" enums:"publisher,viewer"`
	SDP      string            `json:"sdp" validate:"required,max=65536"`
	UserID   string            `json:"user_id,omitempty" validate:"omitempty,max=128"`
	Metadata map[string]string `json:"metadata,omitempty" validate:"omitempty,max=32,dive,keys,max=64,endkeys,max=1024"`
	// PublisherID makes a viewer follow one publisher, by its public id
	// (the participant list's id); default the newest.
	PublisherID string `json:"publisher_id,omitempty" validate:"omitempty,max=64"`
}

// CreateSessionResponse is the 201 body of POST /api/v1/rooms/{room}/sessions.
type CreateSessionResponse struct {
	Session Session `json:"session"`
	// SDP is the answer, with every candidate of pinhole's.
	SDP string `json:"sdp"`
	// PublicAddr is the public ip:port of the session's leased UDP port.
	PublicAddr string `json:"public_addr" example:"51.161.209.200:10111"`
	// ResourceURL is the WHIP/WHEP resource: PATCH for trickle/ICE restart, DELETE to end.
	ResourceURL string `json:"resource_url" example:"/whip/studio/3f2a..."`
	ETag        string `json:"etag"`
}

// Transition is one state change.
type Transition struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// Lease is the UDP port a session holds.
type Lease struct {
	LocalPort  int    `json:"local_port" example:"10111"`
	PublicAddr string `json:"public_addr" example:"51.161.209.200:10111"`
}

// Counters are a session's media totals.
type Counters struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
}

// Session is a session as the API shows it.
type Session struct {
	ID           string            `json:"id"`
	Room         string            `json:"room"`
	Role         string            `json:"role" enums:"publisher,viewer"`
	UserID       string            `json:"user_id,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	State        string            `json:"state" enums:"new,connecting,connected,disconnected,failed,closed"`
	Transitions  []Transition      `json:"transitions"`
	CreatedAt    time.Time         `json:"created_at"`
	Lease        Lease             `json:"lease"`
	RemoteAddrs  []string          `json:"remote_addrs,omitempty"`
	SelectedPair string            `json:"selected_pair,omitempty"`
	Counters     Counters          `json:"counters"`
	Codecs       []string          `json:"codecs,omitempty"`
	PublisherID  string            `json:"publisher_id,omitempty"`
	CloseReason  string            `json:"close_reason,omitempty"`
	ResourceURL  string            `json:"resource_url"`
}

// SessionList is the body of GET /api/v1/sessions.
type SessionList struct {
	Sessions []Session `json:"sessions"`
}

// PortSession is one session holding a port.
type PortSession struct {
	// ParticipantID is the holder's public id; SessionID is shown to the
	// admin only.
	ParticipantID string    `json:"participant_id"`
	SessionID     string    `json:"session_id,omitempty"`
	Room          string    `json:"room"`
	Role          string    `json:"role"`
	UserID        string    `json:"user_id,omitempty"`
	Since         time.Time `json:"since"`
}

// Port is one port of the leased range.
type Port struct {
	LocalPort  int    `json:"local_port" example:"10111"`
	PublicPort int    `json:"public_port" example:"20111"`
	PublicAddr string `json:"public_addr" example:"51.161.209.200:20111"`
	// State is "free" or "leased".
	State        string        `json:"state" enums:"free,leased"`
	Sessions     []PortSession `json:"sessions"`
	PacketsIn    uint64        `json:"packets_in"`
	BytesIn      uint64        `json:"bytes_in"`
	LastPacketAt *time.Time    `json:"last_packet_at,omitempty"`
}

// PortList is the body of GET /api/v1/ports.
type PortList struct {
	Total        int    `json:"total"`
	Leased       int    `json:"leased"`
	Free         int    `json:"free"`
	PeersPerPort int    `json:"peers_per_port"`
	Ports        []Port `json:"ports"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string `json:"status" example:"ok"`
	Detail string `json:"detail,omitempty"`
}
