package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/store"
)

// link is one parsed RFC 8288 link-value.
type link struct {
	target string
	params map[string]string // names lower-cased (RFC 8288 §3: case-insensitive)
}

// parseLinks parses Link field values strictly by RFC 8288 §3:
//
//	Link       = #link-value
//	link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
//	link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
//
// with RFC 9110 §5.6 tokens and quoted-strings (backslash escapes). Any
// deviation is an error: a client parsing our headers this strictly must
// not fail.
func parseLinks(values []string) ([]link, error) {
	var out []link
	for _, v := range values {
		p := &linkParser{s: v}
		for {
			p.ows()
			if p.eof() {
				break
			}
			if p.peek() == ',' { // empty list elements are allowed (RFC 9110 §5.6.1)
				p.i++
				continue
			}
			l, err := p.linkValue()
			if err != nil {
				return nil, fmt.Errorf("%q: %w", v, err)
			}
			out = append(out, l)
			p.ows()
			if p.eof() {
				break
			}
			if p.peek() != ',' {
				return nil, fmt.Errorf("%q: expected ',' at %d", v, p.i)
			}
			p.i++
		}
	}
	return out, nil
}

type linkParser struct {
	s string
	i int
}

func (p *linkParser) eof() bool  { return p.i >= len(p.s) }
func (p *linkParser) peek() byte { return p.s[p.i] }
func (p *linkParser) ows() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

func isTchar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *linkParser) token() (string, error) {
	start := p.i
	for !p.eof() && isTchar(p.peek()) {
		p.i++
	}
	if p.i == start {
		return "", fmt.Errorf("expected a token at %d", p.i)
	}
	return p.s[start:p.i], nil
}

func (p *linkParser) quoted() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			p.i++
			if p.eof() {
				return "", fmt.Errorf("dangling backslash")
			}
			b.WriteByte(p.peek())
		case c == '\t' || c == ' ' || c >= 0x21 && c != 0x7f:
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("control character in quoted-string at %d", p.i)
		}
		p.i++
	}
	return "", fmt.Errorf("unterminated quoted-string")
}

func (p *linkParser) linkValue() (link, error) {
	l := link{params: map[string]string{}}
	if p.eof() || p.peek() != '<' {
		return l, fmt.Errorf("expected '<' at %d", p.i)
	}
	end := strings.IndexByte(p.s[p.i:], '>')
	if end < 0 {
		return l, fmt.Errorf("unterminated URI-Reference")
	}
	l.target = p.s[p.i+1 : p.i+end]
	if l.target == "" || strings.ContainsAny(l.target, " <\"") {
		return l, fmt.Errorf("bad URI-Reference %q", l.target)
	}
	p.i += end + 1
	for {
		p.ows()
		if p.eof() || p.peek() == ',' {
			return l, nil
		}
		if p.peek() != ';' {
			return l, fmt.Errorf("expected ';' at %d", p.i)
		}
		p.i++
		p.ows()
		name, err := p.token()
		if err != nil {
			return l, err
		}
		name = strings.ToLower(name)
		p.ows()
		val := ""
		if !p.eof() && p.peek() == '=' {
			p.i++
			p.ows()
			if p.eof() {
				return l, fmt.Errorf("missing value of %s", name)
			}
			if p.peek() == '"' {
				val, err = p.quoted()
			} else {
				val, err = p.token()
			}
			if err != nil {
				return l, err
			}
		}
		// RFC 8288 §3.3: a second rel is ignored; keep the first of any.
		if _, dup := l.params[name]; !dup {
			l.params[name] = val
		}
	}
}

