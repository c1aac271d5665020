// Package handlers is pinhole's HTTP surface: WHIP (RFC 9725) and WHEP
// endpoints, the JSON REST API under /api/v1, health probes, the OpenAPI
// documentation, and the route table that mounts the diagnostics API and
// /metrics beside them. Who may call each route and which limits apply are
// declared in that table (routes.go). Handlers are methods on Server
// returning error; one function (writeError) turns every error into an
// RFC 9457 problem answer. Live peer connections belong to media.Engine;
// records to the store, written through package record.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/pinhole-rtc/pinhole/edge"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// Config is the HTTP side's configuration, filled by main from flags.
type Config struct {
	// ICEServers are advertised in Link headers of WHIP/WHEP answers
	// (iceservers.go says which, with which credentials).
	ICEServers []api.ICEServer
	// ShareICECredentials hands static TURN credentials of ICEServers to
	// clients (--share-ice-credentials); TURNSecret makes time-limited ones
	// for TURN servers without (--turn-secret), valid TURNTTL.
	ShareICECredentials bool
	TURNSecret          string
	TURNTTL             time.Duration
	// CORSOrigins are the origins allowed to call the API; "*" allows any.
	CORSOrigins []string
	// AutoCreateRooms makes WHIP/WHEP and session creation on a missing
	// room create it instead of answering 404.
	AutoCreateRooms bool
	// PeersPerPort is shown in the port list (the engine enforces it).
	PeersPerPort int
	// Node names this instance in session records.
	Node string
	// AdminToken is required as "Authorization: Bearer" by the routes the
	// route table marks admin (routes.go). Empty refuses them all, unless
	// OpenAPI.
	AdminToken string
	// OpenAPI lets anyone call every route, as admin (--insecure-open-api):
	// for a lab only.
	OpenAPI bool
	// Limits bound requests and clients (limits.go); zero fields mean
	// the API's own size caps and no count or rate limit.
	Limits Limits
	// TrustedProxies are the peers whose X-Forwarded-For (or, with
	// ForwardedHeader, RFC 7239 Forwarded) names the client
	// (--trusted-proxies); nobody else's is read.
	TrustedProxies  []netip.Prefix
	ForwardedHeader bool
}

// ParticipantIDHeader carries a new session's participant id (its public
// id) in the 201 answer to WHIP, WHEP and JSON session creation.
const ParticipantIDHeader = "Pinhole-Participant-Id"

// Diagnostics is the diagnostics API (package diagnostics), mounted in this
// package's route table so that who may call it is declared with every
// other route. Its handlers return errors like this package's own.
type Diagnostics interface {
	HandleReport(http.ResponseWriter, *http.Request) error
	HandleSTUN(http.ResponseWriter, *http.Request) error
	HandleTURN(http.ResponseWriter, *http.Request) error
	HandleSelfTest(http.ResponseWriter, *http.Request) error
	HandleDiagnosis(http.ResponseWriter, *http.Request) error
}

// Deps are what the HTTP surface needs. Package server builds them.
type Deps struct {
	Store  store.Store
	Engine *media.Engine
	// Sessions opens and closes sessions through the one record path.
	Sessions *record.Sessions
	Config   Config
	Logger   *slog.Logger
	// Diagnostics, when set, serves /api/v1/diagnostics and the session
	// diagnoses.
	Diagnostics Diagnostics
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Web, when set, serves the browser app (package web) on its pages and
	// /static/ files.
	Web http.Handler
	// Events, when set, serves the WHEP event streams and the room event
	// streams (events.go); it must observe the recorder.
	Events *Events
}

// Server holds the dependencies of every handler.
type Server struct {
	store    store.Store
	engine   *media.Engine
	sessions *record.Sessions
	cfg      Config
	lim      Limits
	log      *slog.Logger
	validate *api.Validator
	diag     Diagnostics
	metrics  http.Handler
	web      http.Handler
	// Per-client limiters: session creation (nil: --session-rate off),
	// requests on session URLs, probes.
	rates, resourceRates, probeRates *edge.Limiter
	clients                          *edge.Resolver
	docs                             docsUI
	events                           *Events
}

// New returns pinhole's HTTP handler.
func New(d Deps) http.Handler {
	return NewServer(d).Routes()
}

