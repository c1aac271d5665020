package handlers

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// resourceURL is the WHIP/WHEP session URL of a session (RFC 9725 §4.2:
// the Location of the 201 answer).
func resourceURL(room string, role store.Role, id string) string {
	if role == store.RolePublisher {
		return "/whip/" + room + "/" + id
	}
	return "/whep/" + room + "/" + id
}

// roomFor finds the room a new session asks for and checks the role's
// token when the room exists. A missing room is not created here: openIn
// creates it only once the session is open (token, offer and lease all
// good), so junk requests never leave rooms behind. Without
// AutoCreateRooms a missing room is a 404.
func (s *Server) roomFor(ctx context.Context, r *http.Request, name string, role store.Role) (room store.Room, exists bool, err error) {
	if !api.ValidRoomName(name) {
		return store.Room{}, false, api.Invalid(api.FieldError{Field: "room", Message: "must be 1 to 64 letters, digits, '.', '_' or '-'"})
	}
	room, err = s.store.GetRoom(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound) && s.cfg.AutoCreateRooms:
		// The cheap refusal first; EnsureRoom in openIn is the atomic one.
		if s.lim.MaxRooms > 0 {
			rooms, err := s.store.ListRooms(ctx)
			if err != nil {
				return store.Room{}, false, err
			}
			if len(rooms) >= s.lim.MaxRooms {
				return store.Room{}, false, &store.LimitError{Limit: store.LimitRooms, Max: s.lim.MaxRooms, Count: len(rooms)}
			}
		}
		return store.Room{Name: name}, false, nil
	case errors.Is(err, store.ErrNotFound):
		return store.Room{}, false, api.Errorf(http.StatusNotFound, "room %q does not exist", name)
	case err != nil:
		return store.Room{}, false, err
	}
	return room, true, authorize(r, room, role)
}

// openIn opens a session in room (as roomFor found it): the publisher to
// follow is named by its public id; a missing room is created after the
// session is open, and if that fails (--max-rooms), or the room was made
// meanwhile with a token this request lacks, the session is undone.
func (s *Server) openIn(r *http.Request, room store.Room, exists bool, req record.OpenRequest) (store.Session, *media.Answer, error) {
	ctx := r.Context()
	if req.PublisherID != "" {
		id, err := s.publisherByPublicID(ctx, room.Name, req.PublisherID)
		if err != nil {
			return store.Session{}, nil, err
		}
		req.PublisherID = id
	}
	req.Room = room.Name
	req.TrustLocalCandidates = edge.ClientIsLoopback(r)
	sess, ans, err := s.sessions.Open(ctx, req)
	if err != nil || exists {
		return sess, ans, err
	}
	got, _, err := s.store.EnsureRoom(ctx, store.Room{Name: room.Name, CreatedAt: time.Now().UTC(), AutoCreated: true}, s.lim.MaxRooms)
	if err == nil {
		err = authorize(r, got, req.Role)
	}
	if err != nil {
		wctx := context.WithoutCancel(ctx)
		_ = s.sessions.Close(wctx, sess.ID, "refused: the room could not be joined")
		_ = s.store.DeleteSession(wctx, sess.ID)
		return store.Session{}, nil, err
	}
	return sess, ans, nil
}

// publisherByPublicID finds the live publisher of room whose public id is
// pub and returns its session id, which the engine follows.
func (s *Server) publisherByPublicID(ctx context.Context, room, pub string) (string, error) {
	live, err := s.store.ListSessions(ctx, store.SessionFilter{Room: room, Role: store.RolePublisher})
	if err != nil {
		return "", err
	}
	for _, p := range live {
		if p.PublicID == pub {
			return p.ID, nil
		}
	}
	return "", api.Errorf(http.StatusNotFound, "room %q has no live publisher %q (publisher takes a participant id from the room's participant list)", room, pub)
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

// closeSession ends a live session; its record shows it closed at once.
func (s *Server) closeSession(ctx context.Context, id, reason string) error {
	return s.sessions.Close(ctx, id, reason)
}

// liveSession returns the record of a session that is not closed, or a 404.
func (s *Server) liveSession(ctx context.Context, id string) (store.Session, error) {
	if !record.ValidID(id) {
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
	return api.SDPAttr(sdp, "a=ice-ufrag:")
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
