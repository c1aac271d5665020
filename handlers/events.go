package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// Event streams. Two kinds, both plain HTTP server-sent events fed from
// the one record path (Events.Observe is a record.Observer, so an event
// is sent only once its record update is in the store):
//
//   - the WHEP server-sent events extension (webrtc-http-egress-events §4):
//     a viewer's session URL offers an event stream of active, inactive and
//     viewercount;
//   - the room stream, GET /api/v1/rooms/{room}/events: participants
//     joining, leaving and changing state, publishers starting and
//     stopping, as the public participant list shows them.
//
// Neither ever blocks the recorder: a room subscriber has a bounded buffer
// and is dropped when it is full (it reconnects and re-reads the list); a
// WHEP stream keeps a bounded queue that collapses into the current state
// when it overflows, since active/inactive/viewercount are states.

// Bounds of the event streams.
const (
	// maxEventStreams caps open event-stream responses (both kinds). Each
	// holds a connection and a goroutine; a media box with a few forwarded
	// ports serves a few dozen pages, so 256 leaves room while a flood
	// cannot pile up goroutines.
	maxEventStreams = 256
	// maxStreamsPerSession caps the WHEP event streams one session may
	// create: a player needs one, a reconnecting one two.
	maxStreamsPerSession = 4
	// roomBuffer is a room subscriber's buffer. A room filling at once
	// makes a few events per participant; a reader 64 events behind is
	// not reading and is dropped.
	roomBuffer = 64
	// whepQueue bounds a WHEP stream's pending events between long pulls.
	whepQueue = 32
	// defaultHeartbeat is the comment-line interval: under the 30-60 s idle
	// timeouts of common proxies (nginx proxy_read_timeout 60 s, FRP's
	// 30 s heartbeat) so they keep the stream open.
	defaultHeartbeat = 15 * time.Second
	// retryMillis is the reconnection delay the stream asks of EventSource.
	retryMillis = 2000
)

// Events is the broker of both event streams. Package server builds one,
// registers Observe with the recorder and hands it to the handlers.
type Events struct {
	log       *slog.Logger
	heartbeat atomic.Int64 // time.Duration
	open      atomic.Int64 // open stream responses

	mu      sync.Mutex
	closed  bool
	rooms   map[string]map[*roomSub]struct{}
	streams map[string]*whepStream // by stream id
	done    chan struct{}
}

// NewEvents returns an empty broker.
func NewEvents(log *slog.Logger) *Events {
	if log == nil {
		log = slog.Default()
	}
	ev := &Events{log: log, rooms: map[string]map[*roomSub]struct{}{},
		streams: map[string]*whepStream{}, done: make(chan struct{})}
	ev.heartbeat.Store(int64(defaultHeartbeat))
	return ev
}

// SetHeartbeat changes the heartbeat interval of streams opened from now
// on (tests use a short one).
func (ev *Events) SetHeartbeat(d time.Duration) { ev.heartbeat.Store(int64(d)) }

// Open is the number of open event-stream responses.
func (ev *Events) Open() int { return int(ev.open.Load()) }

// Close ends every stream. Idempotent.
func (ev *Events) Close() {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.closed {
		return
	}
	ev.closed = true
	close(ev.done)
	for _, st := range ev.streams {
		st.destroy()
	}
	clear(ev.streams)
}

// roomEvent is one room event with what the WHEP streams need and the
// public event must not show.
type roomEvent struct {
	pub       api.RoomEvent
	session   string
	role      store.Role
	publisher string // a viewer's followed publisher ("" the newest)
}

