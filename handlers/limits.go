package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/time/rate"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/store"
)

// TypeLimit is the problem type of an answer refused by a configured limit;
// the problem's "limit" member names the flag, "max" its value.
const TypeLimit = "urn:pinhole:problem:limit"

// Limits bound what one request or one client address may ask of pinhole.
// Each is a flag of the same name (see main.go); see withDefaults for what
// zero means.
type Limits struct {
	// MaxSDPBytes caps SDP offers and trickle-ICE fragments
	// (--max-sdp-bytes). A browser offer is 5-15 KiB.
	MaxSDPBytes int64
	// MaxJSONBytes caps JSON bodies (--max-json-bytes); a session request
	// carries an SDP offer, so it is the SDP cap plus room for metadata.
	MaxJSONBytes int64
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
}

// DefaultLimits are generous for people and tight for scripts: the values
// of the API's own caps (api.MaxSDPBody, api.MaxJSONBody, the offer checks
// of package media), a few dozen rooms of a few dozen sessions, and a
// session every 200 ms per address with bursts of 10 (a page opening a
// publisher and a few viewers at once).
func DefaultLimits() Limits {
	return Limits{
		MaxSDPBytes:        api.MaxSDPBody,
		MaxJSONBytes:       api.MaxJSONBody,
		MaxMLines:          16,
		MaxCandidates:      64,
		MaxIDLen:           64,
		MaxUserIDLen:       128,
		MaxMetadataEntries: 32,
		MaxMetadataLen:     1024,
		MaxRooms:           100,
		MaxSessionsPerRoom: 100,
		SessionRate:        5,
		SessionBurst:       10,
	}
}

// withDefaults fills zero size and shape limits from DefaultLimits: those
// only refuse what no real client sends. Zero count and rate limits
// (MaxRooms, MaxSessionsPerRoom, SessionRate) stay off: they depend on the
// deployment, so main sets them from flags and tests and benchmarks that
// build a Config of their own are not throttled.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSDPBytes <= 0 {
		l.MaxSDPBytes = d.MaxSDPBytes
	}
	if l.MaxJSONBytes <= 0 {
		l.MaxJSONBytes = d.MaxJSONBytes
	}
	for _, f := range []struct{ v, def *int }{
		{&l.MaxMLines, &d.MaxMLines}, {&l.MaxCandidates, &d.MaxCandidates}, {&l.MaxIDLen, &d.MaxIDLen},
		{&l.MaxUserIDLen, &d.MaxUserIDLen}, {&l.MaxMetadataEntries, &d.MaxMetadataEntries},
		{&l.MaxMetadataLen, &d.MaxMetadataLen},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
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

// routeKind says what a request is to the guard.
type routeKind int

const (
	kindOther      routeKind = iota
	kindCreateSDP            // WHIP/WHEP POST: SDP offer, a new session
	kindCreateJSON           // POST /api/v1/rooms/{room}/sessions
	kindPatch                // trickle-ICE fragment
	kindRoomCreate           // POST /api/v1/rooms (also admin)
)

// guard is the hardening in front of every handler: admin authentication,
// the per-address session rate, and the limits on bodies, offers, ids,
// metadata, rooms and sessions per room. It runs before the handlers so
// that a refused request costs no lease, no Pion object and no store write.
type guard struct {
	s        *Server
	token    string
	lim      Limits
	admin    *chi.Mux // matches adminRoutes
	kinds    *chi.Mux // matches the routes with limits, pattern -> kind
	patterns map[string]routeKind
	rates    *rateLimiter
}

func newGuard(s *Server) *guard {
	g := &guard{
		s: s, token: s.cfg.AdminToken, lim: s.cfg.Limits.withDefaults(),
		admin: chi.NewRouter(), kinds: chi.NewRouter(), patterns: map[string]routeKind{},
	}
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, rt := range adminRoutes {
		g.admin.Method(rt.method, rt.pattern, noop)
	}
	for _, rt := range []struct {
		method, pattern string
		kind            routeKind
	}{
		{http.MethodPost, "/whip/{room}", kindCreateSDP},
		{http.MethodPost, "/whep/{room}", kindCreateSDP},
		{http.MethodPost, "/api/v1/rooms/{room}/sessions", kindCreateJSON},
		{http.MethodPatch, "/whip/{room}/{id}", kindPatch},
		{http.MethodPatch, "/whep/{room}/{id}", kindPatch},
		{http.MethodPost, "/api/v1/rooms", kindRoomCreate},
	} {
		g.kinds.Method(rt.method, rt.pattern, noop)
		g.patterns[rt.method+" "+rt.pattern] = rt.kind
	}
	if g.lim.SessionRate > 0 {
		g.rates = newRateLimiter(rate.Limit(g.lim.SessionRate), g.lim.SessionBurst)
	}
	return g
}

// routePath is the path chi routes on (Mux.routeHTTP): the raw path when
// the URL has one, so the guard and the router always agree on the route.
func routePath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	if r.URL.Path == "" {
		return "/"
	}
	return r.URL.Path
}

