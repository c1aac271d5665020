package handlers

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
)

// Routes returns the router: every route of pinhole in one place, one line
// each, and beside each who may call it and which limits apply:
//
//   - anonymous: anyone who reaches the port. Creating a WHIP/WHEP session
//     still needs the room's token when the room has one (authorize).
//   - holder of the URL (or id): a session's URL and id are unguessable
//     capabilities, handed only to the client that created the session and
//     listed only to the admin; they let it trickle, restart, end and
//     diagnose that session.
//   - admin: "Authorization: Bearer <admin token>" (requireAdmin). There is
//     always a token (main makes one), unless --insecure-open-api.
//
// Limits are middlewares on the routes they bound (limits.go): every body
// is capped; session creation is rate-limited per client address and its
// offer's shape checked before anything is leased. The counts that must not
// overshoot (rooms, sessions per room) are enforced by the store where the
// record is created.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(requestID, s.clients.Middleware, recoverer(s.log), accessLog(s.log), cors(s.cfg.CORSOrigins), s.capBody)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		api.WriteProblem(w, r, api.Errorf(http.StatusNotFound, "no route for %s", r.URL.Path))
	})
	r.MethodNotAllowed(s.methodNotAllowed(r))
	h := s.handlerFunc
	admin := s.requireAdmin
	createSDP := r.With(s.limitSessionRate, s.limitOffer)

	// WHIP (RFC 9725): publish into a room. Anonymous (room tokens apply).
	createSDP.Post("/whip/{room}", h(s.handleWHIPCreate))                    // offer in, answer + session URL out
	r.Options("/whip/{room}", h(s.handleWHIPOptions))                        // Accept-Post, CORS preflight
	r.With(s.limitFragment).Patch("/whip/{room}/{id}", h(s.handleWHIPPatch)) // trickle ICE, ICE restart (holder of the URL)
	r.Delete("/whip/{room}/{id}", h(s.handleWHIPDelete))                     // stop publishing (holder of the URL)
	r.Options("/whip/{room}/{id}", h(s.handleResourceOptions))               // Accept-Patch, CORS preflight
	r.Get("/whip/{room}", h(s.handleWHIPGet))                                // anonymous: 200, no content (RFC 9725 §4.1)
	r.Head("/whip/{room}", h(s.handleWHIPGet))                               // anonymous: GET's headers
	r.Get("/whip/{room}/{id}", h(s.handleWHIPSessionGet))                    // holder of the URL: 200, no content while live
	r.Head("/whip/{room}/{id}", h(s.handleWHIPSessionGet))                   // holder of the URL: GET's headers

	// WHEP (draft-ietf-wish-whep): watch a room. Anonymous (room tokens apply).
	createSDP.Post("/whep/{room}", h(s.handleWHEPCreate))                    // offer in, answer + session URL out
	r.Head("/whep/{room}", h(s.handleWHEPHead))                              // endpoint probe
	r.Options("/whep/{room}", h(s.handleWHEPOptions))                        // Accept-Post, CORS preflight
	r.With(s.limitFragment).Patch("/whep/{room}/{id}", h(s.handleWHEPPatch)) // trickle ICE, ICE restart (holder of the URL)
	r.Delete("/whep/{room}/{id}", h(s.handleWHEPDelete))                     // stop watching (holder of the URL)
	r.Options("/whep/{room}/{id}", h(s.handleResourceOptions))               // Accept-Patch, CORS preflight
	r.Get("/whep/{room}", h(s.handleWHEPHead))                               // anonymous: 200, no content, Content-Type application/sdp
	r.Get("/whep/{room}/{id}", h(s.handleWHEPSessionGet))                    // holder of the URL: 200, no content while live
	r.Head("/whep/{room}/{id}", h(s.handleWHEPSessionGet))                   // holder of the URL: GET's headers

	// WHEP server-sent events (webrtc-http-egress-events §4), announced by a Link in the WHEP 201.
	r.Post("/whep/{room}/{id}/events", h(s.handleWHEPEventsCreate))                 // holder of the session URL (view token applies): create a stream
	r.Get("/whep/{room}/{id}/events/{stream}", h(s.handleWHEPEventStream))          // holder of the stream URL: text/event-stream
	r.Delete("/whep/{room}/{id}/events/{stream}", h(s.handleWHEPEventStreamDelete)) // holder of the stream URL: destroy the stream

	// JSON REST API. A session's own URL and id are capabilities: whoever
	// holds them may read and end that session; listings of sessions are
	// the admin's.
	r.Route("/api/v1", func(r chi.Router) {
		r.With(admin, s.limitRoomCreate).Post("/rooms", h(s.handleRoomCreate))                                  // admin: create (or claim an auto-created) room
		r.Get("/rooms", h(s.handleRoomList))                                                                    // anonymous: list rooms
		r.Get("/rooms/{room}", h(s.handleRoomGet))                                                              // anonymous: one room
		r.With(admin).Delete("/rooms/{room}", h(s.handleRoomDelete))                                            // admin: delete a room, ending its sessions
		r.Get("/rooms/{room}/participants", h(s.handleParticipantList))                                         // anonymous: public ids, user ids, roles, states
		r.Get("/rooms/{room}/events", h(s.handleRoomEvents))                                                    // anonymous, as participants: text/event-stream of joins, leaves, states, publications
		r.With(s.limitSessionRate, s.limitSessionJSON).Post("/rooms/{room}/sessions", h(s.handleSessionCreate)) // anonymous: JSON WHIP/WHEP (room tokens apply)
		r.With(admin).Get("/sessions", h(s.handleSessionList))                                                  // admin: list sessions with ids, URLs, addresses
		r.Get("/sessions/{id}", h(s.handleSessionGet))                                                          // holder of the id: one session
		r.With(admin).Delete("/sessions/{id}", h(s.handleSessionDelete))                                        // admin: end any session
		r.Get("/ports", h(s.handlePortList))                                                                    // anonymous: the UDP port range (participant ids only)
		if d := s.diag; d != nil {
			r.With(admin).Get("/diagnostics", h(d.HandleReport))                               // admin: server report: config, ports, ICE servers
			r.With(admin, s.limitProbeRate).Post("/diagnostics/stun", h(d.HandleSTUN))         // admin: STUN probe (default 5 s)
			r.With(admin, s.limitProbeRate).Post("/diagnostics/turn", h(d.HandleTURN))         // admin: TURN allocation probe (default 8 s)
			r.With(admin, s.limitProbeRate).Post("/diagnostics/selftest", h(d.HandleSelfTest)) // admin: internal client through the public address
			r.Get("/sessions/{id}/diagnosis", h(d.HandleDiagnosis))                            // holder of the id: timeline and verdict of its session
		}
	})

	// Operations and documentation. Anonymous, but /metrics.
	r.Get("/healthz", h(s.handleHealthz))      // liveness: 200 while serving
	r.Get("/readyz", h(s.handleReadyz))        // readiness: 200 while a port can be leased
	r.Get("/openapi.json", h(s.handleOpenAPI)) // the OpenAPI document
	r.Get("/docs", h(s.handleDocs))            // Swagger UI (GET and HEAD answer 200)
	r.Head("/docs", h(s.handleDocs))           // Swagger UI probe (curl -I /docs)
	r.Get("/docs/*", h(s.handleDocs))          // Swagger UI assets
	r.Head("/docs/*", h(s.handleDocs))         // Swagger UI assets, headers only
	if s.metrics != nil {
		r.With(admin).Method(http.MethodGet, "/metrics", s.metrics) // admin: Prometheus text format (bearer_token in the scrape config)
	}

	// Browser app (package web), GET and HEAD. Anonymous.
	if s.web != nil {
		getHead(r, "/", s.web)             // rooms page
		getHead(r, "/rooms/{room}", s.web) // room page: publish and watch
		getHead(r, "/ports", s.web)        // lease map of the port range
		getHead(r, "/diagnostics", s.web)  // diagnostics page
		getHead(r, "/static/*", s.web)     // the app's files
		getHead(r, "/favicon.ico", s.web)  // icon for clients that ask by name
	}
	return r
}

// getHead routes GET and HEAD of pattern to h.
func getHead(r chi.Router, pattern string, h http.Handler) {
	r.Method(http.MethodGet, pattern, h)
	r.Method(http.MethodHead, pattern, h)
}

// methodNotAllowed answers 405 with Allow for a path that exists under other
// methods, and answers OPTIONS (incl. CORS preflight) there with 204.
// PUT on a WHIP/WHEP endpoint gets 405 (RFC 9725 §4.1 answers GET with 2xx).
func (s *Server) methodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range methods {
			if mux.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allow = append(allow, m)
			}
		}
		allow = append(allow, http.MethodOptions)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		api.WriteProblem(w, r, api.Errorf(http.StatusMethodNotAllowed, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
	}
}