// Observe turns one record update into room events. It is a
// record.Observer: it runs on the recorder's goroutine and never blocks.
//
// A session is announced once its answer is recorded (the "answer"
// milestone): sessions the engine refused never reach the room.
func (ev *Events) Observe(before, after store.Session) {
	if !hasMilestone(after, "answer") {
		return
	}
	mk := func(typ string) roomEvent {
		at := after.UpdatedAt
		if at.IsZero() {
			at = time.Now()
		}
		return roomEvent{pub: api.RoomEvent{Type: typ, Room: after.Room, Participant: publicParticipant(after), At: at.UTC()},
			session: after.ID, role: after.Role, publisher: after.PublisherID}
	}
	var out []roomEvent
	joined := !hasMilestone(before, "answer")
	closed := after.State == store.StateClosed && before.State != store.StateClosed
	isPub := after.Role == store.RolePublisher
	switch {
	case joined:
		out = append(out, mk(api.RoomEventJoined))
		if isPub && everConnected(after) {
			out = append(out, mk(api.RoomEventPublisherStarted))
		}
	case closed:
		if isPub && everConnected(before) {
			out = append(out, mk(api.RoomEventPublisherStopped))
		}
		out = append(out, mk(api.RoomEventLeft))
	case before.State != after.State:
		out = append(out, mk(api.RoomEventState))
		// A publication starts when the publisher first connects (ICE and
		// DTLS up): media follows within a frame interval.
		if isPub && after.State == store.StateConnected && !everConnected(before) {
			out = append(out, mk(api.RoomEventPublisherStarted))
		}
	}
	if len(out) == 0 {
		return
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.closed {
		return
	}
	for _, e := range out {
		for sub := range ev.rooms[after.Room] {
			if !sub.offer(e) {
				ev.dropLocked(sub)
			}
		}
		for _, st := range ev.streams {
			if st.room == after.Room {
				st.apply(e)
			}
		}
	}
	// webrtc-http-egress-events §4: all the event streams of a WHEP
	// resource are destroyed when the resource is terminated.
	if closed && after.Role == store.RoleViewer {
		for id, st := range ev.streams {
			if st.session == after.ID {
				st.destroy()
				delete(ev.streams, id)
			}
		}
	}
}

// publicParticipant is a session as the public participant list shows it
// to anyone (toParticipant): public id, user id, role, state, since. The
// session id stays out: the session URL is a capability.
func publicParticipant(s store.Session) api.Participant { return toParticipant(s, false) }

func hasMilestone(s store.Session, kind string) bool {
	return slices.ContainsFunc(s.Events, func(e store.Event) bool { return e.Kind == kind })
}

func everConnected(s store.Session) bool {
	return slices.ContainsFunc(s.Transitions, func(t store.Transition) bool { return t.State == store.StateConnected })
}

// acquire takes one of the maxEventStreams slots; release gives it back.
func (ev *Events) acquire() (release func(), err error) {
	if ev.open.Add(1) > maxEventStreams {
		ev.open.Add(-1)
		return nil, api.Errorf(http.StatusServiceUnavailable, "%d event streams are open; retry later", maxEventStreams).
			WithHeader("Retry-After", "5")
	}
	var once sync.Once
	return func() { once.Do(func() { ev.open.Add(-1) }) }, nil
}

// ---- room streams

// roomSub is one reader of a room stream.
type roomSub struct {
	room    string
	ch      chan roomEvent
	dropped bool // under Events.mu; ch is closed when set
}

// offer queues e without blocking; false when the buffer is full.
func (s *roomSub) offer(e roomEvent) bool {
	select {
	case s.ch <- e:
		return true
	default:
		return false
	}
}

func (ev *Events) subscribe(room string) (*roomSub, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.closed {
		return nil, false
	}
	sub := &roomSub{room: room, ch: make(chan roomEvent, roomBuffer)}
	if ev.rooms[room] == nil {
		ev.rooms[room] = map[*roomSub]struct{}{}
	}
	ev.rooms[room][sub] = struct{}{}
	return sub, true
}

func (ev *Events) unsubscribe(sub *roomSub) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.dropLocked(sub)
}

