package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
	"github.com/pinhole-rtc/pinhole/store"
)

// waitFor is the event wait of every test here: a generous deadline, never
// an assertion on how fast something happens.
const waitFor = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *testEnv) publish(t *testing.T, ctx context.Context, room string) (*mediatest.Publisher, *mediatest.Resource) {
	t.Helper()
	pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: mediatest.CodecVP8, Audio: true})
	res, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whip/"+room, pub, nil)
	if err != nil {
		t.Fatalf("WHIP: %v", err)
	}
	pub.Start()
	return pub, res
}

func (e *testEnv) watch(t *testing.T, ctx context.Context, room string) (*mediatest.Viewer, *mediatest.Resource) {
	t.Helper()
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	res, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whep/"+room, v, nil)
	if err != nil {
		t.Fatalf("WHEP: %v", err)
	}
	return v, res
}

// sessionOf returns the store record behind a resource URL.
func (e *testEnv) sessionOf(t *testing.T, res *mediatest.Resource) store.Session {
	t.Helper()
	id := res.URL[strings.LastIndex(res.URL, "/")+1:]
	s, err := e.store.GetSession(context.Background(), id)
	if err != nil {
		t.Fatalf("session %s: %v", id, err)
	}
	return s
}

func (e *testEnv) free() int {
	free, _ := e.engine.Capacity()
	return free
}

// candidateRE matches a host candidate: address and port.
var candidateRE = regexp.MustCompile(`(?m)^a=candidate:\S+ \d+ (?i:udp) \d+ (\S+) (\d+) typ host`)

// answerCandidates returns the ip:port of every host candidate of an SDP.
func answerCandidates(sdp string) []string {
	var out []string
	for _, m := range candidateRE.FindAllStringSubmatch(sdp, -1) {
		out = append(out, m[1]+":"+m[2])
	}
	return out
}

var locationRE = regexp.MustCompile(`^/(whip|whep)/[A-Za-z0-9._-]+/[0-9a-f]{32}$`)

// checkCreated checks the RFC 9725 §4.2 answer headers of a 201.
func checkCreated(t *testing.T, res *mediatest.Resource, wantLinks int) {
	t.Helper()
	loc := res.Header.Get("Location")
	if !locationRE.MatchString(loc) {
		t.Errorf("Location %q is not /whip|whep/{room}/{128-bit hex id}", loc)
	}
	if tag := res.ETag; len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' || strings.HasPrefix(tag, "W/") {
		t.Errorf("ETag %q is not a strong quoted tag", tag)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/sdp" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := len(res.Header.Values("Link")); got != wantLinks {
		t.Errorf("%d Link headers, want %d: %v", got, wantLinks, res.Header.Values("Link"))
	}
}

