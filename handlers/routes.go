package handlers

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
)

// Routes returns the router: every route of pinhole in one place, one line
// each, inside the shared middlewares (request id, panic recovery, access
// log, CORS).
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(requestID, recoverer(s.log), accessLog(s.log), cors(s.cfg.CORSOrigins), newGuard(s).middleware)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		api.WriteProblem(w, r, api.Errorf(http.StatusNotFound, "no route for %s", r.URL.Path))
	})
	r.MethodNotAllowed(s.methodNotAllowed(r))
	h := s.handlerFunc

	// WHIP (RFC 9725): publish into a room.
	r.Post("/whip/{room}", h(s.handleWHIPCreate))              // offer in, answer + session URL out
	r.Options("/whip/{room}", h(s.handleWHIPOptions))          // Accept-Post, CORS preflight
	r.Patch("/whip/{room}/{id}", h(s.handleWHIPPatch))         // trickle ICE, ICE restart
	r.Delete("/whip/{room}/{id}", h(s.handleWHIPDelete))       // stop publishing
	r.Options("/whip/{room}/{id}", h(s.handleResourceOptions)) // Accept-Patch, CORS preflight

	// WHEP (draft-ietf-wish-whep): watch a room.
	r.Post("/whep/{room}", h(s.handleWHEPCreate))              // offer in, answer + session URL out
	r.Head("/whep/{room}", h(s.handleWHEPHead))                // endpoint probe
	r.Options("/whep/{room}", h(s.handleWHEPOptions))          // Accept-Post, CORS preflight
	r.Patch("/whep/{room}/{id}", h(s.handleWHEPPatch))         // trickle ICE, ICE restart
	r.Delete("/whep/{room}/{id}", h(s.handleWHEPDelete))       // stop watching
	r.Options("/whep/{room}/{id}", h(s.handleResourceOptions)) // Accept-Patch, CORS preflight

	// JSON REST API.
	r.Route("/api/v1", func(r chi.Router) {
		r.Post("/rooms", h(s.handleRoomCreate))                         // create a room
		r.Get("/rooms", h(s.handleRoomList))                            // list rooms
		r.Get("/rooms/{room}", h(s.handleRoomGet))                      // one room
		r.Delete("/rooms/{room}", h(s.handleRoomDelete))                // delete a room, ending its sessions
		r.Get("/rooms/{room}/participants", h(s.handleParticipantList)) // live sessions of a room
		r.Post("/rooms/{room}/sessions", h(s.handleSessionCreate))      // JSON WHIP/WHEP
		r.Get("/sessions", h(s.handleSessionList))                      // list sessions (room, state, role)
		r.Get("/sessions/{id}", h(s.handleSessionGet))                  // one session
		r.Delete("/sessions/{id}", h(s.handleSessionDelete))            // end a session
		r.Get("/ports", h(s.handlePortList))                            // the UDP port range
	})

	// Operations and documentation.
	r.Get("/healthz", h(s.handleHealthz))      // liveness: 200 while serving
	r.Get("/readyz", h(s.handleReadyz))        // readiness: 200 while a port can be leased
	r.Get("/openapi.json", h(s.handleOpenAPI)) // the OpenAPI document
	r.Get("/docs", h(s.handleDocs))            // Swagger UI (GET and HEAD answer 200)
	r.Head("/docs", h(s.handleDocs))           // Swagger UI probe (curl -I /docs)
	r.Get("/docs/*", h(s.handleDocs))          // Swagger UI assets
	r.Head("/docs/*", h(s.handleDocs))         // Swagger UI assets, headers only

	// Browser app (package web), GET and HEAD.
	if s.web != nil {
		getHead(r, "/", s.web)             // rooms page
		getHead(r, "/rooms/{room}", s.web) // room page: publish and watch
		getHead(r, "/ports", s.web)        // lease map of the port range
		getHead(r, "/diagnostics", s.web)  // diagnostics page
		getHead(r, "/static/*", s.web)     // the app's files
		getHead(r, "/favicon.ico", s.web)  // icon for clients that ask by name
	}

	if s.mount != nil {
		s.mount(r)
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
// RFC 9725 §4.1: GET, HEAD and PUT on the WHIP endpoint get 405.
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