func (g *guard) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.check(w, r); err != nil {
			g.s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// check refuses r, or lets it through with its body read and bounded.
func (g *guard) check(w http.ResponseWriter, r *http.Request) error {
	path := routePath(r)
	if g.token != "" && g.admin.Match(chi.NewRouteContext(), r.Method, path) {
		if err := requireAdmin(r, g.token); err != nil {
			return err
		}
	}
	rctx := chi.NewRouteContext()
	pattern := g.kinds.Find(rctx, r.Method, path)
	kind := kindOther
	if pattern != "" {
		kind = g.patterns[r.Method+" "+pattern]
	}
	room := rctx.URLParam("room")

	// Every body is bounded, whatever the route: a client must not make
	// the server read forever. SDP-typed bodies get the SDP cap.
	bodyCap, bodyFlag := g.lim.MaxJSONBytes, "max-json-bytes"
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == api.SDPContentType || mt == api.SDPFragContentType {
		bodyCap, bodyFlag = g.lim.MaxSDPBytes, "max-sdp-bytes"
	}
	if r.ContentLength > bodyCap {
		return limitError(http.StatusRequestEntityTooLarge, bodyFlag, bodyCap, "the body is %d bytes", r.ContentLength)
	}

	if kind == kindCreateSDP || kind == kindCreateJSON {
		// The rate comes before reading the body: it is the cheapest
		// refusal and the one that protects the rest.
		if g.rates != nil {
			if err := g.rates.allow(clientAddr(r)); err != nil {
				return err
			}
		}
	}
	if kind == kindOther {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, bodyCap)
		}
		return nil
	}

	body, err := readCapped(r, bodyCap)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return limitError(http.StatusRequestEntityTooLarge, bodyFlag, bodyCap, "the body exceeds %d bytes", bodyCap)
		}
		return api.Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	switch kind {
	case kindCreateSDP:
		if err := g.checkOffer(string(body), "body"); err != nil {
			return err
		}
		return g.checkRoom(r, room)
	case kindCreateJSON:
		var peek struct {
			SDP         string            `json:"sdp"`
			UserID      string            `json:"user_id"`
			PublisherID string            `json:"publisher_id"`
			Metadata    map[string]string `json:"metadata"`
		}
		// Loose decode: malformed JSON is the handler's to refuse, with
		// its own field-naming errors.
		if json.Unmarshal(body, &peek) == nil {
			if err := g.checkOffer(peek.SDP, "sdp"); err != nil {
				return err
			}
			if err := g.checkIdentity(peek.UserID, peek.PublisherID, peek.Metadata); err != nil {
				return err
			}
		}
		return g.checkRoom(r, room)
	case kindPatch:
		if n := countLines(string(body), "a=candidate:"); n > g.lim.MaxCandidates {
			return limitError(http.StatusBadRequest, "max-candidates", g.lim.MaxCandidates, "the fragment has %d candidates", n)
		}
	case kindRoomCreate:
		var peek struct {
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(body, &peek) == nil {
			if len(peek.Name) > g.lim.MaxIDLen {
				return limitError(http.StatusBadRequest, "max-id-len", g.lim.MaxIDLen, "name is %d characters", len(peek.Name))
			}
			if err := g.checkIdentity("", "", peek.Metadata); err != nil {
				return err
			}
			if err := g.checkRoomCount(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOffer counts an offer's m-lines and candidates. The counts are of
// lines, as any SDP parser would split them; package media checks the
// parsed offer again with its own (higher or equal) caps.
func (g *guard) checkOffer(sdp, field string) error {
	if n := countLines(sdp, "m="); n > g.lim.MaxMLines {
		return limitError(http.StatusBadRequest, "max-m-lines", g.lim.MaxMLines, "%s: the offer has %d m-lines", field, n)
	}
	if n := countLines(sdp, "a=candidate:"); n > g.lim.MaxCandidates {
		return limitError(http.StatusBadRequest, "max-candidates", g.lim.MaxCandidates, "%s: the offer has %d candidates", field, n)
	}
	return nil
}

func (g *guard) checkIdentity(userID, publisherID string, meta map[string]string) error {
	if len(userID) > g.lim.MaxUserIDLen {
		return limitError(http.StatusBadRequest, "max-user-id-len", g.lim.MaxUserIDLen, "user_id is %d characters", len(userID))
	}
	if len(publisherID) > g.lim.MaxIDLen {
		return limitError(http.StatusBadRequest, "max-id-len", g.lim.MaxIDLen, "publisher_id is %d characters", len(publisherID))
	}
	if len(meta) > g.lim.MaxMetadataEntries {
		return limitError(http.StatusBadRequest, "max-metadata-entries", g.lim.MaxMetadataEntries, "metadata has %d entries", len(meta))
	}
	for k, v := range meta {
		if len(v) > g.lim.MaxMetadataLen {
			return limitError(http.StatusBadRequest, "max-metadata-len", g.lim.MaxMetadataLen, "metadata[%s] is %d bytes", truncateID(k), len(v))
		}
	}
	return nil
}

// checkRoom applies the room limits to a session about to be created in
// room: its name's length, the room count when the room would be created
// on the fly, and the room's live sessions.
func (g *guard) checkRoom(r *http.Request, room string) error {
	if len(room) > g.lim.MaxIDLen {
		return limitError(http.StatusBadRequest, "max-id-len", g.lim.MaxIDLen, "room name is %d characters", len(room))
	}
	ctx := r.Context()
	if _, err := g.s.store.GetRoom(ctx, room); errors.Is(err, store.ErrNotFound) {
		// Only a room WHIP/WHEP would create on the fly counts against
		// --max-rooms; a missing room is otherwise the handler's 404.
		if g.s.cfg.AutoCreateRooms {
			return g.checkRoomCount(r)
		}
		return nil
	}
	if g.lim.MaxSessionsPerRoom <= 0 {
		return nil
	}
	live, err := g.s.store.CountSessions(ctx, store.SessionFilter{Room: room})
	if err != nil {
		return err
	}
	if live >= g.lim.MaxSessionsPerRoom {
		return limitError(http.StatusConflict, "max-sessions-per-room", g.lim.MaxSessionsPerRoom,
			"room %q has %d live sessions", room, live).WithHeader("Retry-After", "5")
	}
	return nil
}

func (g *guard) checkRoomCount(r *http.Request) error {
	if g.lim.MaxRooms <= 0 {
		return nil
	}
	rooms, err := g.s.store.ListRooms(r.Context())
	if err != nil {
		return err
	}
	if len(rooms) >= g.lim.MaxRooms {
		return limitError(http.StatusConflict, "max-rooms", g.lim.MaxRooms, "%d rooms exist; delete one first", len(rooms))
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

// clientAddr is the address a rate is counted for: the TCP peer. Behind a
// reverse proxy every client shares the proxy's address; pinhole's
// deployment is a mapped port, not a proxy, so X-Forwarded-For (which a
// client can forge) is not trusted.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rateLimiter keeps a token bucket per client address.
type rateLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxBuckets bounds the limiter's memory under a spray of addresses; past
// it, idle buckets are dropped first (a dropped bucket starts full again,
// which only favours the client).
const maxBuckets = 10000

func newRateLimiter(limit rate.Limit, burst int) *rateLimiter {
	return &rateLimiter{limit: limit, burst: burst, buckets: map[string]*bucket{}}
}

// allow takes a token for addr or returns the 429 with Retry-After.
func (rl *rateLimiter) allow(addr string) error {
	now := time.Now()
	rl.mu.Lock()
	b := rl.buckets[addr]
	if b == nil {
		rl.sweepLocked(now)
		b = &bucket{lim: rate.NewLimiter(rl.limit, rl.burst)}
		rl.buckets[addr] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay > 0 {
		res.CancelAt(now) // a refused request costs no token
	}
	rl.mu.Unlock()
	if delay <= 0 {
		return nil
	}
	// RFC 9110 §10.2.3: whole seconds, at least 1.
	secs := int(math.Ceil(delay.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return limitError(http.StatusTooManyRequests, "session-rate", float64(rl.limit),
		"too many sessions created from %s; retry in %d s", addr, secs).
		WithHeader("Retry-After", fmt.Sprint(secs))
}

// sweepLocked drops buckets idle long enough to be full again, once a
// minute or when the map is at its bound.
func (rl *rateLimiter) sweepLocked(now time.Time) {
	if len(rl.buckets) < maxBuckets && now.Sub(rl.swept) < time.Minute {
		return
	}
	rl.swept = now
	full := time.Duration(float64(rl.burst)/float64(rl.limit)*float64(time.Second)) + time.Second
	for k, b := range rl.buckets {
		if now.Sub(b.seen) > full {
			delete(rl.buckets, k)
		}
	}
	for k := range rl.buckets {
		if len(rl.buckets) < maxBuckets {
			break
		}
		delete(rl.buckets, k)
	}
}
