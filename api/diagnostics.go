package api

import "time"

// Check and hop statuses.
const (
	StatusOK      = "ok"
	StatusWarn    = "warn"
	StatusFail    = "fail"
	StatusPending = "pending"
	StatusSkipped = "skipped"
)

// Check is one line of the server report: what was checked, what was seen,
// and when not ok, what to do.
type Check struct {
	// ID is stable for clients ("public-ip", "port-10111", "ice-server-0").
	ID     string `json:"id" example:"public-ip"`
	Name   string `json:"name" example:"public IP configured"`
	Status string `json:"status" enums:"ok,warn,fail"`
	Seen   string `json:"seen,omitempty" example:"--public-ip 51.161.209.200 is not an address of this host: a NAT or port mapping must forward it"`
	Fix    string `json:"fix,omitempty"`
	// Probe holds the STUN or TURN probe result of an ice-server check.
	Probe any `json:"probe,omitempty"`
}

// DiagnosticsReport is the body of GET /api/v1/diagnostics.
type DiagnosticsReport struct {
	// Status is the worst status of the checks.
	Status      string    `json:"status" enums:"ok,warn,fail"`
	GeneratedAt time.Time `json:"generated_at"`
	// Interfaces are this host's addresses, as the checks saw them.
	Interfaces []string `json:"interfaces"`
	Checks     []Check  `json:"checks"`
}

// STUNProbeRequest is the body of POST /api/v1/diagnostics/stun.
type STUNProbeRequest struct {
	URL string `json:"url" validate:"required,max=512" example:"stun:stun.example.org:3478"`
	// Timeout in milliseconds; default 5000, at most 30000.
	TimeoutMillis int `json:"timeout_ms,omitempty" validate:"omitempty,min=100,max=30000" example:"5000"`
}

// TURNProbeRequest is the body of POST /api/v1/diagnostics/turn.
type TURNProbeRequest struct {
	URL        string `json:"url" validate:"required,max=512" example:"turn:turn.example.org:3478?transport=udp"`
	Username   string `json:"username" validate:"required,max=512"`
	Credential string `json:"credential" validate:"max=512"`
	// Timeout in milliseconds; default 8000, at most 30000.
	TimeoutMillis int `json:"timeout_ms,omitempty" validate:"omitempty,min=100,max=30000" example:"8000"`
}

// STUNProbeResult is what a STUN probe saw.
type STUNProbeResult struct {
	URL        string  `json:"url"`
	Server     string  `json:"server,omitempty" example:"192.0.2.10:3478"`
	Reachable  bool    `json:"reachable"`
	MappedAddr string  `json:"mapped_addr,omitempty" example:"51.161.209.200:41234"`
	LocalAddr  string  `json:"local_addr,omitempty"`
	RTTMillis  float64 `json:"rtt_ms,omitempty"`
	// Class is ok, bad-url, dns, unreachable, timeout or other.
	Class string `json:"class" enums:"ok,bad-url,dns,unreachable,timeout,other"`
	Error string `json:"error,omitempty"`
	Fix   string `json:"fix,omitempty"`
	// Verdict names the broken hop (ice-server) in the vocabulary of
	// session verdicts ("stun-timeout", ...); absent when the probe passed.
	Verdict *Verdict `json:"verdict,omitempty"`
}

// TURNProbeResult is what a TURN probe saw.
type TURNProbeResult struct {
	URL         string  `json:"url"`
	Server      string  `json:"server,omitempty"`
	Transport   string  `json:"transport,omitempty" enums:"udp,tcp,tls"`
	Allocated   bool    `json:"allocated"`
	RelayedAddr string  `json:"relayed_addr,omitempty" example:"192.0.2.10:49152"`
	MappedAddr  string  `json:"mapped_addr,omitempty"`
	RTTMillis   float64 `json:"rtt_ms,omitempty"`
	// ErrorCode is the STUN error code the server answered (401, 400, 486...).
	ErrorCode int `json:"error_code,omitempty"`
	// Class is ok, bad-url, dns, unreachable, timeout, auth-refused, quota or other.
	Class string `json:"class" enums:"ok,bad-url,dns,unreachable,timeout,auth-refused,quota,other"`
	Error string `json:"error,omitempty"`
	Fix   string `json:"fix,omitempty"`
	// Verdict names the broken hop (ice-server) in the vocabulary of
	// session verdicts ("turn-timeout", "turn-auth-refused", ...); absent
	// when the allocation succeeded.
	Verdict *Verdict `json:"verdict,omitempty"`
}

// SelfTestRequest is the (optional) body of POST /api/v1/diagnostics/selftest.
type SelfTestRequest struct {
	// Timeout in milliseconds for the whole test; default 15000.
	TimeoutMillis int `json:"timeout_ms,omitempty" validate:"omitempty,min=1000,max=60000" example:"15000"`
}

