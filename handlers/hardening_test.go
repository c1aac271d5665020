package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/internal/servertest"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/server"
	"github.com/pinhole-rtc/pinhole/store"
)

// logBuffer collects every log line (debug and up) so tests can check what
// is, and what is never, logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hardEnv is a whole server (internal/servertest) with cfg and its logs
// captured.
func hardEnv(t *testing.T, cfg handlers.Config, opts ...func(*server.Config)) (*testEnv, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.CORSOrigins == nil {
		cfg.CORSOrigins = []string{"*"}
	}
	sc := servertest.Defaults(t, 3, testnet.HandlersLo, testnet.HandlersHi)
	sc.Logger, sc.HTTP = log, cfg
	sc.Media.SetupTimeout = 10 * time.Second
	for _, o := range opts {
		o(&sc)
	}
	e := servertest.Start(t, sc)
	return &testEnv{Env: e, t: t, srv: e.Srv, store: e.Store, engine: e.Engine, rec: e.Recorder, ports: e.Ports}, logs
}

const adminToken = "admin-0123456789-secret"

// The auth matrix: every management route refuses a request without the
// admin token and with a wrong one (401, problem+json, WWW-Authenticate),
// and lets the right one through to its handler. The token never shows in
// an answer or a log line.
func TestAdminAuthMatrix(t *testing.T) {
	e, logs := hardEnv(t, handlers.Config{AdminToken: adminToken, AutoCreateRooms: true})
	routes := []struct {
		method, path, body string
		// ok is what the handler answers once authenticated (the body is
		// built to get a cheap, known answer: no probe leaves the machine).
		ok int
	}{
		{"POST", "/api/v1/rooms", `{"name":"guarded"}`, http.StatusCreated},
		{"DELETE", "/api/v1/rooms/guarded", "", http.StatusNoContent},
		{"DELETE", "/api/v1/sessions/0123456789abcdef0123456789abcdef", "", http.StatusNotFound},
		{"POST", "/api/v1/diagnostics/stun", `{}`, http.StatusBadRequest},
		{"POST", "/api/v1/diagnostics/turn", `{}`, http.StatusBadRequest},
		{"POST", "/api/v1/diagnostics/selftest", `{"bogus":1}`, http.StatusBadRequest},
		// Listings with session ids, URLs and addresses, the server report
		// and the metrics are the admin's too.
		{"GET", "/api/v1/sessions", "", http.StatusOK},
		{"GET", "/api/v1/diagnostics?probes=false", "", http.StatusOK},
		{"GET", "/metrics", "", http.StatusOK},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			for _, c := range []struct {
				name, auth, wwwAuth string
			}{
				{"no token", "", `Bearer realm="pinhole-admin"`},
				{"not bearer", "Basic " + adminToken, `Bearer realm="pinhole-admin"`},
				{"wrong token", "Bearer " + adminToken + "x", `Bearer realm="pinhole-admin", error="invalid_token"`},
				{"token prefix", "Bearer " + adminToken[:10], `Bearer realm="pinhole-admin", error="invalid_token"`},
			} {
				h := []string{"Content-Type", "application/json"}
				if c.auth != "" {
					h = append(h, "Authorization", c.auth)
				}
				resp, body := e.do(rt.method, rt.path, rt.body, h...)
				problem(t, resp, body, http.StatusUnauthorized)
				if got := resp.Header.Get("WWW-Authenticate"); got != c.wwwAuth {
					t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, got, c.wwwAuth)
				}
				if strings.Contains(body, adminToken[:10]) {
					t.Errorf("%s: the answer echoes the token: %s", c.name, body)
				}
			}
			resp, body := e.do(rt.method, rt.path, rt.body, "Content-Type", "application/json", "Authorization", "Bearer "+adminToken)
			if resp.StatusCode != rt.ok {
				t.Fatalf("right token: status %d, want %d: %s", resp.StatusCode, rt.ok, body)
			}
		})
	}
	// Rooms, the port map and health stay open: the web app lists, rooms
	// guard publishing with their own tokens.
	for _, path := range []string{"/api/v1/rooms", "/api/v1/ports", "/healthz"} {
		if resp, body := e.do("GET", path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without token: %d %s", path, resp.StatusCode, body)
		}
	}
	if strings.Contains(logs.String(), adminToken) {
		t.Fatal("the admin token appears in the logs")
	}
}

