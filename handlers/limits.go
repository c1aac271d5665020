package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/edge"
)

// TypeLimit is the problem type of an answer refused by a configured limit;
// the problem's "limit" member names the flag, "max" its value.
const TypeLimit = "urn:pinhole:problem:limit"

// Limits bound what one request or one client address may ask of pinhole.
// Each is a flag of the same name (LimitSpecs); see withDefaults for what
// zero means.
type Limits struct {
	// MaxSDPBytes caps SDP offers and trickle-ICE fragments
	// (--max-sdp-bytes). A browser offer is 5-15 KiB.
	MaxSDPBytes int
	// MaxJSONBytes caps JSON bodies (--max-json-bytes); a session request
	// carries an SDP offer, so it is the SDP cap plus room for metadata.
	MaxJSONBytes int
	// MaxMLines caps the m= sections of an offer (--max-m-lines): real
	// clients send 2-3; each one costs a transceiver.
	MaxMLines int
	// MaxCandidates caps a=candidate lines in an offer or a fragment
	// (--max-candidates): each one costs ICE checks.
	MaxCandidates int
	// MaxIDLen caps room names and publisher ids (--max-id-len).
	MaxIDLen int
	// MaxUserIDLen caps user_id (--max-user-id-len).
	MaxUserIDLen int
	// MaxMetadataEntries and MaxMetadataLen cap metadata maps: entries, and
	// bytes of each value (--max-metadata-entries, --max-metadata-len); keys
	// are capped at 64 by the API's validation.
	MaxMetadataEntries, MaxMetadataLen int
	// MaxRooms caps how many rooms exist (--max-rooms), counting rooms
	// created on the fly by WHIP/WHEP.
	MaxRooms int
	// MaxSessionsPerRoom caps the live sessions of one room
	// (--max-sessions-per-room).
	MaxSessionsPerRoom int
	// SessionRate is how many sessions one client address may create per
	// second (--session-rate), with bursts of SessionBurst (--session-burst);
	// beyond it the answer is 429 with Retry-After.
	SessionRate  float64
	SessionBurst int
	// ResourceRate bounds PATCH and DELETE on session URLs per client
	// address and second (--resource-rate), bursts of twice that;
	// ProbeRate the STUN/TURN probes and self-tests (--probe-rate), bursts
	// of probeBurst. Zero: off.
	ResourceRate, ProbeRate float64
}

// LimitSpec is one integer limit: its flag, default, the range a flag may
// set, and the field of Limits it fills. LimitSpecs is the one table of
// them: main makes the flags from it, DefaultLimits and withDefaults read
// it. Each upper bound is the cap the code below it enforces anyway (api's
// body caps, media's offer checks, the API's field validation): a flag can
// tighten a limit, not lift it past what the code accepts.
type LimitSpec struct {
	Flag        string
	Default     int
	Min, Max    int
	Usage       string
	Field       func(*Limits) *int
	CountOrRate bool // off when zero (deployment-dependent), not defaulted
}