func (ev *Events) dropLocked(sub *roomSub) {
	if sub.dropped {
		return
	}
	sub.dropped = true
	close(sub.ch)
	if subs := ev.rooms[sub.room]; subs != nil {
		delete(subs, sub)
		if len(subs) == 0 {
			delete(ev.rooms, sub.room)
		}
	}
}

// ---- WHEP event streams

// whepStream is one event stream of a WHEP session (webrtc-http-egress-
// events §4): the events it was asked for, the state they describe, and
// what is queued for the next long pull.
type whepStream struct {
	id, room, session string
	follow            string // the followed publisher; "" follows the room's newest
	want              []string

	mu         sync.Mutex
	publishers map[string]bool // started publishers of the followed publication
	viewers    map[string]bool // the room's joined viewers
	initing    bool
	tombs      map[string]bool // sessions seen leaving while initing
	active     bool            // last state queued
	count      int             // last viewer count queued; -1 none yet
	queue      []sseEvent
	wake       chan struct{} // cap 1: something was queued
	kick       chan struct{} // closed when another GET takes the stream over
	gone       chan struct{} // closed when the stream is destroyed
	goneOnce   sync.Once
}

type sseEvent struct {
	name string
	data any
}

func (st *whepStream) destroy() { st.goneOnce.Do(func() { close(st.gone) }) }

// apply folds one room event into the stream's state.
func (st *whepStream) apply(e roomEvent) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch e.pub.Type {
	case api.RoomEventPublisherStarted:
		if st.follow == "" || st.follow == e.session {
			if !st.tombs[e.session] {
				st.publishers[e.session] = true
			}
		}
	case api.RoomEventPublisherStopped:
		delete(st.publishers, e.session)
	case api.RoomEventJoined:
		if e.role == store.RoleViewer && !st.tombs[e.session] {
			st.viewers[e.session] = true
		}
	case api.RoomEventLeft:
		delete(st.viewers, e.session)
		delete(st.publishers, e.session)
		if st.initing {
			st.tombs[e.session] = true
		}
	}
	if !st.initing {
		st.syncLocked()
	}
}

// syncLocked queues the events that tell a reader of the state changes
// since the last ones queued. "inactive" is never the first event: the
// draft forbids an initial inactive (§4.2).
func (st *whepStream) syncLocked() {
	if act := len(st.publishers) > 0; act != st.active {
		st.active = act
		if act {
			st.enqueueLocked(api.WHEPEventActive, struct{}{})
		} else {
			st.enqueueLocked(api.WHEPEventInactive, struct{}{})
		}
	}
	if n := len(st.viewers); n != st.count {
		st.count = n
		st.enqueueLocked(api.WHEPEventViewerCount, api.ViewerCount{ViewerCount: n})
	}
}

