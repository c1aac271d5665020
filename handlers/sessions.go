package handlers

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
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
		room, _, err = s.store.EnsureRoom(ctx, store.Room{Name: name, CreatedAt: time.Now().UTC(), AutoCreated: true}, s.lim.MaxRooms)
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