// Room tokens: a room created with publish and view tokens needs them for
// WHIP and WHEP, and no list, room answer or log line ever shows them.
func TestRoomTokensNeverShown(t *testing.T) {
	e, logs := hardEnv(t, handlers.Config{AdminToken: adminToken})
	const pubTok, viewTok = "publish-token-abcdef", "view-token-123456"
	admin := []string{"Content-Type", "application/json", "Authorization", "Bearer " + adminToken}
	resp, body := e.do("POST", "/api/v1/rooms", fmt.Sprintf(`{"name":"stage","publish_token":%q,"view_token":%q}`, pubTok, viewTok), admin...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create room: %d %s", resp.StatusCode, body)
	}
	answers := []string{body}
	for _, path := range []string{"/api/v1/rooms", "/api/v1/rooms/stage", "/api/v1/rooms/stage/participants", "/api/v1/sessions", "/api/v1/diagnostics"} {
		_, b := e.do("GET", path, "")
		answers = append(answers, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// WHIP: refused without and with the wrong token, accepted with it.
	pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Audio: true})
	_, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whip/stage", pub, nil)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("WHIP without token: %v, want 401", err)
	}
	pub2 := mediatest.NewPublisher(t, mediatest.PublisherOptions{Audio: true})
	_, err = mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whip/stage", pub2, http.Header{"Authorization": {"Bearer " + viewTok}})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("WHIP with the view token: %v, want 401", err)
	}
	pub3 := mediatest.NewPublisher(t, mediatest.PublisherOptions{Audio: true})
	res, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whip/stage", pub3, http.Header{"Authorization": {"Bearer " + pubTok}})
	if err != nil {
		t.Fatalf("WHIP with the publish token: %v", err)
	}
	for _, path := range []string{"/api/v1/sessions", "/api/v1/rooms/stage/participants", "/api/v1/ports"} {
		_, b := e.do("GET", path, "")
		answers = append(answers, b)
	}
	if _, err := res.Delete(ctx, e.srv.Client()); err != nil {
		t.Fatal(err)
	}
	for _, a := range append(answers, logs.String()) {
		if strings.Contains(a, pubTok) || strings.Contains(a, viewTok) {
			t.Fatalf("a room token shows in an answer or a log line:\n%s", a)
		}
	}
}

// A limit answer is problem+json naming the flag and its value.
func limitProblem(t *testing.T, resp *http.Response, body string, status int, flag string) {
	t.Helper()
	p := problem(t, resp, body, status)
	if p["type"] != handlers.TypeLimit || p["limit"] != flag || p["max"] == nil {
		t.Fatalf("problem %s does not name limit %s", body, flag)
	}
	if !strings.Contains(fmt.Sprint(p["detail"]), "--"+flag) {
		t.Fatalf("detail %q does not name --%s", p["detail"], flag)
	}
}

// offerWith builds an SDP offer with mlines m-sections and cands candidates.
func offerWith(mlines, cands int) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 00\r\n")
	for i := range mlines {
		fmt.Fprintf(&b, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:%d\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n", i)
	}
	for i := range cands {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, 40000+i)
	}
	return b.String()
}

