package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// openRequest is what WHIP, WHEP and the JSON API share to start a session.
type openRequest struct {
	Room        string
	Role        store.Role
	Offer       string
	UserID      string
	Metadata    map[string]string
	PublisherID string
}

// resourceURL is the WHIP/WHEP session URL of a session (RFC 9725 §4.2:
// the Location of the 201 answer).
func resourceURL(room string, role store.Role, id string) string {
	if role == store.RolePublisher {
		return "/whip/" + room + "/" + id
	}
	return "/whep/" + room + "/" + id
}

// roomForSession returns the room a new session joins. A missing room is
// created when AutoCreateRooms is on (a room made that way has no tokens),
// else it is a 404. The bearer token of the role is checked here.
func (s *Server) roomForSession(ctx context.Context, r *http.Request, name string, role store.Role) (store.Room, error) {
	if !api.ValidRoomName(name) {
		return store.Room{}, api.Invalid(api.FieldError{Field: "room", Message: "must be 1 to 64 letters, digits, '.', '_' or '-'"})
	}
	room, err := s.store.GetRoom(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound) && s.cfg.AutoCreateRooms:
		room, _, err = s.store.EnsureRoom(ctx, store.Room{Name: name, CreatedAt: time.Now().UTC(), AutoCreated: true})
		if err != nil {
			return store.Room{}, err
		}
	case errors.Is(err, store.ErrNotFound):
		return store.Room{}, api.Errorf(http.StatusNotFound, "room %q does not exist", name)
	case err != nil:
		return store.Room{}, err
	}
	return room, authorize(r, room, role)
}

// authorize checks the room's token for role. RFC 9725 §4.7:
// a protected endpoint takes "Authorization: Bearer <token>" and answers 401
// otherwise; the WHEP draft §4.7 does the same for viewers. The comparison
// is constant-time so the token cannot be guessed byte by byte.
func authorize(r *http.Request, room store.Room, role store.Role) error {
	want := room.PublishToken
	if role == store.RoleViewer {
		want = room.ViewToken
	}
	if want == "" {
		return nil
	}
	present, ok := bearerMatches(r, want) // constant-time, length included (auth.go)
	if !present {
		return api.Errorf(http.StatusUnauthorized, "room %q requires Authorization: Bearer <token>", room.Name).
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole"`)
	}
	if !ok {
		// RFC 6750 §3.1: a token that is wrong is invalid_token.
		return api.Errorf(http.StatusUnauthorized, "bearer token is not valid for room %q", room.Name).
			WithHeader("WWW-Authenticate", `Bearer realm="pinhole", error="invalid_token"`)
	}
	return nil
}

// open asks the engine for a peer connection and records the session. The
// store record is written only once the engine has answered; if that write
// fails the engine session is closed again so no lease leaks.
func (s *Server) open(ctx context.Context, req openRequest) (store.Session, *media.Answer, error) {
	id := newID()
	// The record starts when the offer came in: the engine's first events
	// (connecting...) are stamped before it returns.
	now := time.Now().UTC()
	mreq := media.SessionRequest{ID: id, Room: req.Room, Offer: req.Offer, PublisherID: req.PublisherID}
	var (
		ans *media.Answer
		err error
	)
	if req.Role == store.RolePublisher {
		ans, err = s.engine.Publish(ctx, mreq)
	} else {
		ans, err = s.engine.Watch(ctx, mreq)
	}
	if err != nil {
		s.rec.forget(id)
		return store.Session{}, nil, err
	}
	sess := store.Session{
		ID:          id,
		Room:        req.Room,
		Role:        req.Role,
		UserID:      req.UserID,
		Metadata:    req.Metadata,
		State:       store.StateNew,
		Transitions: []store.Transition{{State: store.StateNew, At: now}},
		CreatedAt:   now,
		UpdatedAt:   now,
		Lease:       store.Lease{LocalPort: ans.LocalPort, PublicAddr: ans.PublicAddr},
		Codecs:      ans.Codecs,
		PublisherID: req.PublisherID,
		ETag:        newETag(),
		Node:        s.cfg.Node,
	}
	// The request may be cancelled now; the session exists in the engine
	// and must be recorded (or undone) regardless.
	wctx := context.WithoutCancel(ctx)
	if err := s.store.CreateSession(wctx, sess); err != nil {
		_ = s.engine.CloseSession(id, "recording the session failed")
		s.rec.forget(id)
		return store.Session{}, nil, api.Internal(err)
	}
	s.rec.register(id)
	if u := iceUfrag(req.Offer); u != "" {
		s.ufrags.Store(id, u)
	}
	return sess, ans, nil
}

// closeSession ends a live session and marks its record closed at once, so
// a GET right after a DELETE shows it closed. The engine's own closed
// event arrives later and changes nothing.
func (s *Server) closeSession(ctx context.Context, id, reason string) error {
	if err := s.engine.CloseSession(id, reason); err != nil && !errors.Is(err, media.ErrSessionNotFound) {
		return err
	}
	s.ufrags.Delete(id)
	_, err := s.store.UpdateSession(context.WithoutCancel(ctx), id, func(sess *store.Session) error {
		if sess.CloseReason == "" {
			sess.CloseReason = reason
		}
		now := time.Now().UTC()
		if sess.SetState(store.StateClosed, now) {
			addTimeline(sess, store.Event{At: now, Kind: "closed", Detail: reason})
		}
		return nil
	})
	return err
}

// liveSession returns the record of a session that is not closed, or a 404.
func (s *Server) liveSession(ctx context.Context, id string) (store.Session, error) {
	if !validSessionID(id) {
		return store.Session{}, api.Errorf(http.StatusNotFound, "session not found")
	}
	sess, err := s.store.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sess.State.Ended()) {
		return store.Session{}, api.Errorf(http.StatusNotFound, "session not found")
	}
	return sess, err
}

// iceUfrag returns the first a=ice-ufrag value of an SDP or fragment.
func iceUfrag(sdp string) string {
	return attrValue(sdp, "a=ice-ufrag:")
}

func attrValue(sdp, prefix string) string {
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// toAPISession is the API view of a session record.
func toAPISession(s store.Session) api.Session {
	out := api.Session{
		ID:           s.ID,
		Room:         s.Room,
		Role:         string(s.Role),
		UserID:       s.UserID,
		Metadata:     s.Metadata,
		State:        string(s.State),
		Transitions:  make([]api.Transition, 0, len(s.Transitions)),
		CreatedAt:    s.CreatedAt,
		Lease:        api.Lease{LocalPort: s.Lease.LocalPort, PublicAddr: s.Lease.PublicAddr},
		RemoteAddrs:  s.RemoteAddrs,
		SelectedPair: s.SelectedPair,
		Counters:     api.Counters(s.Counters),
		Codecs:       s.Codecs,
		PublisherID:  s.PublisherID,
		CloseReason:  s.CloseReason,
		ResourceURL:  resourceURL(s.Room, s.Role, s.ID),
	}
	for _, t := range s.Transitions {
		out.Transitions = append(out.Transitions, api.Transition{State: string(t.State), At: t.At})
	}
	return out
}