func TestLinkParser(t *testing.T) {
	ls, err := parseLinks([]string{`<turn:h:3478?transport=udp>; rel="ice-server"; username="a"; credential="p@s\"s,;x"; credential-type=password, <stun:h>;rel=ice-server`})
	if err != nil || len(ls) != 2 || ls[0].params["credential"] != `p@s"s,;x` || ls[1].params["rel"] != "ice-server" {
		t.Fatalf("%+v %v", ls, err)
	}
	for _, bad := range []string{`stun:h; rel=x`, `<stun:h> rel=x`, `<stun:h>; rel="x`, `<stun:h>; =x`, `<stun:h>; rel=a b`} {
		if _, err := parseLinks([]string{bad}); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// synthOffer builds an offer of the given m-lines ("audio sendonly 111
// opus/48000/2"), loopback-only, as a client on this host sends it.
func synthOffer(mlines ...string) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE")
	for i := range mlines {
		fmt.Fprintf(&b, " %d", i)
	}
	b.WriteString("\r\n")
	for i, m := range mlines {
		f := strings.Fields(m)
		kind, dir, pt, codec := f[0], f[1], f[2], f[3]
		fmt.Fprintf(&b, "m=%s 9 UDP/TLS/RTP/SAVPF %s\r\nc=IN IP4 0.0.0.0\r\n", kind, pt)
		b.WriteString("a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n")
		b.WriteString("a=fingerprint:sha-256 84:67:F7:27:AE:00:74:71:AA:EF:42:E1:B8:85:78:C9:6D:02:CB:F8:83:07:79:1F:4F:79:F8:1B:0A:5F:7C:C7\r\n")
		fmt.Fprintf(&b, "a=setup:actpass\r\na=mid:%d\r\na=%s\r\na=rtcp-mux\r\na=rtpmap:%s %s\r\n", i, dir, pt, codec)
		if i == 0 {
			b.WriteString("a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n")
		}
	}
	return b.String()
}

// restartFrag is an RFC 8840 fragment restarting ICE with ufrag/pwd.
func restartFrag(ufrag, pwd, mid string) string {
	return "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:" + mid +
		"\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
}

func portsOf(sdp string) map[string]bool {
	out := map[string]bool{}
	for _, c := range answerCandidates(sdp) {
		out[c[strings.LastIndex(c, ":")+1:]] = true
	}
	return out
}

// TestConformance is one row per MUST/SHOULD of RFC 9725 and
// draft-ietf-wish-whep-03 that pinhole implements, the section in the row
// name. The rows run against one pinhole with public ports unlike the
// local ones (so "the same public port" means something) and an ICE
// server configured (so Link headers are present).
func TestConformance(t *testing.T) {
	e := newEnv(t, withPublicPorts(), withConfig(func(c *handlers.Config) {
		c.ICEServers = []api.ICEServer{{URL: "stun:stun.example.org:3478"},
			{URL: "turn:turn.example.org:3478", Username: "alice", Credential: "p@ss,w;rd"}}
		c.ShareICECredentials = true // static TURN credentials are handed out only when the operator says so
	}))
	ctx := testCtx(t)
	if _, err := e.store.CreateRoom(context.Background(), store.Room{Name: "secure", PublishToken: "pub-secret-1", ViewToken: "view-secret-1"}, 0); err != nil {
		t.Fatal(err)
	}
	sdpCT := []string{"Content-Type", api.SDPContentType}
	fragCT := []string{"Content-Type", api.SDPFragContentType}
	path := func(res *mediatest.Resource) string { return strings.TrimPrefix(res.URL, e.srv.URL) }
	_, pubRes := e.publish(t, ctx, "conf")
	_, viewRes := e.watch(t, ctx, "conf")
	noBody := func(t *testing.T, resp *http.Response, body string) {
		t.Helper()
		if body != "" || (resp.Header.Get("Content-Length") != "" && resp.Header.Get("Content-Length") != "0") {
			t.Errorf("a body: %q (Content-Length %q)", body, resp.Header.Get("Content-Length"))
		}
	}

	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"RFC9725-4.2 POST 201 Location ETag strong Content-Type sdp", func(t *testing.T) {
			for _, res := range []*mediatest.Resource{pubRes, viewRes} {
				checkCreated(t, res, len(res.Header.Values("Link")))
			}
		}},
		{"RFC9725-4.6 ice-server Links parse by RFC 8288 with credentials", func(t *testing.T) {
			ls, err := parseLinks(pubRes.Header.Values("Link"))
			if err != nil {
				t.Fatal(err)
			}
			var ice []link
			for _, l := range ls {
				if l.params["rel"] == "ice-server" {
					ice = append(ice, l)
				}
			}
			if len(ice) != 2 || ice[0].target != "stun:stun.example.org:3478" || ice[1].params["username"] != "alice" ||
				ice[1].params["credential"] != "p@ss,w;rd" || ice[1].params["credential-type"] != "password" {
				t.Errorf("ice-server links %+v", ice)
			}
		}},
		{"WHEP-events-4 201 Link rel server-sent-events with events", func(t *testing.T) {
			ls, err := parseLinks(viewRes.Header.Values("Link"))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, l := range ls {
				if l.params["rel"] == api.WHEPEventsRel {
					n++
					if l.target != path(viewRes)+"/events" || l.params["events"] != "active,inactive,viewercount" {
						t.Errorf("events link %+v", l)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d events links in %v", n, viewRes.Header.Values("Link"))
			}
			pls, _ := parseLinks(pubRes.Header.Values("Link"))
			for _, l := range pls {
				if l.params["rel"] == api.WHEPEventsRel {
					t.Errorf("WHIP 201 offers the WHEP extension")
				}
			}
		}},
		{"RFC9725-4.2 POST not application/sdp 415 with Accept-Post", func(t *testing.T) {
			resp, body := e.do("POST", "/whip/conf", minimalOffer, "Content-Type", "text/plain")
			problem(t, resp, body, 415)
			if resp.Header.Get("Accept-Post") != api.SDPContentType {
				t.Errorf("Accept-Post %q", resp.Header.Get("Accept-Post"))
			}
		}},
		{"RFC9725-4.2 POST empty offer 400", func(t *testing.T) {
			resp, body := e.do("POST", "/whep/conf", "", sdpCT...)
			problem(t, resp, body, 400)
		}},
		{"RFC9725-4.2 POST garbage offer 400", func(t *testing.T) {
			resp, body := e.do("POST", "/whip/conf", "v=0\r\n\x00garbage\r\n", sdpCT...)
			problem(t, resp, body, 400)
		}},
		{"RFC9725-4.1 GET endpoint 2xx no content", func(t *testing.T) {
			for _, p := range []string{"/whip/conf", "/whep/conf"} {
				resp, body := e.do("GET", p, "")
				if resp.StatusCode/100 != 2 {
					t.Errorf("GET %s: %d %s", p, resp.StatusCode, body)
				}
				noBody(t, resp, body)
			}
		}},
		{"RFC9725-4.1 GET session 2xx no content", func(t *testing.T) {
			for _, res := range []*mediatest.Resource{pubRes, viewRes} {
				resp, body := e.do("GET", path(res), "")
				if resp.StatusCode/100 != 2 {
					t.Errorf("GET %s: %d %s", path(res), resp.StatusCode, body)
				}
				noBody(t, resp, body)
			}
		}},
		{"WHEP-03-4.2 HEAD 200 Content-Type sdp no body", func(t *testing.T) {
			resp, body := e.do("HEAD", "/whep/conf", "")
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != api.SDPContentType || body != "" {
				t.Errorf("HEAD: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			get, _ := e.do("GET", "/whep/conf", "")
			if get.Header.Get("Content-Type") != resp.Header.Get("Content-Type") || get.Header.Get("Accept-Post") != resp.Header.Get("Accept-Post") {
				t.Errorf("HEAD headers differ from GET's: %v vs %v", resp.Header, get.Header)
			}
		}},
		{"WHEP-03-4.2 HEAD invalid room name 400", func(t *testing.T) {
			resp, _ := e.do("HEAD", "/whep/bad*name", "")
			if resp.StatusCode != 400 || resp.Header.Get("Content-Type") == api.SDPContentType {
				t.Errorf("HEAD bad name: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}},
		{"RFC9725-4.2 OPTIONS Accept-Post, preflight without ice-server Link", func(t *testing.T) {
			resp, _ := e.do("OPTIONS", "/whip/conf", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
			if resp.StatusCode/100 != 2 || resp.Header.Get("Accept-Post") != api.SDPContentType {
				t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
			}
			if len(resp.Header.Values("Link")) != 0 {
				t.Errorf("preflight carries Link: %v", resp.Header.Values("Link"))
			}
		}},
		{"RFC9725-4.3.1 PATCH not trickle-ice-sdpfrag 415", func(t *testing.T) {
			resp, body := e.do("PATCH", path(pubRes), "a=end-of-candidates\r\n", "Content-Type", "application/sdp", "If-Match", pubRes.ETag)
			problem(t, resp, body, 415)
		}},
		{"RFC9725-4.3.1 PATCH without If-Match 428", func(t *testing.T) {
			resp, body := e.do("PATCH", path(pubRes), "a=end-of-candidates\r\n", fragCT...)
			problem(t, resp, body, 428)
		}},
		{"RFC9725-4.3.1 PATCH stale If-Match 412", func(t *testing.T) {
			resp, body := e.do("PATCH", path(pubRes), "a=end-of-candidates\r\n", fragCT[0], fragCT[1], "If-Match", `"stale1"`)
			problem(t, resp, body, 412)
		}},
		{"RFC9110-13.1.1 PATCH weak tag 412", func(t *testing.T) {
			resp, body := e.do("PATCH", path(viewRes), "a=end-of-candidates\r\n", fragCT[0], fragCT[1], "If-Match", "W/"+viewRes.ETag)
			problem(t, resp, body, 412)
		}},
		{"RFC9725-4.3.2 trickle 204 no ETag no body", func(t *testing.T) {
			frag := "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:" + api.SDPAttr(pubRes.Answer, "a=mid:") + "\r\na=end-of-candidates\r\n"
			resp, body := e.do("PATCH", path(pubRes), frag, fragCT[0], fragCT[1], "If-Match", pubRes.ETag)
			if resp.StatusCode != 204 || resp.Header.Get("ETag") != "" || body != "" {
				t.Errorf("trickle: %d ETag %q body %q", resp.StatusCode, resp.Header.Get("ETag"), body)
			}
		}},
		{"RFC8839-5.4 PATCH ufrag shorter than 4 400", func(t *testing.T) {
			resp, body := e.do("PATCH", path(viewRes), restartFrag("abc", "0123456789abcdefghijkl", "0"), fragCT[0], fragCT[1], "If-Match", "*")
			if p := problem(t, resp, body, 400); !fieldNamed(p, "ice-ufrag") {
				t.Errorf("does not name ice-ufrag: %s", body)
			}
		}},
		{"RFC8839-5.4 PATCH pwd shorter than 22 400", func(t *testing.T) {
			resp, body := e.do("PATCH", path(viewRes), restartFrag("abcd", "0123456789abcdefghijk", "0"), fragCT[0], fragCT[1], "If-Match", "*")
			if p := problem(t, resp, body, 400); !fieldNamed(p, "ice-pwd") {
				t.Errorf("does not name ice-pwd: %s", body)
			}
		}},
		{"RFC8839-4.4.1.1.1 restart with the current ufrag 400, session kept", func(t *testing.T) {
			sess := e.sessionOf(t, pubRes)
			_, remote, err := e.engine.ICEUfrags(sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := e.do("PATCH", path(pubRes), restartFrag(remote, "0123456789abcdefghijklmn", "0"), fragCT[0], fragCT[1], "If-Match", "*")
			if p := problem(t, resp, body, 400); !fieldNamed(p, "ice-ufrag") {
				t.Errorf("does not name ice-ufrag: %s", body)
			}
			if r, _ := e.do("GET", path(pubRes), ""); r.StatusCode != 200 {
				t.Errorf("session gone after a refused restart: %d", r.StatusCode)
			}
		}},
		{"RFC9725-4.3.3 restart If-Match * 200 sdpfrag new ETag same public port", func(t *testing.T) {
			restartRow(t, e, ctx, "*")
		}},
		{`RFC9725-4.3.3 restart If-Match "*" 200 sdpfrag new ETag same public port`, func(t *testing.T) {
			restartRow(t, e, ctx, `"*"`)
		}},
		{"RFC9725-4.3.1 DELETE ignores If-Match then 404", func(t *testing.T) {
			_, res := e.publish(t, ctx, "conf")
			resp, body := e.do("DELETE", path(res), "", "If-Match", `"not-the-etag"`)
			if resp.StatusCode != 200 {
				t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
			}
			for _, m := range []string{"DELETE", "GET", "PATCH"} {
				resp, body = e.do(m, path(res), "a=end-of-candidates\r\n", fragCT[0], fragCT[1], "If-Match", "*")
				problem(t, resp, body, 404)
			}
		}},
		{"RFC9725-4.7 401 WWW-Authenticate Bearer", func(t *testing.T) {
			for _, p := range []string{"/whip/secure", "/whep/secure"} {
				resp, body := e.do("POST", p, minimalOffer, sdpCT...)
				problem(t, resp, body, 401)
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s WWW-Authenticate %q", p, resp.Header.Get("WWW-Authenticate"))
				}
			}
		}},
	}
	// RFC 9725 §4.2 (answer recvonly in any case) and WHEP-03 §4.3.5 (offer
	// recvonly or sendrecv, answer sendonly): every direction case.
	dirs := []struct {
		endpoint, dir string
		status        int
		answer        string
	}{
		{"/whip/dirs", "sendonly", 201, "recvonly"},
		{"/whip/dirs", "sendrecv", 201, "recvonly"},
		{"/whip/dirs", "recvonly", 422, ""},
		{"/whip/dirs", "inactive", 422, ""},
		{"/whep/dirs", "recvonly", 201, "sendonly"},
		{"/whep/dirs", "sendrecv", 201, "sendonly"},
		{"/whep/dirs", "sendonly", 422, ""},
		{"/whep/dirs", "inactive", 422, ""},
	}
	for _, d := range dirs {
		sec := "RFC9725-4.2"
		if strings.HasPrefix(d.endpoint, "/whep") {
			sec = "WHEP-03-4.3.5"
		}
		rows = append(rows, struct {
			name string
			run  func(t *testing.T)
		}{fmt.Sprintf("%s %s offer %s %d", sec, d.endpoint[1:5], d.dir, d.status), func(t *testing.T) {
			offer := synthOffer("audio "+d.dir+" 111 opus/48000/2", "video "+d.dir+" 96 VP8/90000")
			resp, body := e.do("POST", d.endpoint, offer, sdpCT...)
			if d.status != 201 {
				problem(t, resp, body, d.status)
				return
			}
			if resp.StatusCode != 201 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			defer e.do("DELETE", resp.Header.Get("Location"), "")
			if n := strings.Count(body, "a="+d.answer+"\r\n"); n != 2 {
				t.Errorf("%d m-lines answered %s:\n%s", n, d.answer, body)
			}
		}})
	}
	rows = append(rows, []struct {
		name string
		run  func(t *testing.T)
	}{
		{"RFC9725-4.5.2 two video m-lines 422", func(t *testing.T) {
			resp, body := e.do("POST", "/whip/dirs", synthOffer("video sendonly 96 VP8/90000", "video sendonly 96 VP8/90000"), sdpCT...)
			problem(t, resp, body, 422)
		}},
		{"RFC9725-4.5.3 unsupported codec beside Opus 422", func(t *testing.T) {
			resp, body := e.do("POST", "/whip/dirs", synthOffer("audio sendonly 111 opus/48000/2", "video sendonly 34 H263/90000"), sdpCT...)
			problem(t, resp, body, 422)
		}},
	}...)
	for _, row := range rows {
		t.Run(row.name, row.run)
	}

	// RFC 9725 §4.5: a full pool answers 503 with Retry-After in whole
	// seconds (RFC 9110 §10.2.3: delay-seconds).
	t.Run("RFC9725-4.5 503 Retry-After integer", func(t *testing.T) {
		full := newEnv(t, withPorts(1))
		full.publish(t, ctx, "full")
		resp, body := full.do("POST", "/whip/full", synthOffer("audio sendonly 111 opus/48000/2"), sdpCT...)
		problem(t, resp, body, 503)
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
	})
	// draft-ietf-wish-whep-03 §4.2: a HEAD probe of a room that does not
	// exist (rooms not made on the fly) is no WHEP endpoint.
	t.Run("WHEP-03-4.2 HEAD missing room 404", func(t *testing.T) {
		strict := newEnv(t, withPorts(1), withConfig(func(c *handlers.Config) { c.AutoCreateRooms = false }))
		resp, _ := strict.do("HEAD", "/whep/nowhere", "")
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") == api.SDPContentType {
			t.Errorf("HEAD missing room: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}

// restartRow restarts a fresh publisher's ICE with If-Match ifMatch.
func restartRow(t *testing.T, e *testEnv, ctx context.Context, ifMatch string) {
	t.Helper()
	_, res := e.publish(t, ctx, "conf")
	defer res.Delete(ctx, e.srv.Client())
	p := strings.TrimPrefix(res.URL, e.srv.URL)
	resp, body := e.do("PATCH", p, restartFrag("Rst1", "0123456789abcdefghijklmn", api.SDPAttr(res.Answer, "a=mid:")),
		"Content-Type", api.SDPFragContentType, "If-Match", ifMatch)
	if resp.StatusCode != 200 {
		t.Fatalf("restart: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != api.SDPFragContentType {
		t.Errorf("Content-Type %q", ct)
	}
	tag := resp.Header.Get("ETag")
	if tag == "" || tag == res.ETag || tag[0] != '"' || strings.HasPrefix(tag, "W/") {
		t.Errorf("ETag %q after %q", tag, res.ETag)
	}
	if api.SDPAttr(body, "a=ice-ufrag:") == "" || api.SDPAttr(body, "a=ice-pwd:") == "" {
		t.Errorf("fragment lacks credentials:\n%s", body)
	}
	before, after := portsOf(res.Answer), portsOf(body)
	if len(after) == 0 {
		t.Fatalf("no candidates:\n%s", body)
	}
	for port := range after {
		if !before[port] {
			t.Errorf("restart candidate port %s is not the public port of the answer (%v)", port, before)
		}
	}
	// The new tag is the session's: a trickle with it is taken.
	r, b := e.do("PATCH", p, "a=end-of-candidates\r\n", "Content-Type", api.SDPFragContentType, "If-Match", tag)
	if r.StatusCode != 204 {
		t.Errorf("trickle with the new ETag: %d %s", r.StatusCode, b)
	}
}

// TestREADMEProbeBody: the probe bodies the README shows use the API's own
// field names (it once wrote "timeout", which the API refuses as unknown).
func TestREADMEProbeBody(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("`(\\{\"[a-z_]+\"(?:,\"[a-z_]+\")*\\})`")
	m := re.FindAllStringSubmatch(string(readme), -1)
	if len(m) == 0 {
		t.Fatal("no probe body in README.md")
	}
	known := map[string]bool{}
	for _, typ := range []reflect.Type{reflect.TypeOf(api.TURNProbeRequest{}), reflect.TypeOf(api.STUNProbeRequest{})} {
		for i := range typ.NumField() {
			known[strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]] = true
		}
	}
	for _, body := range m {
		for _, f := range strings.Split(strings.Trim(body[1], "{}"), ",") {
			if name := strings.Trim(f, `"`); !known[name] {
				t.Errorf("README body %s names %q, which the probe API does not take", body[1], name)
			}
		}
	}
}
