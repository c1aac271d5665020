package handlers

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	httpSwagger "github.com/swaggo/http-swagger/v2"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/openapi"
)

// handleHealthz answers 200 while the process serves HTTP.
//
//	@Summary	Liveness
//	@Tags		operations
//	@Produce	json
//	@Success	200	{object}	api.Health
//	@Router		/healthz [get]
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// handleReadyz answers 200 while a session can be leased a port.
//
//	@Summary		Readiness
//	@Description	200 while the UDP port pool can lease; 503 problem when every port is full.
//	@Tags			operations
//	@Produce		json
//	@Success		200	{object}	api.Health
//	@Failure		503	{object}	api.Problem
//	@Router			/readyz [get]
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	free, total := s.engine.Capacity()
	if free <= 0 {
		e := api.Errorf(http.StatusServiceUnavailable, "all %d session slots are leased", total)
		e.Extensions = map[string]any{"total": total, "leased": total}
		return e.WithHeader("Retry-After", "5")
	}
	return writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// handleOpenAPI serves the generated OpenAPI document.
//
//	@Summary	OpenAPI document
//	@Tags		operations
//	@Produce	json
//	@Success	200
//	@Router		/openapi.json [get]
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapi.JSON())
	return nil
}

// docsUI serves Swagger UI. The index is rendered once with a <base> so it
// can be served at /docs itself (`curl -I /docs`, the usual smoke test, wants
// 200, not a redirect) while its relative asset links still resolve
// under /docs/.
type docsUI struct {
	once  sync.Once
	ui    http.HandlerFunc
	index []byte
}

func (d *docsUI) init() {
	d.ui = httpSwagger.Handler(httpSwagger.URL("/openapi.json"))
	req := httptest.NewRequest(http.MethodGet, "/docs/index.html", nil)
	rec := httptest.NewRecorder()
	d.ui(rec, req)
	d.index = bytes.Replace(rec.Body.Bytes(), []byte("<head>"), []byte(`<head><base href="/docs/">`), 1)
}

// handleDocs serves the Swagger UI.
//
//	@Summary	Swagger UI
//	@Tags		operations
//	@Produce	html
//	@Success	200
//	@Router		/docs [get]
func (s *Server) handleDocs(w http.ResponseWriter, r *http.Request) error {
	s.docs.once.Do(s.docs.init)
	rest := strings.TrimPrefix(r.URL.Path, "/docs")
	if rest == "" || rest == "/" || rest == "/index.html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(s.docs.index) // net/http drops the body for HEAD
		return nil
	}
	// The Swagger handler only takes GET; HEAD is GET without a body, which
	// net/http already ensures.
	r2 := r.Clone(r.Context())
	r2.Method = http.MethodGet
	s.docs.ui(w, r2)
	return nil
}