func (st *whepStream) enqueueLocked(name string, data any) {
	if !slices.Contains(st.want, name) {
		return
	}
	if len(st.queue) >= whepQueue {
		// Nobody has pulled for a long while: what matters is the state
		// now, not every step to it.
		st.queue = st.queue[:0]
		if slices.Contains(st.want, api.WHEPEventActive) && st.active {
			st.queue = append(st.queue, sseEvent{api.WHEPEventActive, struct{}{}})
		}
		if slices.Contains(st.want, api.WHEPEventInactive) && !st.active {
			st.queue = append(st.queue, sseEvent{api.WHEPEventInactive, struct{}{}})
		}
		if slices.Contains(st.want, api.WHEPEventViewerCount) {
			st.queue = append(st.queue, sseEvent{api.WHEPEventViewerCount, api.ViewerCount{ViewerCount: st.count}})
		}
	} else {
		st.queue = append(st.queue, sseEvent{name, data})
	}
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// attach makes the caller the stream's one reader; an earlier reader is
// kicked (a reconnecting player's old request may linger).
func (st *whepStream) attach() (kick chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.kick != nil {
		close(st.kick)
	}
	st.kick = make(chan struct{})
	return st.kick
}

func (st *whepStream) detach(kick chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.kick == kick {
		close(st.kick)
		st.kick = nil
	}
}

func (st *whepStream) take() []sseEvent {
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queue
	st.queue = nil
	return q
}

// createStream registers a WHEP event stream for sess, then reads the
// room's current state from the store. Events arriving meanwhile are
// applied too; a session seen leaving is not brought back by the read.
func (ev *Events) createStream(ctx context.Context, st store.Store, sess store.Session, want []string) (*whepStream, error) {
	ws := &whepStream{id: record.NewID(), room: sess.Room, session: sess.ID, follow: sess.PublisherID, want: want,
		publishers: map[string]bool{}, viewers: map[string]bool{}, initing: true, tombs: map[string]bool{},
		count: -1, wake: make(chan struct{}, 1), gone: make(chan struct{})}
	ev.mu.Lock()
	if ev.closed {
		ev.mu.Unlock()
		return nil, api.Errorf(http.StatusServiceUnavailable, "server is shutting down").WithHeader("Retry-After", "5")
	}
	n := 0
	for _, o := range ev.streams {
		if o.session == sess.ID {
			n++
		}
	}
	if n >= maxStreamsPerSession {
		ev.mu.Unlock()
		return nil, api.Errorf(http.StatusConflict, "this session has %d event streams; DELETE one first", n)
	}
	ev.streams[ws.id] = ws
	ev.mu.Unlock()

	live, err := st.ListSessions(ctx, store.SessionFilter{Room: sess.Room})
	if err != nil {
		ev.removeStream(ws)
		return nil, err
	}
	self := false
	ws.mu.Lock()
	for _, s := range live {
		if s.ID == sess.ID {
			self = true
		}
		if s.State.Ended() || !hasMilestone(s, "answer") || ws.tombs[s.ID] {
			continue
		}
		switch {
		case s.Role == store.RoleViewer:
			ws.viewers[s.ID] = true
		case everConnected(s) && (ws.follow == "" || ws.follow == s.ID):
			ws.publishers[s.ID] = true
		}
	}
	ws.initing, ws.tombs = false, nil
	ws.syncLocked()
	ws.mu.Unlock()
	if !self {
		// The session ended while the stream was being made.
		ev.removeStream(ws)
		return nil, api.Errorf(http.StatusNotFound, "session not found")
	}
	return ws, nil
}

func (ev *Events) stream(id string) *whepStream {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.streams[id]
}

func (ev *Events) removeStream(ws *whepStream) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ws.destroy()
	delete(ev.streams, ws.id)
}

// ---- the wire

// sseWriter writes one text/event-stream response.
type sseWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

// startSSE writes the stream's headers and its first lines. From here on
// the handler answers nothing else: errors end the stream.
func startSSE(w http.ResponseWriter, heartbeat time.Duration) (*sseWriter, error) {
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), idle: 2 * heartbeat}
	h := w.Header()
	h.Set("Content-Type", api.EventStreamContentType)
	h.Set("Cache-Control", "no-store")
	// nginx buffers proxied answers unless told not to.
	h.Set("X-Accel-Buffering", "no")
	if err := edge.KeepStreaming(w, sw.idle); err != nil {
		return nil, err
	}
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", retryMillis); err != nil {
		return nil, err
	}
	return sw, sw.rc.Flush()
}

// event writes one event, its data one line of JSON (webrtc-http-egress-
// events §4: "MUST encode the event data in a single data line").
func (sw *sseWriter) event(name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if err := edge.KeepStreaming(sw.w, sw.idle); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(sw.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return err
	}
	return nil
}

func (sw *sseWriter) flush() error { return sw.rc.Flush() }

// ping writes a comment line, which readers ignore and proxies see as
// traffic.
func (sw *sseWriter) ping() error {
	if err := edge.KeepStreaming(sw.w, sw.idle); err != nil {
		return err
	}
	if _, err := sw.w.Write([]byte(": ping\n\n")); err != nil {
		return err
	}
	return sw.rc.Flush()
}