// Every limit, hit once.
func TestLimits(t *testing.T) {
	lim := handlers.Limits{
		MaxSDPBytes: 4096, MaxJSONBytes: 8192, MaxMLines: 2, MaxCandidates: 3, MaxIDLen: 12,
		MaxUserIDLen: 8, MaxMetadataEntries: 2, MaxMetadataLen: 16, MaxRooms: 2, MaxSessionsPerRoom: 1,
	}
	e, _ := hardEnv(t, handlers.Config{AutoCreateRooms: true, Limits: lim, OpenAPI: true})
	sdp := []string{"Content-Type", "application/sdp"}
	js := []string{"Content-Type", "application/json"}
	frag := []string{"Content-Type", "application/trickle-ice-sdpfrag", "If-Match", `"x"`}

	t.Run("max-sdp-bytes", func(t *testing.T) {
		resp, body := e.do("POST", "/whip/r1", "v=0\r\n"+strings.Repeat("a=x\r\n", 1000), sdp...)
		limitProblem(t, resp, body, http.StatusRequestEntityTooLarge, "max-sdp-bytes")
	})
	t.Run("max-json-bytes", func(t *testing.T) {
		resp, body := e.do("POST", "/api/v1/rooms/r1/sessions", `{"role":"viewer","sdp":"`+strings.Repeat("x", 9000)+`"}`, js...)
		limitProblem(t, resp, body, http.StatusRequestEntityTooLarge, "max-json-bytes")
	})
	t.Run("max-m-lines", func(t *testing.T) {
		resp, body := e.do("POST", "/whip/r1", offerWith(3, 0), sdp...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-m-lines")
	})
	t.Run("max-candidates", func(t *testing.T) {
		resp, body := e.do("POST", "/whep/r1", offerWith(1, 4), sdp...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-candidates")
		resp, body = e.do("PATCH", "/whip/r1/0123456789abcdef0123456789abcdef", "a=mid:0\r\n"+strings.Join(strings.Split(offerWith(0, 4), "\r\n")[5:], "\r\n"), frag...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-candidates")
		resp, body = e.do("POST", "/api/v1/rooms/r1/sessions", fmt.Sprintf(`{"role":"viewer","sdp":%q}`, offerWith(1, 4)), js...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-candidates")
	})
	t.Run("max-id-len", func(t *testing.T) {
		resp, body := e.do("POST", "/whip/a-room-name-too-long", offerWith(1, 0), sdp...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-id-len")
		resp, body = e.do("POST", "/api/v1/rooms", `{"name":"a-room-name-too-long"}`, js...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-id-len")
	})
	t.Run("max-user-id-len", func(t *testing.T) {
		resp, body := e.do("POST", "/api/v1/rooms/r1/sessions", fmt.Sprintf(`{"role":"viewer","sdp":%q,"user_id":"nine-char"}`, offerWith(1, 0)), js...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-user-id-len")
	})
	t.Run("max-metadata-entries", func(t *testing.T) {
		resp, body := e.do("POST", "/api/v1/rooms", `{"name":"m","metadata":{"a":"1","b":"2","c":"3"}}`, js...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-metadata-entries")
	})
	t.Run("max-metadata-len", func(t *testing.T) {
		resp, body := e.do("POST", "/api/v1/rooms/r1/sessions", fmt.Sprintf(`{"role":"viewer","sdp":%q,"metadata":{"k":"0123456789abcdefg"}}`, offerWith(1, 0)), js...)
		limitProblem(t, resp, body, http.StatusBadRequest, "max-metadata-len")
	})
	t.Run("max-rooms", func(t *testing.T) {
		for _, name := range []string{"one", "two"} {
			if resp, body := e.do("POST", "/api/v1/rooms", `{"name":"`+name+`"}`, js...); resp.StatusCode != http.StatusCreated {
				t.Fatalf("room %s: %d %s", name, resp.StatusCode, body)
			}
		}
		resp, body := e.do("POST", "/api/v1/rooms", `{"name":"three"}`, js...)
		limitProblem(t, resp, body, http.StatusConflict, "max-rooms")
		// WHIP into a new room would create a third one on the fly.
		resp, body = e.do("POST", "/whip/three", offerWith(1, 0), sdp...)
		limitProblem(t, resp, body, http.StatusConflict, "max-rooms")
	})
	t.Run("max-sessions-per-room", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		v := mediatest.NewViewer(t, mediatest.ViewerOptions{Audio: true})
		res, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whep/one", v, nil)
		if err != nil {
			t.Fatalf("first session: %v", err)
		}
		resp, body := e.do("POST", "/whip/one", offerWith(1, 0), sdp...)
		limitProblem(t, resp, body, http.StatusConflict, "max-sessions-per-room")
		if _, err := res.Delete(ctx, e.srv.Client()); err != nil {
			t.Fatal(err)
		}
		if free, total := e.engine.Capacity(); free != total {
			t.Fatalf("%d of %d leases free after the refusals", free, total)
		}
	})
}

// --session-rate: past the burst, session creations from one address get
// 429 with Retry-After; other requests are not counted.
func TestSessionRateLimit(t *testing.T) {
	e, _ := hardEnv(t, handlers.Config{AutoCreateRooms: true, Limits: handlers.Limits{SessionRate: 0.5, SessionBurst: 2}})
	sdp := []string{"Content-Type", "application/sdp"}
	for i := range 5 {
		if resp, body := e.do("GET", "/api/v1/rooms", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %d: %d %s", i, resp.StatusCode, body)
		}
	}
	// Garbage offers: the rate counts attempts, refused or not.
	for i := range 2 {
		if resp, body := e.do("POST", "/whip/r", "v=0\r\nnot an offer", sdp...); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("attempt %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := e.do("POST", "/whep/r", "v=0\r\nnot an offer", sdp...)
	limitProblem(t, resp, body, http.StatusTooManyRequests, "session-rate")
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After %q, want 2 (one token every 2 s)", ra)
	}
	resp, body = e.do("POST", "/api/v1/rooms/r/sessions", `{"role":"viewer","sdp":"v=0"}`, "Content-Type", "application/json")
	limitProblem(t, resp, body, http.StatusTooManyRequests, "session-rate")
}

// A handler panic becomes a 500 problem+json carrying the request id, and
// the log line names the same id; every answer carries X-Request-Id.
func TestPanicRecoveredWithRequestID(t *testing.T) {
	// The web app's handler stands in for any handler: it is mounted
	// inside the same middlewares.
	e, logs := hardEnv(t, handlers.Config{}, func(c *server.Config) {
		c.Web = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom in handler") })
	})
	resp, body := e.do("GET", "/favicon.ico", "", "X-Request-Id", "req-4242")
	p := problem(t, resp, body, http.StatusInternalServerError)
	if resp.Header.Get("X-Request-Id") != "req-4242" {
		t.Fatalf("X-Request-Id %q, want req-4242", resp.Header.Get("X-Request-Id"))
	}
	if strings.Contains(body, "boom") {
		t.Fatalf("the panic value reached the client: %s", body)
	}
	_ = p
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "handler panic") {
			line = l
		}
	}
	if !strings.Contains(line, "request_id=req-4242") || !strings.Contains(line, "boom in handler") {
		t.Fatalf("panic log line %q lacks the request id or the panic", line)
	}
	// The server still serves.
	for _, c := range []struct {
		method, path string
	}{{"GET", "/healthz"}, {"GET", "/nowhere"}, {"DELETE", "/api/v1/sessions/zz"}, {"POST", "/whip/r"}, {"OPTIONS", "/whip/r"}} {
		resp, _ := e.do(c.method, c.path, "")
		id := resp.Header.Get("X-Request-Id")
		if id == "" {
			t.Errorf("%s %s (%d): no X-Request-Id", c.method, c.path, resp.StatusCode)
		}
		if !strings.Contains(logs.String(), "request_id="+id) {
			t.Errorf("%s %s: request id %s not in the access log", c.method, c.path, id)
		}
	}
	// A forged id with odd characters is replaced, not echoed into logs.
	resp, _ = e.do("GET", "/healthz", "", "X-Request-Id", "evil\"id with spaces")
	if id := resp.Header.Get("X-Request-Id"); id == "" || strings.ContainsAny(id, "\" ") {
		t.Fatalf("X-Request-Id %q", id)
	}
}

// Refusals by a limit cost nothing: no lease, no session record.
func TestLimitRefusalsLeaveNothing(t *testing.T) {
	e, _ := hardEnv(t, handlers.Config{AutoCreateRooms: true, Limits: handlers.Limits{MaxCandidates: 1}})
	resp, body := e.do("POST", "/whip/r", offerWith(1, 2), "Content-Type", "application/sdp")
	limitProblem(t, resp, body, http.StatusBadRequest, "max-candidates")
	list, err := e.store.ListSessions(context.Background(), store.SessionFilter{IncludeClosed: true})
	if err != nil || len(list) != 0 {
		t.Fatalf("sessions after refusal: %v %v", list, err)
	}
	var ports struct{ Leased int }
	_, b := e.do("GET", "/api/v1/ports", "")
	_ = json.Unmarshal([]byte(b), &ports)
	if ports.Leased != 0 {
		t.Fatalf("leased ports after refusal: %s", b)
	}
}
