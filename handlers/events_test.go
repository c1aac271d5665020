package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
	"github.com/pinhole-rtc/pinhole/store"
)

// sse is one event read from a text/event-stream.
type sse struct{ name, data string }

// sseReader reads events from a streaming response on its own goroutine.
type sseReader struct {
	resp   *http.Response
	events chan sse
	raw    chan string // every line, comments included
}

func openSSE(t *testing.T, e *testEnv, path string) *sseReader {
	t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", api.EventStreamContentType)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != api.EventStreamContentType {
		t.Fatalf("GET %s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := &sseReader{resp: resp, events: make(chan sse, 1024), raw: make(chan string, 4096)}
	t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(r.events)
		sc := bufio.NewScanner(resp.Body)
		var cur sse
		for sc.Scan() {
			line := sc.Text()
			select {
			case r.raw <- line:
			default:
			}
			switch {
			case line == "":
				if cur.name != "" {
					select {
					case r.events <- cur:
					default: // a flood nobody reads is dropped, never blocks
					}
				}
				cur = sse{}
			case strings.HasPrefix(line, "event: "):
				cur.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if cur.data != "" {
					cur.data += "\n" // the draft wants one data line: the test below checks
				}
				cur.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return r
}

// next returns the next event whose name is one of names, skipping others.
func (r *sseReader) next(t *testing.T, names ...string) sse {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case ev, ok := <-r.events:
			if !ok {
				t.Fatalf("stream ended waiting for %v", names)
			}
			if strings.Contains(ev.data, "\n") {
				t.Errorf("event %s data spans lines: %q", ev.name, ev.data)
			}
			for _, n := range names {
				if ev.name == n {
					return ev
				}
			}
		case <-deadline:
			t.Fatalf("no %v within %v", names, waitFor)
		}
	}
}

// TestWHEPEventsE2E: the WHEP server-sent events extension end to end
// with real peers: a viewer waiting in a room learns that a publisher
// started (active) and stopped (inactive), and the viewer count; unknown
// event types are 400; a deleted stream or session is 404.
func TestWHEPEventsE2E(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	_, vres := e.watch(t, ctx, "ev")
	var eventsURL string
	ls, err := parseLinks(vres.Header.Values("Link"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.params["rel"] == api.WHEPEventsRel {
			eventsURL = l.target
		}
	}
	if eventsURL == "" {
		t.Fatalf("no events Link: %v", vres.Header.Values("Link"))
	}
	json := []string{"Content-Type", "application/json"}

	resp, body := e.do("POST", eventsURL, `["active","layers"]`, json...)
	if p := problem(t, resp, body, 400); !fieldNamed(p, "[1]") {
		t.Errorf("unknown event type not named by index: %s", body)
	}
	resp, body = e.do("POST", eventsURL, `["active"]`, "Content-Type", "text/plain")
	problem(t, resp, body, 415)
	resp, body = e.do("POST", eventsURL, `{"active":1}`, json...)
	problem(t, resp, body, 400)
	// Another session's events URL, or a made-up one, is not this one's.
	resp, body = e.do("POST", "/whep/ev/0123456789abcdef0123456789abcdef/events", `["active"]`, json...)
	problem(t, resp, body, 404)

	resp, body = e.do("POST", eventsURL, `["active","inactive","viewercount"]`, json...)
	if resp.StatusCode != 201 {
		t.Fatalf("POST events: %d %s", resp.StatusCode, body)
	}
	stream := resp.Header.Get("Location")
	if !strings.HasPrefix(stream, eventsURL+"/") || len(stream) != len(eventsURL)+33 {
		t.Fatalf("stream Location %q is not %s/{128-bit id}", stream, eventsURL)
	}
	r := openSSE(t, e, stream)
	// No publisher yet: the first event is the count, never an initial
	// inactive (webrtc-http-egress-events §4.2).
	first := r.next(t, "viewercount", "active", "inactive")
	if first.name != "viewercount" || first.data != `{"viewercount":1}` {
		t.Fatalf("first event %+v", first)
	}
	_, pres := e.publish(t, ctx, "ev")
	if ev := r.next(t, "active", "inactive"); ev.name != "active" || ev.data != "{}" {
		t.Fatalf("after publishing: %+v", ev)
	}
	_, v2 := e.watch(t, ctx, "ev")
	if ev := r.next(t, "viewercount"); ev.data != `{"viewercount":2}` {
		t.Errorf("second viewer: %+v", ev)
	}
	if _, err := v2.Delete(ctx, e.srv.Client()); err != nil {
		t.Fatal(err)
	}
	if ev := r.next(t, "viewercount"); ev.data != `{"viewercount":1}` {
		t.Errorf("second viewer gone: %+v", ev)
	}
	if _, err := pres.Delete(ctx, e.srv.Client()); err != nil {
		t.Fatal(err)
	}
	if ev := r.next(t, "active", "inactive"); ev.name != "inactive" {
		t.Fatalf("after the publisher left: %+v", ev)
	}

	// A second stream of only viewercount sees no active/inactive.
	resp, _ = e.do("POST", eventsURL, `["viewercount"]`, json...)
	only := resp.Header.Get("Location")
	r2 := openSSE(t, e, only)
	if ev := r2.next(t, "viewercount", "active", "inactive"); ev.name != "viewercount" {
		t.Errorf("filtered stream sent %+v", ev)
	}
	// DELETE the stream: its reader ends and it is 404 from then on.
	if resp, body := e.do("DELETE", only, ""); resp.StatusCode != 200 {
		t.Fatalf("DELETE stream: %d %s", resp.StatusCode, body)
	}
	for range r2.events {
	}
	resp, body = e.do("GET", only, "")
	problem(t, resp, body, 404)

	// Deleting the WHEP session destroys its streams (§4).
	if _, err := vres.Delete(ctx, e.srv.Client()); err != nil {
		t.Fatal(err)
	}
	for range r.events {
	}
	resp, body = e.do("GET", stream, "")
	problem(t, resp, body, 404)
	resp, body = e.do("POST", eventsURL, "", json...)
	problem(t, resp, body, 404)
	eventually(t, "no open event streams", func() bool { return e.Events.Open() == 0 })
}

// TestRoomEventsE2E: the room stream reports a real publisher joining,
// starting, stopping and leaving, with the participant as the list shows
// it and never a session id or URL.
func TestRoomEventsE2E(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	resp, body := e.do("GET", "/api/v1/rooms/nope/events", "")
	problem(t, resp, body, 404)
	if _, err := e.store.CreateRoom(context.Background(), store.Room{Name: "stage"}, 0); err != nil {
		t.Fatal(err)
	}
	r := openSSE(t, e, "/api/v1/rooms/stage/events")
	_, pres := e.publish(t, ctx, "stage")
	id := pres.URL[strings.LastIndex(pres.URL, "/")+1:]
	var seen []string
	check := func(want string) api.RoomEvent {
		t.Helper()
		ev := r.next(t, want)
		seen = append(seen, ev.data)
		var re api.RoomEvent
		if err := json.Unmarshal([]byte(ev.data), &re); err != nil {
			t.Fatalf("%s: %v", ev.data, err)
		}
		if re.Type != want || re.Room != "stage" || re.Participant.Role != "publisher" {
			t.Errorf("%s: %+v", want, re)
		}
		return re
	}
	check(api.RoomEventJoined)
	if re := check(api.RoomEventPublisherStarted); re.Participant.State != "connected" {
		t.Errorf("started while %s", re.Participant.State)
	}
	if _, err := pres.Delete(ctx, e.srv.Client()); err != nil {
		t.Fatal(err)
	}
	check(api.RoomEventPublisherStopped)
	if re := check(api.RoomEventLeft); re.Participant.State != "closed" {
		t.Errorf("left while %s", re.Participant.State)
	}
	for _, d := range seen {
		if strings.Contains(d, id) || strings.Contains(d, "/whip/") {
			t.Errorf("room event leaks the session: %s", d)
		}
	}
}

// TestEventStreamsLeakNothing: streams that end, however they end (reader
// gone, stream deleted, reader too slow), leave no goroutine behind, and a
// reader that does not read never stalls the recorder.
func TestEventStreamsLeakNothing(t *testing.T) {
	e := newEnv(t)
	e.Events.SetHeartbeat(100 * time.Millisecond)
	if _, err := e.store.CreateRoom(context.Background(), store.Room{Name: "leak"}, 0); err != nil {
		t.Fatal(err)
	}
	resp, body := e.do("POST", "/whep/leak", synthOffer("video recvonly 96 VP8/90000"), "Content-Type", api.SDPContentType)
	if resp.StatusCode != 201 {
		t.Fatalf("WHEP: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	base := leakcheck.Take(t)

	var readers []*sseReader
	for range 3 {
		readers = append(readers, openSSE(t, e, "/api/v1/rooms/leak/events"))
	}
	resp, _ = e.do("POST", loc+"/events", "")
	stream := resp.Header.Get("Location")
	readers = append(readers, openSSE(t, e, stream))
	for _, r := range readers[:3] {
		<-r.raw // the stream started
	}
	if ev := readers[3].next(t, "viewercount"); ev.data != `{"viewercount":1}` {
		t.Errorf("viewercount %+v", ev)
	}
	// Heartbeats are comment lines.
	for line := range readers[0].raw {
		if strings.HasPrefix(line, ":") {
			break
		}
	}
	readers[0].resp.Body.Close()
	e.do("DELETE", stream, "")

	// readers[1] stops reading: a flood of room events fills its socket,
	// then its buffer; it is dropped while Observe never blocks.
	slow := readers[1]
	done := make(chan struct{})
	go func() {
		defer close(done)
		pad := strings.Repeat("x", 900)
		for i := range 20000 {
			s := store.Session{ID: fmt.Sprintf("%032x", i), Room: "leak", Role: store.RoleViewer, State: store.StateNew,
				UserID: pad, CreatedAt: time.Now()}
			after := s
			after.Events = []store.Event{{Kind: "answer"}}
			e.Events.Observe(s, after)
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Observe blocked on a slow reader")
	}
	eventually(t, "the slow reader dropped", func() bool { return e.Events.Open() <= 1 })
	slow.resp.Body.Close()
	readers[2].resp.Body.Close()
	eventually(t, "every stream closed", func() bool { return e.Events.Open() == 0 })
	e.srv.Client().Transport.(*http.Transport).CloseIdleConnections()
	leakcheck.Settle(t, base, waitFor)
}