// ---- handlers

// whepEventsURL is the events entry point of a WHEP session URL.
func whepEventsURL(room, id string) string {
	return resourceURL(room, store.RoleViewer, id) + "/events"
}

// whepEventsLink is the Link of the extension in a WHEP 201
// (webrtc-http-egress-events §4: rel and the events attribute).
func whepEventsLink(room, id string) string {
	return fmt.Sprintf(`<%s>; rel="%s"; events="%s"`, whepEventsURL(room, id), api.WHEPEventsRel, strings.Join(api.WHEPEvents, ","))
}

// handleWHEPEventsCreate creates an event stream of a WHEP session.
//
//	@Summary		Create a WHEP event stream
//	@Description	webrtc-http-egress-events §4: POST a JSON array of the event types wanted (active, inactive, viewercount; an empty body is all three) to the URL of the Link rel="urn:ietf:params:whep:ext:core:server-sent-events" of the WHEP 201. The answer's Location is the event stream: GET it as text/event-stream, DELETE it when done. Only the holder of the session URL can create one (room view tokens apply); the stream URL is itself unguessable.
//	@Tags			WHEP
//	@Accept			json
//	@Param			room			path	string		true	"Room name"
//	@Param			id				path	string		true	"Session id"
//	@Param			Authorization	header	string		false	"Bearer <view token>"
//	@Param			events			body	[]string	false	"Event types"
//	@Success		201
//	@Header			201	{string}	Location	"Event stream URL"
//	@Failure		400	{object}	api.Problem	"Unknown event type (the field is its index)"
//	@Failure		401	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Failure		409	{object}	api.Problem	"4 streams exist for the session"
//	@Failure		415	{object}	api.Problem
//	@Router			/whep/{room}/{id}/events [post]
func (s *Server) handleWHEPEventsCreate(w http.ResponseWriter, r *http.Request) error {
	if s.events == nil {
		return api.Errorf(http.StatusNotFound, "event streams are not served")
	}
	sess, err := s.resource(r, store.RoleViewer)
	if err != nil {
		return err
	}
	want, err := api.ReadEventList(w, r, api.WHEPEvents)
	if err != nil {
		return err
	}
	ws, err := s.events.createStream(r.Context(), s.store, sess, want)
	if err != nil {
		return err
	}
	w.Header().Set("Location", whepEventsURL(sess.Room, sess.ID)+"/"+ws.id)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// whepStreamOf finds the stream of the request's URL: stream id, session
// id and room must all match, else 404.
func (s *Server) whepStreamOf(r *http.Request) (*whepStream, error) {
	if s.events != nil {
		if ws := s.events.stream(chi.URLParam(r, "stream")); ws != nil &&
			ws.session == chi.URLParam(r, "id") && ws.room == chi.URLParam(r, "room") {
			return ws, nil
		}
	}
	return nil, api.Errorf(http.StatusNotFound, "event stream not found")
}

// handleWHEPEventStream streams a WHEP session's events.
//
//	@Summary		Read a WHEP event stream
//	@Description	text/event-stream of the event types asked for: active ({}) when the followed publisher starts, inactive ({}) when it stops, viewercount ({"viewercount":n}) on change; comment lines as heartbeats. The URL is the capability (EventSource cannot send Authorization). 404 once the stream or its session is gone.
//	@Tags			WHEP
//	@Produce		text/event-stream
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Param			stream	path	string	true	"Stream id"
//	@Success		200		{string}	string	"event stream"
//	@Failure		404		{object}	api.Problem
//	@Failure		503		{object}	api.Problem	"Too many open event streams (Retry-After)"
//	@Router			/whep/{room}/{id}/events/{stream} [get]
func (s *Server) handleWHEPEventStream(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.whepStreamOf(r)
	if err != nil {
		return err
	}
	release, err := s.events.acquire()
	if err != nil {
		return err
	}
	defer release()
	kick := ws.attach()
	defer ws.detach(kick)
	sw, err := startSSE(w, time.Duration(s.events.heartbeat.Load()))
	if err != nil {
		return nil
	}
	tick := time.NewTicker(time.Duration(s.events.heartbeat.Load()))
	defer tick.Stop()
	for {
		if evs := ws.take(); len(evs) > 0 {
			for _, e := range evs {
				if sw.event(e.name, e.data) != nil {
					return nil
				}
			}
			if sw.flush() != nil {
				return nil
			}
		}
		select {
		case <-ws.wake:
		case <-tick.C:
			if sw.ping() != nil {
				return nil
			}
		case <-kick:
			return nil
		case <-ws.gone:
			return nil
		case <-s.events.done:
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// handleWHEPEventStreamDelete destroys a WHEP event stream.
//
//	@Summary		Delete a WHEP event stream
//	@Description	webrtc-http-egress-events §4: pending events are dropped and further requests for the stream get 404.
//	@Tags			WHEP
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Param			stream	path	string	true	"Stream id"
//	@Success		200
//	@Failure		404	{object}	api.Problem
//	@Router			/whep/{room}/{id}/events/{stream} [delete]
func (s *Server) handleWHEPEventStreamDelete(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.whepStreamOf(r)
	if err != nil {
		return err
	}
	s.events.removeStream(ws)
	w.WriteHeader(http.StatusOK)
	return nil
}

// handleRoomEvents streams a room's participant events.
//
//	@Summary		Room event stream
//	@Description	text/event-stream of participant.joined, participant.left, participant.state, publisher.started and publisher.stopped; each data is an api.RoomEvent (the participant as the participant list shows it, never a session id). Read the participant list when the stream opens, then follow it. Comment lines are heartbeats; a reader that falls 64 events behind is dropped and reconnects.
//	@Tags			rooms
//	@Produce		text/event-stream
//	@Param			room	path		string	true	"Room name"
//	@Success		200		{object}	api.RoomEvent	"event stream of RoomEvent"
//	@Failure		404		{object}	api.Problem
//	@Failure		503		{object}	api.Problem	"Too many open event streams (Retry-After)"
//	@Router			/api/v1/rooms/{room}/events [get]
func (s *Server) handleRoomEvents(w http.ResponseWriter, r *http.Request) error {
	if s.events == nil {
		return api.Errorf(http.StatusNotFound, "event streams are not served")
	}
	room, err := s.getRoom(r)
	if err != nil {
		return err
	}
	release, err := s.events.acquire()
	if err != nil {
		return err
	}
	defer release()
	sub, ok := s.events.subscribe(room.Name)
	if !ok {
		return api.Errorf(http.StatusServiceUnavailable, "server is shutting down").WithHeader("Retry-After", "5")
	}
	defer s.events.unsubscribe(sub)
	sw, err := startSSE(w, time.Duration(s.events.heartbeat.Load()))
	if err != nil {
		return nil
	}
	tick := time.NewTicker(time.Duration(s.events.heartbeat.Load()))
	defer tick.Stop()
	for {
		select {
		case e, ok := <-sub.ch:
			if !ok {
				return nil // dropped: too far behind
			}
			if sw.event(e.pub.Type, e.pub) != nil {
				return nil
			}
			// Drain what else is queued before one flush.
			for more := true; more; {
				select {
				case e, ok := <-sub.ch:
					if !ok {
						return nil
					}
					if sw.event(e.pub.Type, e.pub) != nil {
						return nil
					}
				default:
					more = false
				}
			}
			if sw.flush() != nil {
				return nil
			}
		case <-tick.C:
			if sw.ping() != nil {
				return nil
			}
		case <-s.events.done:
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}
