package handlers_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/internal/servertest"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/server"
	"github.com/pinhole-rtc/pinhole/store"
)

// testEnv is a whole pinhole over loopback (internal/servertest).
type testEnv struct {
	*servertest.Env
	t      testing.TB
	srv    *httptest.Server
	store  store.Store
	engine *media.Engine
	rec    *record.Recorder
	ports  []int
}

// envOption changes the server's configuration before it is built.
type envOption func(testing.TB, *server.Config)

func withPorts(n int) envOption {
	return func(t testing.TB, c *server.Config) { c.Media.Ports = freePorts(t, n) }
}
func withPublicPorts() envOption {
	return func(t testing.TB, c *server.Config) { c.Media.PublicPorts = freePorts(t, len(c.Media.Ports)) }
}
func withConfig(f func(*handlers.Config)) envOption {
	return func(_ testing.TB, c *server.Config) { f(&c.HTTP) }
}
func withMedia(f func(*media.Config)) envOption {
	return func(_ testing.TB, c *server.Config) { f(&c.Media) }
}

func testLogger(t testing.TB) *slog.Logger { return servertest.Logger(t) }

func newEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	cfg := servertest.Defaults(t, 5, testnet.HandlersLo, testnet.HandlersHi)
	for _, o := range opts {
		o(t, &cfg)
	}
	e := servertest.Start(t, cfg)
	return &testEnv{Env: e, t: t, srv: e.Srv, store: e.Store, engine: e.Engine, rec: e.Recorder, ports: e.Ports}
}

func (e *testEnv) do(method, path string, body string, header ...string) (*http.Response, string) {
	e.t.Helper()
	return e.Do(method, path, body, header...)
}

func problem(t testing.TB, resp *http.Response, body string, status int) map[string]any {
	t.Helper()
	return servertest.Problem(t, resp, body, status)
}

// fieldNamed reports whether a problem's errors name field.
func fieldNamed(p map[string]any, field string) bool { return servertest.FieldNamed(p, field) }

const minimalOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

