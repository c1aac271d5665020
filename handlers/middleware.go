package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/pinhole-rtc/pinhole/api"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestIDHeader carries the request id in requests and answers.
const RequestIDHeader = "X-Request-Id"

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID takes the caller's X-Request-Id when it is short and plain (so a
// proxy's id follows the request into our logs) or makes one, and echoes it
// in the answer.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !plainID(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// plainID accepts 1-64 characters of [A-Za-z0-9._-], nothing a log or
// header could be confused by.
func plainID(id string) bool {
	return id != "" && api.ValidRoomName(id)
}

// accessLog writes one line per request, with its request id.
func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			defer func() {
				status := ww.Status()
				if status == 0 {
					status = http.StatusOK
				}
				level := slog.LevelInfo
				if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
					level = slog.LevelDebug // probes every few seconds would drown the log
				}
				log.LogAttrs(r.Context(), level, "http request",
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Int("bytes", ww.BytesWritten()),
					slog.Duration("duration", time.Since(start)),
					slog.String("remote", r.RemoteAddr),
					slog.String("request_id", RequestID(r.Context())),
				)
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// recoverer turns a handler panic into a logged 500 problem answer.
// http.ErrAbortHandler is re-panicked: it is how a handler aborts on purpose.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				log.ErrorContext(r.Context(), "handler panic",
					"method", r.Method, "path", r.URL.Path,
					"request_id", RequestID(r.Context()),
					"panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
				api.WriteProblem(w, r, api.Internal(fmt.Errorf("panic: %v", rec)))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// CORS header values. WHIP/WHEP clients in browsers must read Location (the
// resource), ETag (for If-Match), Link (ICE servers), Accept-Patch and
// Retry-After (RFC 9725 §4.2, §4.6; WHEP draft §4.2).
const (
	corsExpose  = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After, X-Request-Id, Pinhole-Participant-Id"
	corsAllowH  = "Authorization, Content-Type, If-Match, X-Request-Id"
	corsMethods = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
	// corsMaxAge lets browsers cache a preflight for 10 minutes: one
	// preflight per page load instead of per trickle PATCH.
	corsMaxAge = "600"
)

// cors answers CORS for the configured origins ("*" for any). A preflight
// gets the CORS headers here and then reaches the router, whose OPTIONS
// handlers add Accept-Post/Accept-Patch and answer 204.
func cors(origins []string) func(http.Handler) http.Handler {
	any := slices.Contains(origins, "*")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			switch {
			case any:
				h.Set("Access-Control-Allow-Origin", "*")
			case slices.ContainsFunc(origins, func(o string) bool { return strings.EqualFold(o, origin) }):
				h.Set("Access-Control-Allow-Origin", origin)
			default:
				next.ServeHTTP(w, r) // no CORS headers: the browser refuses the answer
				return
			}
			h.Set("Access-Control-Expose-Headers", corsExpose)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsAllowH)
				h.Set("Access-Control-Max-Age", corsMaxAge)
			}
			next.ServeHTTP(w, r)
		})
	}
}
