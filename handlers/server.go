// Package handlers is pinhole's HTTP surface: WHIP (RFC 9725) and WHEP
// endpoints, the JSON REST API under /api/v1, health probes and the OpenAPI
// documentation. Handlers are methods on Server returning error; one function
// (writeError) turns every error into an RFC 9457 problem answer. Live peer
// connections belong to media.Engine; what the API shows lives in the store.
package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// ICEServer is a STUN or TURN server handed to clients in a Link header
// (RFC 9725 §4.6).
type ICEServer struct {
	// URL is the stun:, turn: or turns: URI (RFC 7064, RFC 7065).
	URL string
	// Username and Credential are set for TURN servers.
	Username   string
	Credential string
}

// ParseICEServer parses one --ice-servers entry. TURN credentials may be
// given as userinfo, "turn:user:secret@turn.example.org:3478?transport=udp",
// because RFC 7065 URIs have no place for them; they are moved to the Link
// header parameters.
func ParseICEServer(s string) (ICEServer, error) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || rest == "" {
		return ICEServer{}, fmt.Errorf("%q is not a stun:, turn: or turns: URL", s)
	}
	switch strings.ToLower(scheme) {
	case "stun", "stuns":
		if strings.Contains(rest, "@") {
			return ICEServer{}, fmt.Errorf("%q: STUN URLs carry no credentials", s)
		}
		return ICEServer{URL: strings.ToLower(scheme) + ":" + rest}, nil
	case "turn", "turns":
		srv := ICEServer{}
		if userinfo, host, ok := strings.Cut(rest, "@"); ok {
			user, cred, ok := strings.Cut(userinfo, ":")
			if !ok || user == "" || cred == "" {
				return ICEServer{}, fmt.Errorf("%q: TURN credentials must be user:secret@host", s)
			}
			srv.Username, srv.Credential, rest = user, cred, host
		}
		if rest == "" || strings.HasPrefix(rest, "?") {
			return ICEServer{}, fmt.Errorf("%q has no host", s)
		}
		srv.URL = strings.ToLower(scheme) + ":" + rest
		return srv, nil
	default:
		return ICEServer{}, fmt.Errorf("%q is not a stun:, turn: or turns: URL", s)
	}
}

// LinkValue renders the server as an RFC 8288 Link field value with the
// ice-server relation and, for TURN, the RFC 9725 §4.6 credential
// parameters.
func (s ICEServer) LinkValue() string {
	v := "<" + s.URL + `>; rel="ice-server"`
	if s.Username != "" {
		v += "; username=" + quote(s.Username) + "; credential=" + quote(s.Credential) +
			`; credential-type="password"`
	}
	return v
}

// quote makes an RFC 9110 §5.6.4 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Config is the HTTP side's configuration, filled by main from flags.
type Config struct {
	// ICEServers are advertised in Link headers of WHIP/WHEP answers.
	ICEServers []ICEServer
	// CORSOrigins are the origins allowed to call the API; "*" allows any.
	CORSOrigins []string
	// AutoCreateRooms makes WHIP/WHEP and session creation on a missing
	// room create it instead of answering 404.
	AutoCreateRooms bool
	// PeersPerPort is shown in the port list (the engine enforces it).
	PeersPerPort int
	// Node names this instance in session records.
	Node string
	// AdminToken, when set, is required as "Authorization: Bearer" by the
	// management routes (auth.go); empty leaves them open.
	AdminToken string
	// Limits bound requests and clients (limits.go); zero fields mean
	// the API's own size caps and no count or rate limit.
	Limits Limits
}

// Deps are what the HTTP surface needs. main builds them.
type Deps struct {
	Store  store.Store
	Engine *media.Engine
	// Recorder writes engine events into Store. It must be the one whose
	// OnEvent was handed to media.NewEngine; nil makes a private one (the
	// engine's events are then not recorded).
	Recorder *Recorder
	Config   Config
	Logger   *slog.Logger
	// Web, when set, serves the browser app (package web) on its pages and
	// /static/ files.
	Web http.Handler
	// Mount, when set, adds routes owned by other packages (web UI,
	// diagnostics) to the same router, inside the shared middlewares.
	Mount func(r chi.Router)
}

// Server holds the dependencies of every handler.
type Server struct {
	store    store.Store
	engine   *media.Engine
	rec      *Recorder
	cfg      Config
	log      *slog.Logger
	validate *api.Validator
	mount    func(chi.Router)
	web      http.Handler
	// ufrags holds each live session's remote ICE ufrag, so a PATCH whose
	// fragment carries a new one is taken as an ICE restart (RFC 8840 §4.4).
	ufrags sync.Map // session id -> string
	docs   docsUI
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
	rec := d.Recorder
	if rec == nil {
		rec = NewRecorder(d.Store, log)
	}
	srv := &Server{
		store:    d.Store,
		engine:   d.Engine,
		rec:      rec,
		cfg:      d.Config,
		log:      log,
		validate: api.NewValidator(),
		mount:    d.Mount,
		web:      d.Web,
	}
	forget := func(id string) { srv.ufrags.Delete(id) }
	rec.onClosed.Store(&forget)
	return srv
}

// newID returns an unguessable 128-bit resource id in hex. RFC 9725 §4.2
// and §4.7 rely on the session URL being hard to guess: whoever knows it can
// end the session.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// newETag returns a strong entity tag, quoted (RFC 9110 §8.8.3).
func newETag() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return `"` + hex.EncodeToString(b[:]) + `"`
}

// validSessionID reports whether id could be one of ours, so that junk never
// reaches the store.
func validSessionID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
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