// LimitSpecs are the integer limits. The defaults are generous for people
// and tight for scripts: the API's own caps, a hundred rooms of a hundred
// sessions.
var LimitSpecs = []LimitSpec{
	{"max-sdp-bytes", api.MaxSDPBody, 1024, api.MaxSDPBody, "largest SDP offer or trickle-ICE fragment, bytes", func(l *Limits) *int { return &l.MaxSDPBytes }, false},
	{"max-json-bytes", api.MaxJSONBody, 1024, api.MaxJSONBody, "largest JSON body, bytes", func(l *Limits) *int { return &l.MaxJSONBytes }, false},
	{"max-m-lines", 16, 1, 16, "most m= sections in an offer", func(l *Limits) *int { return &l.MaxMLines }, false},
	{"max-candidates", 64, 1, 64, "most a=candidate lines in an offer or a trickle-ICE fragment", func(l *Limits) *int { return &l.MaxCandidates }, false},
	{"max-id-len", 64, 8, 64, "longest room name or publisher id", func(l *Limits) *int { return &l.MaxIDLen }, false},
	{"max-user-id-len", 128, 1, 128, "longest user_id", func(l *Limits) *int { return &l.MaxUserIDLen }, false},
	{"max-metadata-entries", 32, 1, 32, "most metadata entries of a room or session", func(l *Limits) *int { return &l.MaxMetadataEntries }, false},
	{"max-metadata-len", 1024, 1, 1024, "longest metadata value, bytes", func(l *Limits) *int { return &l.MaxMetadataLen }, false},
	{"max-rooms", 100, 1, 1_000_000, "most rooms, counting those WHIP/WHEP create on the fly", func(l *Limits) *int { return &l.MaxRooms }, true},
	{"max-sessions-per-room", 100, 1, 1_000_000, "most live sessions in one room", func(l *Limits) *int { return &l.MaxSessionsPerRoom }, true},
	{"session-burst", 10, 1, 10000, "sessions one client address may create at once before --session-rate applies", func(l *Limits) *int { return &l.SessionBurst }, true},
}

// DefaultSessionRate is a session every 200 ms per address, with the burst
// of 10 above: a page opening a publisher and a few viewers at once.
const DefaultSessionRate = 5

// DefaultLimits are the defaults of LimitSpecs and DefaultSessionRate.
func DefaultLimits() Limits {
	l := Limits{SessionRate: DefaultSessionRate, ResourceRate: DefaultResourceRate, ProbeRate: DefaultProbeRate}
	for _, sp := range LimitSpecs {
		*sp.Field(&l) = sp.Default
	}
	return l
}

// withDefaults fills zero size and shape limits from LimitSpecs: those only
// refuse what no real client sends. Zero count and rate limits (MaxRooms,
// MaxSessionsPerRoom, SessionRate) stay off: they depend on the deployment,
// so main sets them from flags and tests and benchmarks that build a
// Config of their own are not throttled.
func (l Limits) withDefaults() Limits {
	for _, sp := range LimitSpecs {
		if f := sp.Field(&l); *f <= 0 && !sp.CountOrRate {
			*f = sp.Default
		}
	}
	if l.SessionRate > 0 && l.SessionBurst <= 0 {
		l.SessionBurst = max(1, int(math.Ceil(l.SessionRate)))
	}
	return l
}

// limitError is the answer to a request refused by the limit named flag.
func limitError(status int, flag string, max any, format string, args ...any) *api.Error {
	return &api.Error{
		Status:     status,
		Type:       TypeLimit,
		Title:      "Limit exceeded: --" + flag,
		Msg:        fmt.Sprintf(format, args...) + fmt.Sprintf(" (limit --%s=%v)", flag, max),
		Extensions: map[string]any{"limit": flag, "max": max},
	}
}

// capBody bounds every body, whatever the route: a client must not make
// the server read forever. SDP-typed bodies get the SDP cap.
func (s *Server) capBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bodyCap, _ := s.bodyCap(r)
		if err := s.checkLength(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, bodyCap)
		}
		next.ServeHTTP(w, r)
	})
}

// bodyCap is the largest body r may carry, and the flag that sets it.
func (s *Server) bodyCap(r *http.Request) (int64, string) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == api.SDPContentType || mt == api.SDPFragContentType {
		return int64(s.lim.MaxSDPBytes), "max-sdp-bytes"
	}
	return int64(s.lim.MaxJSONBytes), "max-json-bytes"
}

func (s *Server) checkLength(r *http.Request) error {
	bodyCap, flag := s.bodyCap(r)
	if r.ContentLength > bodyCap {
		return limitError(http.StatusRequestEntityTooLarge, flag, bodyCap, "the body is %d bytes", r.ContentLength)
	}
	return nil
}

