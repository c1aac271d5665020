// Package web embeds pinhole's browser app: plain HTML, CSS and ES modules
// under static/, served as they are (no build step), which talk to pinhole
// only through its own HTTP API (WHIP, WHEP and /api/v1 via fetch).
//
// Every page (/, /rooms/{room}, /ports, /diagnostics) is the same index.html;
// static/app.js picks the page module from location.pathname. Full page
// loads instead of client-side routing keep each page's WebRTC cleanup on
// pagehide simple and reliable.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var embedded embed.FS

// FS returns the app's files, rooted so that "index.html", "app.js" ... are
// at its top (what /static/ serves).
func FS() fs.FS {
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		// fs.Sub only fails on an invalid path; "static" is a constant.
		panic(err)
	}
	return sub
}

// contentSecurityPolicy keeps the app honest: scripts, styles and fetch()
// only from pinhole itself, no inline code, images only local or data: URLs.
// Media elements get MediaStreams through srcObject, which needs no source.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; media-src 'self' blob:; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// file is one embedded file ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the web app. Mount it for GET and HEAD on
//
//	/                 rooms page
//	/rooms/{room}     room page: publish (WHIP) and watch (WHEP)
//	/ports            lease map of the UDP port range
//	/diagnostics      diagnostics page (module static/diagnostics.js)
//	/static/...       the app's files (HTML, CSS, JS, icons)
//	/favicon.ico      the icon, for clients that ask for it by that name
//
// It routes those paths itself and answers 404 for anything else, so it can
// be mounted per path or as a catch-all. Files carry a strong ETag (hash of
// their content) and "Cache-Control: no-cache": browsers revalidate, and a
// new binary never serves stale scripts.
func Handler() http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(FS(), p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(body)
		}
		files[p] = file{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build bug.
		panic(err)
	}
	// mime tables differ between systems; pin the types browsers insist on
	// for modules and the icon.
	for p, f := range files {
		switch path.Ext(p) {
		case ".js", ".mjs":
			f.ctype = "text/javascript; charset=utf-8"
		case ".svg":
			f.ctype = "image/svg+xml"
		case ".css":
			f.ctype = "text/css; charset=utf-8"
		case ".html":
			f.ctype = "text/html; charset=utf-8"
		}
		files[p] = f
	}

	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		f, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasSuffix(name, ".html") {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
		}
		// ServeContent answers If-None-Match with 304 and handles HEAD and Range.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	}
	page := func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") }

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page)
	mux.HandleFunc("GET /rooms/{room}", page)
	mux.HandleFunc("GET /ports", page)
	mux.HandleFunc("GET /diagnostics", page)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, "favicon.svg")
	})
	mux.HandleFunc("GET /static/{file...}", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, r.PathValue("file"))
	})
	return mux
}