func TestProblems(t *testing.T) {
	e := newEnv(t, withConfig(func(c *handlers.Config) { c.AutoCreateRooms = false }))
	if _, err := e.store.CreateRoom(context.Background(), store.Room{Name: "studio", CreatedAt: time.Now()}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateRoom(context.Background(), store.Room{Name: "secure", PublishToken: "pub-secret-1", ViewToken: "view-secret-1"}, 0); err != nil {
		t.Fatal(err)
	}
	sdp := []string{"Content-Type", "application/sdp"}
	cases := []struct {
		name       string
		method     string
		path       string
		body       string
		header     []string
		status     int
		field      string // a field the problem must name
		detail     string // a substring of detail
		wantHeader string // a header that must be set
	}{
		{"whip no content type", "POST", "/whip/studio", minimalOffer, nil, 415, "", "application/sdp", "Accept-Post"},
		{"whip json content type", "POST", "/whip/studio", minimalOffer, []string{"Content-Type", "application/json"}, 415, "", "application/sdp", "Accept-Post"},
		{"whip empty offer", "POST", "/whip/studio", "", sdp, 400, "", "empty", ""},
		{"whip not sdp", "POST", "/whip/studio", "hello", sdp, 400, "", "v=0", ""},
		{"whip bad room name", "POST", "/whip/bad*room", minimalOffer, sdp, 400, "room", "", ""},
		{"whip missing room", "POST", "/whip/nowhere", minimalOffer, sdp, 404, "", "nowhere", ""},
		{"whip token missing", "POST", "/whip/secure", minimalOffer, sdp, 401, "", "Bearer", "WWW-Authenticate"},
		{"whip token wrong", "POST", "/whip/secure", minimalOffer, append(sdp[:2:2], "Authorization", "Bearer nope-nope"), 401, "", "not valid", "WWW-Authenticate"},
		{"whep token missing", "POST", "/whep/secure", minimalOffer, sdp, 401, "", "Bearer", "WWW-Authenticate"},
		{"whep token is the publish token", "POST", "/whep/secure", minimalOffer, append(sdp[:2:2], "Authorization", "Bearer pub-secret-1"), 401, "", "", "WWW-Authenticate"},
		{"whip PUT is 405", "PUT", "/whip/studio", "", nil, 405, "", "", "Allow"},
		{"room create empty name", "POST", "/api/v1/rooms", `{"name":""}`, nil, 400, "name", "name", ""},
		{"room create bad name", "POST", "/api/v1/rooms", `{"name":"a b"}`, nil, 400, "name", "", ""},
		{"room create unknown field", "POST", "/api/v1/rooms", `{"name":"x","bogus":1}`, nil, 400, "bogus", "", ""},
		{"room create wrong type", "POST", "/api/v1/rooms", `{"name":5}`, nil, 400, "name", "string", ""},
		{"room create short token", "POST", "/api/v1/rooms", `{"name":"x","publish_token":"short"}`, nil, 400, "publish_token", "at least 8", ""},
		{"room create trailing data", "POST", "/api/v1/rooms", `{"name":"x"} {}`, nil, 400, "", "single JSON", ""},
		{"room create not json", "POST", "/api/v1/rooms", `{"name":`, nil, 400, "", "", ""},
		{"room create empty body", "POST", "/api/v1/rooms", ``, []string{"Content-Type", "application/json"}, 400, "", "empty", ""},
		{"room create without content type (a cross-site simple request)", "POST", "/api/v1/rooms", `{"name":"x"}`, []string{"Content-Type", ""}, 415, "", "application/json", ""},
		{"room create text/plain", "POST", "/api/v1/rooms", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415, "", "", ""},
		{"room create exists", "POST", "/api/v1/rooms", `{"name":"studio"}`, nil, 409, "", "studio", ""},
		{"room get missing", "GET", "/api/v1/rooms/nope", "", nil, 404, "", "nope", ""},
		{"room delete missing", "DELETE", "/api/v1/rooms/nope", "", nil, 404, "", "", ""},
		{"participants missing room", "GET", "/api/v1/rooms/nope/participants", "", nil, 404, "", "", ""},
		{"session create bad role", "POST", "/api/v1/rooms/studio/sessions", `{"role":"king","sdp":"v=0"}`, nil, 400, "role", "publisher", ""},
		{"session create missing sdp", "POST", "/api/v1/rooms/studio/sessions", `{"role":"viewer"}`, nil, 400, "sdp", "required", ""},
		{"session create bad sdp", "POST", "/api/v1/rooms/studio/sessions", `{"role":"viewer","sdp":"hello"}`, nil, 400, "sdp", "", ""},
		{"session create metadata key too long", "POST", "/api/v1/rooms/studio/sessions", `{"role":"viewer","sdp":"v=0","metadata":{"` + strings.Repeat("k", 65) + `":"v"}}`, nil, 400, "", "", ""},
		{"session create token", "POST", "/api/v1/rooms/secure/sessions", `{"role":"publisher","sdp":"v=0\r\n"}`, nil, 401, "", "", "WWW-Authenticate"},
		{"session list bad state", "GET", "/api/v1/sessions?state=asleep", "", nil, 400, "state", "", ""},
		{"session list bad role", "GET", "/api/v1/sessions?role=king", "", nil, 400, "role", "", ""},
		{"session get missing", "GET", "/api/v1/sessions/0123456789abcdef0123456789abcdef", "", nil, 404, "", "", ""},
		{"session get junk id", "GET", "/api/v1/sessions/junk", "", nil, 404, "", "", ""},
		{"session delete missing", "DELETE", "/api/v1/sessions/0123456789abcdef0123456789abcdef", "", nil, 404, "", "", ""},
		{"whip delete missing", "DELETE", "/whip/studio/0123456789abcdef0123456789abcdef", "", nil, 404, "", "", ""},
		{"whep patch missing", "PATCH", "/whep/studio/0123456789abcdef0123456789abcdef", "a=end-of-candidates\r\n", []string{"Content-Type", "application/trickle-ice-sdpfrag", "If-Match", "*"}, 404, "", "", ""},
		{"unknown route", "GET", "/nope", "", nil, 404, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(tc.method, tc.path, tc.body, tc.header...)
			p := problem(t, resp, body, tc.status)
			if tc.field != "" && !fieldNamed(p, tc.field) {
				t.Errorf("problem does not name field %q: %s", tc.field, body)
			}
			if d, _ := p["detail"].(string); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q does not mention %q", d, tc.detail)
			}
			if tc.wantHeader != "" && resp.Header.Get(tc.wantHeader) == "" {
				t.Errorf("header %s missing", tc.wantHeader)
			}
			if resp.Header.Get(handlers.RequestIDHeader) == "" {
				t.Error("X-Request-Id missing")
			}
		})
	}
}