// limited wraps a check that reads the (capped) body before the handler
// does, and puts it back for the handler; a refused request costs no lease,
// no Pion object and no store write.
func (s *Server) limited(check func(r *http.Request, body []byte) error) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bodyCap, flag := s.bodyCap(r)
			body, err := readCapped(r, bodyCap)
			if err != nil {
				if errors.Is(err, errTooLarge) {
					err = limitError(http.StatusRequestEntityTooLarge, flag, bodyCap, "the body exceeds %d bytes", bodyCap)
				} else {
					err = api.Errorf(http.StatusBadRequest, "reading the body: %v", err)
				}
				s.writeError(w, r, err)
				return
			}
			if err := check(r, body); err != nil {
				s.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Default rates of the requests that act on an existing session or probe,
// per client address (as the edge resolved it). A browser trickles a
// candidate or two per PATCH and ends with one DELETE, so 20 a second with
// bursts of 40 never touches a real client, while a loop of PATCHes (each
// a handful of ICE checks pinhole sends) is held to that. A person
// checking a setup runs a probe every few seconds at most; each probe
// sends packets and holds a socket for up to its timeout.
const (
	DefaultResourceRate = 20
	DefaultProbeRate    = 0.5
	probeBurst          = 4
	// maxLimiterKeys bounds each limiter's memory under a spray of
	// addresses: the least recently seen are forgotten first (a forgotten
	// address starts with a full bucket, which only favours it).
	maxLimiterKeys = 10000
)

// rateLimit is a middleware refusing a client past lim's rate with 429,
// the flag or reason named, and an honest Retry-After.
func (s *Server) rateLimit(lim *edge.Limiter, flag string, max float64, what string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if lim != nil {
				key := clientAddr(r)
				if ok, wait := lim.Allow(key); !ok {
					s.writeError(w, r, limitError(http.StatusTooManyRequests, flag, max,
						"too many %s from %s; retry in %s s", what, key, edge.RetryAfter(wait)).
						WithHeader("Retry-After", edge.RetryAfter(wait)))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// limitSessionRate is the per-address session rate (--session-rate). It
// comes before reading the body: it is the cheapest refusal and the one
// that protects the rest.
func (s *Server) limitSessionRate(next http.Handler) http.Handler {
	return s.rateLimit(s.rates, "session-rate", s.lim.SessionRate, "sessions created")(next)
}

// limitResourceRate bounds PATCH and DELETE on session URLs per address.
func (s *Server) limitResourceRate(next http.Handler) http.Handler {
	return s.rateLimit(s.resourceRates, "resource-rate", s.lim.ResourceRate, "requests on session URLs")(next)
}

// limitProbeRate bounds STUN/TURN probes and self-tests per address.
func (s *Server) limitProbeRate(next http.Handler) http.Handler {
	return s.rateLimit(s.probeRates, "probe-rate", s.lim.ProbeRate, "probes")(next)
}

// limitOffer checks a WHIP/WHEP offer's shape and its room name's length.
func (s *Server) limitOffer(next http.Handler) http.Handler {
	return s.limited(func(r *http.Request, body []byte) error {
		if err := s.checkOffer(string(body), "body"); err != nil {
			return err
		}
		return s.checkRoomName(chi.URLParam(r, "room"))
	})(next)
}

// limitSessionJSON checks a JSON session request's offer, identity and
// room name. Malformed JSON is the handler's to refuse, with its own
// field-naming errors.
func (s *Server) limitSessionJSON(next http.Handler) http.Handler {
	return s.limited(func(r *http.Request, body []byte) error {
		var peek struct {
			SDP         string            `json:"sdp"`
			UserID      string            `json:"user_id"`
			PublisherID string            `json:"publisher_id"`
			Metadata    map[string]string `json:"metadata"`
		}
		if json.Unmarshal(body, &peek) == nil {
			if err := s.checkOffer(peek.SDP, "sdp"); err != nil {
				return err
			}
			if err := s.checkIdentity(peek.UserID, peek.PublisherID, peek.Metadata); err != nil {
				return err
			}
		}
		return s.checkRoomName(chi.URLParam(r, "room"))
	})(next)
}

// limitFragment caps a trickle-ICE fragment's candidates.
func (s *Server) limitFragment(next http.Handler) http.Handler {
	return s.limited(func(r *http.Request, body []byte) error {
		if n := countLines(string(body), "a=candidate:"); n > s.lim.MaxCandidates {
			return limitError(http.StatusBadRequest, "max-candidates", s.lim.MaxCandidates, "the fragment has %d candidates", n)
		}
		return nil
	})(next)
}

// limitRoomCreate checks a room's name length and metadata; the room count
// is the store's to enforce.
func (s *Server) limitRoomCreate(next http.Handler) http.Handler {
	return s.limited(func(r *http.Request, body []byte) error {
		var peek struct {
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(body, &peek) == nil {
			if len(peek.Name) > s.lim.MaxIDLen {
				return limitError(http.StatusBadRequest, "max-id-len", s.lim.MaxIDLen, "name is %d characters", len(peek.Name))
			}
			return s.checkIdentity("", "", peek.Metadata)
		}
		return nil
	})(next)
}

// checkOffer counts an offer's m-lines and candidates. The counts are of
// lines, as any SDP parser would split them; package media checks the
// parsed offer again with its own (higher or equal) caps.
func (s *Server) checkOffer(sdp, field string) error {
	if n := countLines(sdp, "m="); n > s.lim.MaxMLines {
		return limitError(http.StatusBadRequest, "max-m-lines", s.lim.MaxMLines, "%s: the offer has %d m-lines", field, n)
	}
	if n := countLines(sdp, "a=candidate:"); n > s.lim.MaxCandidates {
		return limitError(http.StatusBadRequest, "max-candidates", s.lim.MaxCandidates, "%s: the offer has %d candidates", field, n)
	}
	return nil
}

func (s *Server) checkIdentity(userID, publisherID string, meta map[string]string) error {
	if len(userID) > s.lim.MaxUserIDLen {
		return limitError(http.StatusBadRequest, "max-user-id-len", s.lim.MaxUserIDLen, "user_id is %d characters", len(userID))
	}
	if len(publisherID) > s.lim.MaxIDLen {
		return limitError(http.StatusBadRequest, "max-id-len", s.lim.MaxIDLen, "publisher_id is %d characters", len(publisherID))
	}
	if len(meta) > s.lim.MaxMetadataEntries {
		return limitError(http.StatusBadRequest, "max-metadata-entries", s.lim.MaxMetadataEntries, "metadata has %d entries", len(meta))
	}
	for k, v := range meta {
		if len(v) > s.lim.MaxMetadataLen {
			return limitError(http.StatusBadRequest, "max-metadata-len", s.lim.MaxMetadataLen, "metadata[%s] is %d bytes", truncateID(k), len(v))
		}
	}
	return nil
}

// checkRoomName caps a room name's length (--max-id-len).
func (s *Server) checkRoomName(room string) error {
	if len(room) > s.lim.MaxIDLen {
		return limitError(http.StatusBadRequest, "max-id-len", s.lim.MaxIDLen, "room name is %d characters", len(room))
	}
	return nil
}

func truncateID(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// countLines counts the lines of s starting with prefix.
func countLines(s, prefix string) int {
	n := 0
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

var errTooLarge = errors.New("body too large")

// readCapped reads r's body, at most max bytes, and puts it back for the
// handler. Bodies are small (an offer), so holding one is cheap, and a
// too-large one is cut off at max+1 bytes.
func readCapped(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, errTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// clientAddr is the key a client's limits are counted under: its address
// as the edge resolved it (the TCP peer, a PROXY protocol header, or a
// trusted proxy's X-Forwarded-For), IPv6 by its /64.
func clientAddr(r *http.Request) string {
	return edge.LimitKey(edge.ClientAddr(r))
}