// TestE2EOnePublisherThreeViewers: every viewer decodes video and gets
// audio; each session holds one distinct port, advertised with the public
// IP in its answer; DELETE frees the port.
func TestE2EOnePublisherThreeViewers(t *testing.T) {
	e := newEnv(t, withConfig(func(c *handlers.Config) {
		c.ICEServers = []api.ICEServer{{URL: "stun:stun.example.org:3478"}, {URL: "turn:turn.example.org:3478?transport=udp", Username: "u", Credential: "p"}}
		c.ShareICECredentials = true // static TURN credentials are handed out only when the operator says so
	}))
	ctx := testCtx(t)
	pub, pubRes := e.publish(t, ctx, "studio")
	checkCreated(t, pubRes, 2)
	if !strings.Contains(strings.Join(pubRes.Header.Values("Link"), "\n"), `username="u"; credential="p"; credential-type="password"`) {
		t.Errorf("TURN Link lacks credentials: %v", pubRes.Header.Values("Link"))
	}
	if err := pub.WaitConnected(ctx); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	resources := []*mediatest.Resource{pubRes}
	var viewers []*mediatest.Viewer
	for range 3 {
		v, res := e.watch(t, ctx, "studio")
		checkCreated(t, res, 3) // two ICE servers and the WHEP events extension
		viewers = append(viewers, v)
		resources = append(resources, res)
	}
	for i, v := range viewers {
		if err := v.WaitConnected(ctx); err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		if err := v.WaitVideoFrames(ctx, 30); err != nil {
			t.Fatalf("viewer %d video: %v (stats %+v)", i, err, v.Stats())
		}
		if err := v.WaitAudioPackets(ctx, 25); err != nil {
			t.Fatalf("viewer %d audio: %v (stats %+v)", i, err, v.Stats())
		}
	}

	// One distinct leased port per session, and the answer advertises it
	// with the public IP.
	seen := map[int]bool{}
	for _, res := range resources {
		s := e.sessionOf(t, res)
		if seen[s.Lease.LocalPort] {
			t.Errorf("port %d leased twice", s.Lease.LocalPort)
		}
		seen[s.Lease.LocalPort] = true
		want := "127.0.0.1:" + strconv.Itoa(s.Lease.LocalPort)
		cands := answerCandidates(res.Answer)
		if len(cands) == 0 {
			t.Errorf("answer has no host candidate:\n%s", res.Answer)
		}
		for _, c := range cands {
			if c != want {
				t.Errorf("answer candidate %s, want %s", c, want)
			}
		}
		if s.Lease.PublicAddr != want {
			t.Errorf("lease public addr %s, want %s", s.Lease.PublicAddr, want)
		}
	}
	if e.free() != len(e.ports)-4 {
		t.Errorf("free %d, want %d", e.free(), len(e.ports)-4)
	}

	// The API shows the sessions connected, the participants and the ports.
	eventually(t, "sessions connected in the store", func() bool {
		list, _ := e.store.ListSessions(ctx, store.SessionFilter{State: store.StateConnected})
		return len(list) == 4
	})
	resp, body := e.do("GET", "/api/v1/rooms/studio/participants", "")
	var parts api.ParticipantList
	if err := json.Unmarshal([]byte(body), &parts); err != nil || resp.StatusCode != 200 || len(parts.Participants) != 4 {
		t.Fatalf("participants: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/api/v1/ports", "")
	var ports api.PortList
	if err := json.Unmarshal([]byte(body), &ports); err != nil || ports.Leased != 4 || ports.Total != len(e.ports) {
		t.Fatalf("ports: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/api/v1/rooms/studio", "")
	var room api.Room
	if err := json.Unmarshal([]byte(body), &room); err != nil || room.Publishers != 1 || room.Viewers != 3 {
		t.Fatalf("room: %s", body)
	}

	// DELETE frees the port.
	code, err := resources[1].Delete(ctx, e.srv.Client())
	if err != nil || code != 200 {
		t.Fatalf("DELETE: %d %v", code, err)
	}
	if e.free() != len(e.ports)-3 {
		t.Errorf("after DELETE free %d, want %d", e.free(), len(e.ports)-3)
	}
	code, _ = resources[1].Delete(ctx, e.srv.Client())
	if code != 404 {
		t.Errorf("second DELETE: %d, want 404", code)
	}
	if s := e.sessionOf(t, resources[1]); s.State != store.StateClosed || s.CloseReason == "" {
		t.Errorf("deleted session: state %s reason %q", s.State, s.CloseReason)
	}
}

// TestE2EPoolFull: with 5 ports the 6th session gets 503 + Retry-After and a
// problem saying how many ports exist and are leased; capacity returns
// after deletes, and /readyz follows.
func TestE2EPoolFull(t *testing.T) {
	e := newEnv(t, withPorts(5))
	ctx := testCtx(t)
	var res []*mediatest.Resource
	for range 5 {
		_, r := e.watch(t, ctx, "studio")
		res = append(res, r)
	}
	if resp, _ := e.do("GET", "/readyz", ""); resp.StatusCode != 503 {
		t.Errorf("/readyz with a full pool: %d", resp.StatusCode)
	}
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	_, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whep/studio", v, nil)
	var he *mediatest.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 503 {
		t.Fatalf("6th session: %v", err)
	}
	if he.ContentType != api.ProblemContentType {
		t.Errorf("503 Content-Type %q", he.ContentType)
	}
	if ra, err := strconv.Atoi(he.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", he.Header.Get("Retry-After"))
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(he.Body), &p); err != nil || p["total"] != float64(5) || p["leased"] != float64(5) {
		t.Errorf("503 problem: %s", he.Body)
	}
	for _, r := range res[:2] {
		if code, err := r.Delete(ctx, e.srv.Client()); err != nil || code != 200 {
			t.Fatalf("DELETE: %d %v", code, err)
		}
	}
	if e.free() != 2 {
		t.Fatalf("free after 2 deletes: %d", e.free())
	}
	if resp, _ := e.do("GET", "/readyz", ""); resp.StatusCode != 200 {
		t.Errorf("/readyz after deletes: %d", resp.StatusCode)
	}
	e.watch(t, ctx, "studio")
}

// TestE2EVanishedClient: a client that closes its peer without DELETE, and
// one that POSTs and never connects, both give their port back within the
// configured timeouts.
func TestE2EVanishedClient(t *testing.T) {
	e := newEnv(t, withMedia(func(c *media.Config) {
		c.SetupTimeout = 2 * time.Second
		c.ICEDisconnectedTimeout = time.Second
		c.ICEFailedTimeout = time.Second
	}))
	ctx := testCtx(t)
	total := len(e.ports)

	pub, pubRes := e.publish(t, ctx, "studio")
	if err := pub.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if e.free() != total-1 {
		t.Fatalf("free %d", e.free())
	}
	_ = pub.Close() // vanish: no DELETE
	eventually(t, "vanished publisher's port freed", func() bool { return e.free() == total })
	eventually(t, "vanished publisher closed in the store", func() bool {
		s := e.sessionOf(t, pubRes)
		return s.State == store.StateClosed
	})

	// Never connects: the offer is posted, the answer never applied.
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	offer, err := v.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.do("POST", "/whep/studio", offer, "Content-Type", "application/sdp")
	if resp.StatusCode != 201 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	if e.free() != total-1 {
		t.Fatalf("free %d after POST", e.free())
	}
	eventually(t, "never-connected viewer's port freed", func() bool { return e.free() == total })
	id := resp.Header.Get("Location")[strings.LastIndex(resp.Header.Get("Location"), "/")+1:]
	eventually(t, "never-connected viewer closed in the store", func() bool {
		s, err := e.store.GetSession(ctx, id)
		return err == nil && s.State == store.StateClosed && s.CloseReason != ""
	})
}

// TestE2EViewerBeforePublisher: a viewer that arrives first gets media when
// a publisher arrives, and again when the publisher leaves and comes back.
func TestE2EViewerBeforePublisher(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	v, _ := e.watch(t, ctx, "studio")
	if err := v.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	pub, pubRes := e.publish(t, ctx, "studio")
	if err := v.WaitVideoFrames(ctx, 20); err != nil {
		t.Fatalf("viewer before publisher: %v (%+v)", err, v.Stats())
	}
	if err := v.WaitAudioPackets(ctx, 20); err != nil {
		t.Fatalf("viewer before publisher, audio: %v", err)
	}
	// The publisher leaves and comes back.
	if code, err := pubRes.Delete(ctx, e.srv.Client()); err != nil || code != 200 {
		t.Fatalf("DELETE publisher: %d %v", code, err)
	}
	_ = pub.Close()
	before := v.Stats().VideoFrames
	e.publish(t, ctx, "studio")
	if err := v.WaitVideoFrames(ctx, before+20); err != nil {
		t.Fatalf("after publisher came back: %v (%+v)", err, v.Stats())
	}
}

// TestE2ERoomDelete: deleting a room ends its sessions and frees the ports.
func TestE2ERoomDelete(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	pub, pubRes := e.publish(t, ctx, "studio")
	if err := pub.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	_, vRes := e.watch(t, ctx, "studio")
	resp, _ := e.do("DELETE", "/api/v1/rooms/studio", "")
	if resp.StatusCode != 204 {
		t.Fatalf("DELETE room: %d", resp.StatusCode)
	}
	if e.free() != len(e.ports) {
		t.Errorf("free %d after room delete", e.free())
	}
	for _, r := range []*mediatest.Resource{pubRes, vRes} {
		if s := e.sessionOf(t, r); s.State != store.StateClosed || s.CloseReason != "room deleted" {
			t.Errorf("session %s: %s %q", s.ID, s.State, s.CloseReason)
		}
	}
	resp, body := e.do("GET", "/api/v1/sessions?room=studio", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"sessions":[]`) {
		t.Errorf("live sessions after room delete: %s", body)
	}
}

// TestE2EPublicPorts: with --public-ports the answer advertises the public
// port mapped to the leased local port.
func TestE2EPublicPorts(t *testing.T) {
	e := newEnv(t, withPublicPorts())
	ctx := testCtx(t)
	ports := e.engine.Ports()
	public := map[int]int{}
	for _, p := range ports {
		public[p.LocalPort] = p.PublicPort
	}
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	offer, err := v.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.do("POST", "/whep/studio", offer, "Content-Type", "application/sdp")
	if resp.StatusCode != 201 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("Location")[strings.LastIndex(resp.Header.Get("Location"), "/")+1:]
	s, err := e.store.GetSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	pp := public[s.Lease.LocalPort]
	if pp == 0 || pp == s.Lease.LocalPort {
		t.Fatalf("no distinct public port for %d: %v", s.Lease.LocalPort, public)
	}
	want := "127.0.0.1:" + strconv.Itoa(pp)
	cands := answerCandidates(body)
	if len(cands) == 0 {
		t.Fatalf("no candidates:\n%s", body)
	}
	for _, c := range cands {
		if c != want {
			t.Errorf("candidate %s, want %s", c, want)
		}
	}
	if s.Lease.PublicAddr != want {
		t.Errorf("lease public addr %s, want %s", s.Lease.PublicAddr, want)
	}
	resp, body = e.do("GET", "/api/v1/ports", "")
	var pl api.PortList
	if err := json.Unmarshal([]byte(body), &pl); err != nil {
		t.Fatal(err)
	}
	for _, p := range pl.Ports {
		if p.LocalPort == s.Lease.LocalPort && (p.PublicPort != pp || p.State != "leased" || len(p.Sessions) != 1 || p.Sessions[0].SessionID != id) {
			t.Errorf("port entry %+v", p)
		}
	}
	if resp, _ := e.do("DELETE", "/whep/studio/"+id, ""); resp.StatusCode != 200 {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
}

// TestE2EJSONSession: the JSON twin of WHEP, tokens, and trickle/restart
// PATCH on a live session.
func TestE2EJSONSession(t *testing.T) {
	e := newEnv(t, withConfig(func(c *handlers.Config) { c.AutoCreateRooms = false }))
	ctx := testCtx(t)
	resp, body := e.do("POST", "/api/v1/rooms", `{"name":"studio","view_token":"view-token-1"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("room: %d %s", resp.StatusCode, body)
	}
	v := mediatest.NewViewer(t, mediatest.ViewerOptions{})
	offer, err := v.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqBody, _ := json.Marshal(api.CreateSessionRequest{Role: "viewer", SDP: offer, UserID: "alice", Metadata: map[string]string{"seat": "1"}})
	resp, body = e.do("POST", "/api/v1/rooms/studio/sessions", string(reqBody), "Content-Type", "application/json")
	problem(t, resp, body, 401)
	resp, body = e.do("POST", "/api/v1/rooms/studio/sessions", string(reqBody), "Content-Type", "application/json", "Authorization", "Bearer view-token-1")
	if resp.StatusCode != 201 {
		t.Fatalf("session: %d %s", resp.StatusCode, body)
	}
	var cr api.CreateSessionResponse
	if err := json.Unmarshal([]byte(body), &cr); err != nil {
		t.Fatal(err)
	}
	if cr.Session.UserID != "alice" || cr.Session.Role != "viewer" || cr.PublicAddr == "" || cr.ResourceURL != resp.Header.Get("Location") || cr.ETag == "" {
		t.Fatalf("response: %s", body)
	}
	if err := v.SetAnswer(cr.SDP); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	resp, body = e.do("GET", "/api/v1/rooms/studio/participants", "")
	if !strings.Contains(body, `"user_id":"alice"`) {
		t.Errorf("participants: %s", body)
	}

	auth := []string{"Authorization", "Bearer view-token-1", "Content-Type", api.SDPFragContentType}
	// Trickle with the current tag: 204 (RFC 9725 §4.3.2).
	ld := v.PeerConnection().LocalDescription()
	ufrag, pwd := api.SDPAttr(ld.SDP, "a=ice-ufrag:"), api.SDPAttr(ld.SDP, "a=ice-pwd:")
	frag := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n"
	resp, body = e.do("PATCH", cr.ResourceURL, frag, append(auth, "If-Match", cr.ETag)...)
	if resp.StatusCode != 204 {
		t.Fatalf("trickle: %d %s", resp.StatusCode, body)
	}
	// Without the token: 401.
	resp, body = e.do("PATCH", cr.ResourceURL, frag, "Content-Type", api.SDPFragContentType, "If-Match", cr.ETag)
	problem(t, resp, body, 401)

	// ICE restart: If-Match "*" and new credentials give 200, the answer
	// fragment and a new ETag (RFC 9725 §4.3.3); the old tag is stale then.
	restart, err := v.PeerConnection().CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	nu, np := api.SDPAttr(restart.SDP, "a=ice-ufrag:"), api.SDPAttr(restart.SDP, "a=ice-pwd:")
	frag = "a=ice-ufrag:" + nu + "\r\na=ice-pwd:" + np + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
	resp, body = e.do("PATCH", cr.ResourceURL, frag, append(auth, "If-Match", "*")...)
	if resp.StatusCode != 200 {
		t.Fatalf("ICE restart: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") != api.SDPFragContentType || !strings.Contains(body, "a=ice-ufrag:") {
		t.Errorf("restart answer: %s %s", resp.Header.Get("Content-Type"), body)
	}
	newTag := resp.Header.Get("ETag")
	if newTag == "" || newTag == cr.ETag {
		t.Errorf("restart ETag %q (old %q)", newTag, cr.ETag)
	}
	resp, body = e.do("PATCH", cr.ResourceURL, frag, append(auth, "If-Match", cr.ETag)...)
	problem(t, resp, body, 412)

	resp, _ = e.do("DELETE", "/api/v1/sessions/"+cr.Session.ID, "")
	if resp.StatusCode != 204 {
		t.Errorf("DELETE session: %d", resp.StatusCode)
	}
	eventually(t, "port freed", func() bool { return e.free() == len(e.ports) })
}

// TestE2EPublisherSelect: ?publisher= on WHEP follows that publisher; the
// default is the newest.
func TestE2EPublisherSelect(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	pubs := map[string]string{} // codec -> participant id
	for _, codec := range []string{mediatest.CodecVP8, mediatest.CodecH264} {
		pub := mediatest.NewPublisher(t, mediatest.PublisherOptions{Video: codec})
		res, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whip/studio", pub, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub.Start()
		if err := pub.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		pubs[codec] = res.Header.Get(handlers.ParticipantIDHeader)
	}
	watch := func(query string) *mediatest.Viewer {
		v := mediatest.NewViewer(t, mediatest.ViewerOptions{Video: true})
		if _, err := mediatest.Negotiate(ctx, e.srv.Client(), e.srv.URL+"/whep/studio"+query, v, nil); err != nil {
			t.Fatalf("WHEP%s: %v", query, err)
		}
		if err := v.WaitVideoFrames(ctx, 10); err != nil {
			t.Fatalf("WHEP%s: %v (%+v)", query, err, v.Stats())
		}
		return v
	}
	if c := watch("?publisher=" + pubs[mediatest.CodecVP8]).Stats().Codec; !strings.EqualFold(c, "video/VP8") {
		t.Errorf("?publisher=<VP8 publisher> got %s", c)
	}
	if c := watch("").Stats().Codec; !strings.EqualFold(c, "video/H264") {
		t.Errorf("default (newest, H264) got %s", c)
	}
	resp, body := e.do("POST", "/whep/studio?publisher=nothex", minimalOffer, "Content-Type", "application/sdp")
	if p := problem(t, resp, body, 400); !fieldNamed(p, "publisher") {
		t.Errorf("bad ?publisher= not named: %s", body)
	}
}