// TestPatchPreconditions covers RFC 9725 §4.3.1 on a recorded session:
// 415 for another body type, 428 without If-Match, 412 for a stale tag.
func TestPatchPreconditions(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, res := e.publish(t, ctx, "studio")
	id := res.URL[strings.LastIndex(res.URL, "/")+1:]
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"
	path := "/whip/studio/" + id

	resp, body := e.do("PATCH", path, frag, "Content-Type", "application/sdp", "If-Match", res.ETag)
	problem(t, resp, body, 415)
	if resp.Header.Get("Accept-Patch") != api.SDPFragContentType {
		t.Errorf("415 without Accept-Patch: %v", resp.Header)
	}
	resp, body = e.do("PATCH", path, frag, "Content-Type", api.SDPFragContentType)
	problem(t, resp, body, 428)
	resp, body = e.do("PATCH", path, frag, "Content-Type", api.SDPFragContentType, "If-Match", `"stale"`)
	problem(t, resp, body, 412)
	resp, body = e.do("PATCH", path, frag, "Content-Type", api.SDPFragContentType, "If-Match", "W/"+res.ETag)
	problem(t, resp, body, 412)
	// The same id under the WHEP path or another room is not this resource.
	resp, body = e.do("PATCH", "/whep/studio/"+id, frag, "Content-Type", api.SDPFragContentType, "If-Match", res.ETag)
	problem(t, resp, body, 404)
	resp, body = e.do("DELETE", "/whip/other/"+id, "")
	problem(t, resp, body, 404)
}

func TestDocsAndSpec(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/docs", "/docs/", "/docs/index.html"} {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := e.do(method, path, "")
			if resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%s %s: Content-Type %q", method, path, resp.Header.Get("Content-Type"))
			}
			if method == "GET" && !strings.Contains(body, `<base href="/docs/">`) {
				t.Errorf("%s: index without base: %.200s", path, body)
			}
		}
	}
	resp, body := e.do("GET", "/docs/swagger-ui.css", "")
	if resp.StatusCode != 200 || len(body) < 1000 {
		t.Errorf("swagger-ui.css: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = e.do("GET", "/openapi.json", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var spec struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &spec); err != nil {
		t.Fatalf("/openapi.json is not JSON: %v", err)
	}
	for _, p := range []string{"/whip/{room}", "/whep/{room}", "/api/v1/rooms", "/api/v1/ports"} {
		if _, ok := spec.Paths[p]; !ok {
			t.Errorf("spec lacks path %s", p)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t)
	preflight := func(path, method string) *http.Response {
		resp, _ := e.do("OPTIONS", path, "", "Origin", "https://app.example", "Access-Control-Request-Method", method,
			"Access-Control-Request-Headers", "authorization, content-type, if-match")
		return resp
	}
	resp := preflight("/whip/studio", "POST")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Errorf("OPTIONS without Accept-Post: %v", resp.Header)
	}
	for _, h := range []string{"Authorization", "Content-Type", "If-Match"} {
		if !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), h) {
			t.Errorf("Allow-Headers lacks %s", h)
		}
	}
	for _, h := range []string{"Location", "ETag", "Link", "Accept-Patch", "Retry-After"} {
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), h) {
			t.Errorf("Expose-Headers lacks %s", h)
		}
	}
	resp = preflight("/whep/studio/0123456789abcdef0123456789abcdef", "PATCH")
	if resp.StatusCode != 204 || resp.Header.Get("Accept-Patch") != api.SDPFragContentType {
		t.Errorf("resource preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = preflight("/api/v1/rooms", "POST")
	if resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("api preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// A plain OPTIONS carries Accept-Post too (RFC 9725 §4.2).
	resp, _ = e.do("OPTIONS", "/whep/studio", "")
	if resp.StatusCode != 204 || resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Errorf("OPTIONS /whep: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = e.do("HEAD", "/whep/studio", "")
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /whep: %d", resp.StatusCode)
	}

	// Listed origins only.
	e2 := newEnv(t, withConfig(func(c *handlers.Config) { c.CORSOrigins = []string{"https://ok.example"} }))
	resp, _ = e2.do("GET", "/healthz", "", "Origin", "https://ok.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://ok.example" {
		t.Errorf("listed origin not allowed: %v", resp.Header)
	}
	resp, _ = e2.do("GET", "/healthz", "", "Origin", "https://evil.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unlisted origin allowed: %v", resp.Header)
	}
}

func TestRecovererAndRequestID(t *testing.T) {
	e := newEnv(t, func(_ testing.TB, c *server.Config) {
		c.Web = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("kaboom internal detail") })
	})
	resp, body := e.do("GET", "/favicon.ico", "", handlers.RequestIDHeader, "req-42")
	p := problem(t, resp, body, 500)
	if strings.Contains(body, "kaboom") {
		t.Errorf("panic detail leaked: %s", body)
	}
	if resp.Header.Get(handlers.RequestIDHeader) != "req-42" {
		t.Errorf("request id not echoed: %q", resp.Header.Get(handlers.RequestIDHeader))
	}
	_ = p
	resp, _ = e.do("GET", "/healthz", "", handlers.RequestIDHeader, "bad id with spaces")
	if id := resp.Header.Get(handlers.RequestIDHeader); id == "" || strings.Contains(id, " ") {
		t.Errorf("bad request id taken: %q", id)
	}
}

