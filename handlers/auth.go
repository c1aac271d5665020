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
// routes the route table marks admin need "Authorization: Bearer <admin
// token>". WHIP/WHEP are guarded by the rooms' own publish and view tokens
// (authorize in sessions.go).

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

// requireAdmin is the middleware of the routes marked admin in the route
// table: 401 unless the request carries the admin token. With no token
// configured and the API not opened (--insecure-open-api) every admin route
// is refused: loopback never means admin, because FRP delivers every
// internet client from 127.0.0.1. The answer never echoes what was sent.
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkAdmin(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isAdmin reports whether r carries the admin token (or the API is open):
// anonymous routes show the admin more (session ids, metadata).
func (s *Server) isAdmin(r *http.Request) bool { return s.checkAdmin(r) == nil }

func (s *Server) checkAdmin(r *http.Request) error {
	if s.cfg.OpenAPI {
		return nil
	}
	if s.cfg.AdminToken == "" {
		return api.Errorf(http.StatusUnauthorized, "%s %s needs the admin token, and none is configured: start pinhole with --admin-token or --admin-token-file (or --insecure-open-api in a lab)", r.Method, r.URL.Path).
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole-admin"`)
	}
	return checkAdmin(r, s.cfg.AdminToken)
}

// checkAdmin answers 401 unless r carries the admin token.
func checkAdmin(r *http.Request, token string) error {
	present, ok := bearerMatches(r, token)
	switch {
	case !present:
		// RFC 6750 §3: no credentials, no error code.
		return api.Errorf(http.StatusUnauthorized, "%s %s needs the admin: send Authorization: Bearer <admin token> (pinhole prints where it keeps the token at start)", r.Method, r.URL.Path).
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole-admin"`)
	case !ok:
		return api.Errorf(http.StatusUnauthorized, "the bearer token is not the admin token").
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole-admin", error="invalid_token"`)
	}
	return nil
}
