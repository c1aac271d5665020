package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/pinhole-rtc/pinhole/api"
)

// Admin authentication. pinhole is reached through a mapped TCP port, so
// anyone on the internet can send it requests: with --admin-token set, the
// management API (creating and deleting rooms, ending sessions, the
// diagnostics probes that make pinhole send packets elsewhere) needs
// "Authorization: Bearer <admin token>". Reading (lists, the port map,
// health) stays open for the web app, as do WHIP/WHEP, which rooms guard
// with their own publish and view tokens (authorize in sessions.go).

// adminRoutes are the management routes, as chi patterns per method.
var adminRoutes = []struct{ method, pattern string }{
	{http.MethodPost, "/api/v1/rooms"},                // create a room
	{http.MethodDelete, "/api/v1/rooms/{room}"},       // delete a room, ending its sessions
	{http.MethodDelete, "/api/v1/sessions/{id}"},      // end any session
	{http.MethodPost, "/api/v1/diagnostics/stun"},     // STUN probe to a server of the caller's choice
	{http.MethodPost, "/api/v1/diagnostics/turn"},     // TURN allocation probe
	{http.MethodPost, "/api/v1/diagnostics/selftest"}, // internal client through the public address
}

// bearerMatches reports whether r carries "Authorization: Bearer <want>".
// Both sides are hashed first so the comparison is constant-time in the
// token's length too: the time taken tells nothing of the token.
func bearerMatches(r *http.Request, want string) (present, ok bool) {
	auth := r.Header.Get("Authorization")
	scheme, token, found := strings.Cut(auth, " ")
	if auth == "" || !found || !strings.EqualFold(scheme, "Bearer") {
		return false, false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	exp := sha256.Sum256([]byte(want))
	return true, subtle.ConstantTimeCompare(got[:], exp[:]) == 1
}

// requireAdmin answers 401 unless r carries the admin token. The answer
// never echoes what was sent.
func requireAdmin(r *http.Request, token string) error {
	present, ok := bearerMatches(r, token)
	switch {
	case !present:
		// RFC 6750 §3: no credentials, no error code.
		return api.Errorf(http.StatusUnauthorized, "%s %s is a management request: it requires Authorization: Bearer <admin token>", r.Method, r.URL.Path).
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole-admin"`)
	case !ok:
		return api.Errorf(http.StatusUnauthorized, "the bearer token is not the admin token").
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole-admin", error="invalid_token"`)
	}
	return nil
}