func TestRoomsAPI(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do("POST", "/api/v1/rooms", `{"name":"studio","metadata":{"k":"v"},"publish_token":"secret-publish"}`, "Content-Type", "application/json")
	if resp.StatusCode != 201 || resp.Header.Get("Location") != "/api/v1/rooms/studio" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var room api.Room
	if err := json.Unmarshal([]byte(body), &room); err != nil || room.Name != "studio" || !room.PublishProtected || room.ViewProtected {
		t.Fatalf("room: %+v %v", room, err)
	}
	if strings.Contains(body, "secret-publish") {
		t.Fatalf("token shown: %s", body)
	}
	resp, body = e.do("GET", "/api/v1/rooms", "")
	var list api.RoomList
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Rooms) != 1 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/api/v1/rooms/studio/participants", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"participants":[]`) {
		t.Fatalf("participants: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/api/v1/sessions", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"sessions":[]`) {
		t.Fatalf("sessions: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/api/v1/ports", "")
	var ports api.PortList
	if err := json.Unmarshal([]byte(body), &ports); err != nil || resp.StatusCode != 200 {
		t.Fatalf("ports: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.do("DELETE", "/api/v1/rooms/studio", "")
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	resp, _ = e.do("GET", "/api/v1/rooms/studio", "")
	if resp.StatusCode != 404 {
		t.Fatalf("after delete: %d", resp.StatusCode)
	}
	resp, body = e.do("GET", "/healthz", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
}

func TestICEServerLink(t *testing.T) {
	cases := []struct {
		in, link string
		bad      bool
	}{
		{"stun:stun.example.org:3478", `<stun:stun.example.org:3478>; rel="ice-server"`, false},
		{"turn:alice:s3cr\"t@turn.example.org:3478?transport=udp", `<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="alice"; credential="s3cr\"t"; credential-type="password"`, false},
		{"turns:turn.example.org:5349", `<turns:turn.example.org:5349>; rel="ice-server"`, false},
		{"turn:alice:p@ss@turn.example.org:3478", `<turn:turn.example.org:3478>; rel="ice-server"; username="alice"; credential="p@ss"; credential-type="password"`, false},
		{"http://example.org", "", true},
		{"stun:user:pw@host", "", true},
		{"turn:@host", "", true},
		{"turn:", "", true},
	}
	for _, tc := range cases {
		srv, err := api.ParseICEServer(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if !tc.bad && srv.LinkValue() != tc.link {
			t.Errorf("%q: link %s, want %s", tc.in, srv.LinkValue(), tc.link)
		}
	}
}

// freePorts finds n consecutive free UDP ports in the handlers tests' range.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	return testnet.FreeUDPPorts(t, n, testnet.HandlersLo, testnet.HandlersHi)
}