// SelfTestResult is the body of the self-test answer.
type SelfTestResult struct {
	// Status is ok when media flowed through the public address.
	Status string `json:"status" enums:"ok,fail"`
	// Target is the public address the internal client was sent to.
	Target    string `json:"target,omitempty" example:"51.161.209.200:10111"`
	LocalPort int    `json:"local_port,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	// PacketsReceived counts RTP packets the internal viewer got back.
	PacketsReceived uint64  `json:"packets_received"`
	ConnectMillis   float64 `json:"connect_ms,omitempty"`
	Summary         string  `json:"summary"`
	Fix             string  `json:"fix,omitempty"`
	// Diagnosis is the server-side session diagnosis of the test session.
	Diagnosis *Diagnosis `json:"diagnosis,omitempty"`
}

// TimelineEntry is one milestone of a session.
type TimelineEntry struct {
	At time.Time `json:"at"`
	// SinceStartMillis is the time since the offer arrived.
	SinceStartMillis float64 `json:"since_start_ms"`
	Kind             string  `json:"kind" example:"first-packet"`
	Detail           string  `json:"detail,omitempty" example:"local UDP 10111 from 203.0.113.2:40000"`
}

// Hop is one link of the chain a session needs, in order: signaling, the
// port mapping, ICE, DTLS, media. Probe verdicts use the hop ice-server,
// the diagnostics page's own signaling check the hop signaling.
type Hop struct {
	Name   string `json:"name" enums:"signaling,mapping,ice,dtls,media"`
	Status string `json:"status" enums:"ok,fail,pending,skipped"`
	Detail string `json:"detail,omitempty"`
}

// Verdict names the first broken hop, what shows it and the fix. The
// README lists every id.
type Verdict struct {
	// ID is the stable short name of the verdict, also the failure label in
	// /metrics ("no-packet", "public-ip-mismatch", "ice-failed", "no-video", ...).
	ID string `json:"id" example:"no-packet"`
	// Status is ok (media flowed), fail (a hop broke) or pending (still setting up).
	Status string `json:"status" enums:"ok,fail,pending"`
	// Hop is the first hop that is not ok.
	Hop string `json:"hop,omitempty" enums:"signaling,mapping,ice,dtls,media,ice-server"`
	// Headline says in one sentence what is broken, naming the suspect
	// setting when the evidence points at one.
	Headline string `json:"headline" example:"no packet reached local UDP 10111 within 3s of the answer"`
	// Evidence are the facts from the timeline the verdict rests on.
	Evidence []string `json:"evidence"`
	Fix      string   `json:"fix,omitempty"`
	// SinceStartMillis is when the verdict was reached, after the offer
	// arrived (its last change in verdict_history).
	SinceStartMillis float64 `json:"since_start_ms"`
	// Summary repeats Headline and Code repeats ID for older clients.
	Summary string `json:"summary"`
	Code    string `json:"code" example:"no-packet"`
}

// VerdictChange is one revision of a session's verdict: verdicts are
// given as soon as the evidence is conclusive and revised as it grows.
type VerdictChange struct {
	At               time.Time `json:"at"`
	SinceStartMillis float64   `json:"since_start_ms"`
	ID               string    `json:"id"`
	Status           string    `json:"status" enums:"ok,fail,pending"`
	Hop              string    `json:"hop,omitempty"`
	Headline         string    `json:"headline"`
}

// PathStep is one box of the path picture: from the client through its
// network, the router or tunnel (public address and port) and pinhole's
// leased local port to ICE, DTLS and media.
type PathStep struct {
	ID string `json:"id" enums:"client,client-network,signaling,public,lease,ice,dtls,publisher,rtp-in,rtp-out-audio,rtp-out-video"`
	// Hop is the verdict hop the step belongs to.
	Hop    string `json:"hop"`
	Status string `json:"status" enums:"ok,fail,pending,skipped"`
	// Label names the step with its data (English; the page translates by ID).
	Label  string `json:"label"`
	Detail string `json:"detail,omitempty"`
	// SinceStartMillis is when the step was reached (ok) or found broken.
	SinceStartMillis *float64 `json:"since_start_ms,omitempty"`
	// Broken marks the step the verdict points at; Fix is given there.
	Broken bool   `json:"broken,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// Diagnosis is the body of GET /api/v1/sessions/{id}/diagnosis.
type Diagnosis struct {
	SessionID   string          `json:"session_id"`
	Room        string          `json:"room"`
	Role        string          `json:"role" enums:"publisher,viewer"`
	State       string          `json:"state"`
	Lease       Lease           `json:"lease"`
	RemoteAddrs []string        `json:"remote_addrs,omitempty"`
	Selected    string          `json:"selected_pair,omitempty"`
	Codecs      []string        `json:"codecs,omitempty"`
	Counters    Counters        `json:"counters"`
	CloseReason string          `json:"close_reason,omitempty"`
	Timeline    []TimelineEntry `json:"timeline"`
	Hops        []Hop           `json:"hops"`
	Path        []PathStep      `json:"path"`
	Verdict     Verdict         `json:"verdict"`
	// VerdictHistory lists every change of the verdict, oldest first; the
	// timeline carries the same changes as "verdict" entries.
	VerdictHistory []VerdictChange `json:"verdict_history"`
}