// NewServer returns the Server behind New, for callers that need it.
func NewServer(d Deps) *Server {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	srv := &Server{
		store:    d.Store,
		engine:   d.Engine,
		sessions: d.Sessions,
		cfg:      d.Config,
		lim:      d.Config.Limits.withDefaults(),
		log:      log,
		validate: api.NewValidator(),
		diag:     d.Diagnostics,
		metrics:  d.Metrics,
		web:      d.Web,
		events:   d.Events,
	}
	header := edge.XForwardedFor
	if d.Config.ForwardedHeader {
		header = edge.Forwarded
	}
	clients, err := edge.NewResolver(d.Config.TrustedProxies, header)
	if err != nil {
		// Only an invalid prefix fails, and main parses them.
		panic(err)
	}
	srv.clients = clients
	if srv.lim.SessionRate > 0 {
		srv.rates = edge.NewLimiter(srv.lim.SessionRate, srv.lim.SessionBurst, maxLimiterKeys)
	}
	if r := srv.lim.ResourceRate; r > 0 {
		srv.resourceRates = edge.NewLimiter(r, int(2*r)+1, maxLimiterKeys)
	}
	if r := srv.lim.ProbeRate; r > 0 {
		srv.probeRates = edge.NewLimiter(r, probeBurst, maxLimiterKeys)
	}
	return srv
}

// writeError is the one place errors become answers: it maps sentinels of
// store and media to a status, writes application/problem+json and logs
// only 5xx (with the internal cause, never sent).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := s.toAPIError(err)
	if e.Status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed",
			"method", r.Method, "path", r.URL.Path, "status", e.Status,
			"request_id", RequestID(r.Context()), "err", err)
	}
	api.WriteProblem(w, r, e)
}

// toAPIError maps any error to an *api.Error.
func (s *Server) toAPIError(err error) *api.Error {
	if e, ok := api.AsError(err); ok {
		return e
	}
	var (
		full *media.PoolFullError
		det  *media.DetailError
		lim  *store.LimitError
	)
	msg := ""
	if errors.As(err, &det) {
		msg = det.Detail
	}
	orMsg := func(def string) string {
		if msg != "" {
			return msg
		}
		return def
	}
	switch {
	case errors.As(err, &full):
		// RFC 9725 §4.5: an endpoint out of capacity answers 503 with
		// Retry-After (RFC 9110 §10.2.3, whole seconds; at least 1 so a
		// client does not hammer us).
		secs := int((full.RetryAfter + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		e := &api.Error{
			Status:     http.StatusServiceUnavailable,
			Type:       api.TypePoolFull,
			Msg:        fmt.Sprintf("all %d UDP ports are leased (%d leased); retry later or end a session", full.Total, full.Leased),
			Extensions: map[string]any{"total": full.Total, "leased": full.Leased},
			Err:        err,
		}
		return e.WithHeader("Retry-After", fmt.Sprint(secs))
	case errors.Is(err, media.ErrNoPortAvailable):
		return (&api.Error{Status: http.StatusServiceUnavailable, Type: api.TypePoolFull,
			Msg: orMsg("no UDP port available; retry later"), Err: err}).WithHeader("Retry-After", "5")
	case errors.Is(err, media.ErrBadOffer):
		return &api.Error{Status: http.StatusBadRequest, Msg: "malformed SDP offer: " + orMsg("cannot be parsed"), Err: err}
	case errors.Is(err, media.ErrUnsupportedTracks):
		return &api.Error{Status: http.StatusUnprocessableEntity, Msg: "unsupported track set: " + orMsg("no track pinhole can serve"), Err: err}
	case errors.Is(err, media.ErrBadFragment):
		return &api.Error{Status: http.StatusBadRequest, Msg: "malformed trickle-ice-sdpfrag: " + orMsg("cannot be parsed"), Err: err}
	case errors.Is(err, media.ErrSessionNotFound):
		return &api.Error{Status: http.StatusNotFound, Msg: orMsg("session not found"), Err: err}
	case errors.Is(err, media.ErrClosed):
		return (&api.Error{Status: http.StatusServiceUnavailable, Msg: "server is shutting down", Err: err}).WithHeader("Retry-After", "5")
	case errors.Is(err, store.ErrNotFound):
		return &api.Error{Status: http.StatusNotFound, Msg: "not found", Err: err}
	case errors.Is(err, context.Canceled):
		// The client went away mid-request (the server's own contexts are
		// never cancelled while serving): nobody reads this answer and it
		// is not our failure, so it is not logged as one.
		return &api.Error{Status: http.StatusBadRequest, Msg: "request cancelled", Err: err}
	case errors.Is(err, store.ErrExists):
		return &api.Error{Status: http.StatusConflict, Msg: "already exists", Err: err}
	case errors.As(err, &lim):
		// Count limits are enforced by the store where the record is
		// created (so they never overshoot); the answer names the flag.
		if lim.Limit == store.LimitRooms {
			return limitError(http.StatusConflict, "max-rooms", lim.Max, "%d rooms exist; delete one first", lim.Count)
		}
		return limitError(http.StatusConflict, "max-sessions-per-room", lim.Max,
			"the room has %d live sessions", lim.Count).WithHeader("Retry-After", "5")
	default:
		return api.Internal(err)
	}
}

// handlerFunc adapts an error-returning handler to http.HandlerFunc.
func (s *Server) handlerFunc(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}
