package handlers

import (
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

func timeNow() time.Time { return time.Now().UTC() }

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) error { return api.WriteJSON(w, status, v) }

// toAPIRoom is the API view of a room with its live session counts.
func toAPIRoom(r store.Room, live []store.Session) api.Room {
	out := api.Room{
		Name:             r.Name,
		CreatedAt:        r.CreatedAt,
		Metadata:         r.Metadata,
		PublishProtected: r.PublishToken != "",
		ViewProtected:    r.ViewToken != "",
	}
	for _, s := range live {
		if s.Room != r.Name {
			continue
		}
		if s.Role == store.RolePublisher {
			out.Publishers++
		} else {
			out.Viewers++
		}
	}
	return out
}

// getRoom returns a room or a 404 naming it.
func (s *Server) getRoom(r *http.Request) (store.Room, error) {
	name := chi.URLParam(r, "room")
	if !api.ValidRoomName(name) {
		return store.Room{}, api.Errorf(http.StatusNotFound, "room %q does not exist", name)
	}
	room, err := s.store.GetRoom(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, api.Errorf(http.StatusNotFound, "room %q does not exist", name)
	}
	return room, err
}

// roomWithLive returns the room of the request's path and its live
// sessions.
func (s *Server) roomWithLive(r *http.Request) (store.Room, []store.Session, error) {
	room, err := s.getRoom(r)
	if err != nil {
		return store.Room{}, nil, err
	}
	live, err := s.store.ListSessions(r.Context(), store.SessionFilter{Room: room.Name})
	return room, live, err
}

// handleRoomCreate creates a room.
//
//	@Summary		Create a room
//	@Description	Tokens, when set, are required as Authorization: Bearer by WHIP (publish_token) and WHEP (view_token). They are never shown again. A room WHIP/WHEP created on the fly is claimed (its sessions stay); a room an admin created is 409.
//	@Tags			rooms
//	@Accept			json
//	@Produce		json
//	@Param			room	body		api.CreateRoomRequest	true	"Room"
//	@Success		201		{object}	api.Room
//	@Header			201		{string}	Location	"/api/v1/rooms/{room}"
//	@Failure		400		{object}	api.Problem	"Validation error naming the field"
//	@Failure		409		{object}	api.Problem	"Name taken, or --max-rooms reached"
//	@Failure		415		{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Failure	413	{object}	api.Problem	"Body over --max-json-bytes"
//	@Router			/api/v1/rooms [post]
func (s *Server) handleRoomCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateRoomRequest
	if err := api.DecodeJSON(w, r, s.validate, &req); err != nil {
		return err
	}
	room, err := s.store.CreateRoom(r.Context(), store.Room{
		Name:         req.Name,
		CreatedAt:    timeNow(),
		Metadata:     req.Metadata,
		PublishToken: req.PublishToken,
		ViewToken:    req.ViewToken,
	}, s.lim.MaxRooms)
	if errors.Is(err, store.ErrExists) {
		// A room made on the fly by a WHIP/WHEP request is the admin's to
		// claim: anyone could have squatted the name first. A room an
		// admin made is never replaced.
		room, err = s.store.UpdateRoom(r.Context(), req.Name, func(rm *store.Room) error {
			if !rm.AutoCreated {
				return store.ErrExists
			}
			rm.AutoCreated, rm.Metadata, rm.PublishToken, rm.ViewToken = false, req.Metadata, req.PublishToken, req.ViewToken
			return nil
		})
	}
	if errors.Is(err, store.ErrExists) {
		return api.Errorf(http.StatusConflict, "room %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/rooms/"+room.Name)
	return writeJSON(w, http.StatusCreated, toAPIRoom(room, nil))
}

// handleRoomList lists rooms.
//
//	@Summary	List rooms
//	@Tags		rooms
//	@Produce	json
//	@Success	200	{object}	api.RoomList
//	@Router		/api/v1/rooms [get]
func (s *Server) handleRoomList(w http.ResponseWriter, r *http.Request) error {
	rooms, err := s.store.ListRooms(r.Context())
	if err != nil {
		return err
	}
	live, err := s.store.ListSessions(r.Context(), store.SessionFilter{})
	if err != nil {
		return err
	}
	out := api.RoomList{Rooms: make([]api.Room, 0, len(rooms))}
	for _, room := range rooms {
		out.Rooms = append(out.Rooms, toAPIRoom(room, live))
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleRoomGet shows one room.
//
//	@Summary	Get a room
//	@Tags		rooms
//	@Produce	json
//	@Param		room	path		string	true	"Room name"
//	@Success	200		{object}	api.Room
//	@Failure	404		{object}	api.Problem
//	@Router		/api/v1/rooms/{room} [get]
func (s *Server) handleRoomGet(w http.ResponseWriter, r *http.Request) error {
	room, live, err := s.roomWithLive(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPIRoom(room, live))
}

// handleRoomDelete deletes a room and ends its sessions.
//
//	@Summary		Delete a room
//	@Description	Ends every session of the room and frees their UDP ports.
//	@Tags			rooms
//	@Param			room	path	string	true	"Room name"
//	@Success		204
//	@Failure		404	{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Router			/api/v1/rooms/{room} [delete]
func (s *Server) handleRoomDelete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	room, err := s.getRoom(r)
	if err != nil {
		return err
	}
	const reason = "room deleted"
	// The live records are read before the engine closes them, so each is
	// closed with this reason even if the engine's own events (the peer
	// connection's "closed" state) are recorded first.
	live, err := s.store.ListSessions(ctx, store.SessionFilter{Room: room.Name})
	if err != nil {
		return err
	}
	s.engine.CloseRoom(room.Name, reason)
	for _, sess := range live {
		if err := s.closeSession(ctx, sess.ID, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if err := s.store.DeleteRoom(ctx, room.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleParticipantList lists who is in a room.
//
//	@Summary		List participants
//	@Description	The live (not closed) sessions of the room, by user id, with roles and states.
//	@Tags			rooms
//	@Produce		json
//	@Param			room	path		string	true	"Room name"
//	@Success		200		{object}	api.ParticipantList
//	@Failure		404		{object}	api.Problem
//	@Router			/api/v1/rooms/{room}/participants [get]
func (s *Server) handleParticipantList(w http.ResponseWriter, r *http.Request) error {
	room, live, err := s.roomWithLive(r)
	if err != nil {
		return err
	}
	admin := s.isAdmin(r)
	out := api.ParticipantList{Room: room.Name, Participants: make([]api.Participant, 0, len(live))}
	for _, sess := range live {
		out.Participants = append(out.Participants, toParticipant(sess, admin))
	}
	return writeJSON(w, http.StatusOK, out)
}

// toParticipant is what a room's participant list shows of a session:
// its public id, never the session id (the secret in its URL), except to
// the admin, who also sees the metadata.
func toParticipant(sess store.Session, admin bool) api.Participant {
	p := api.Participant{
		ID:     sess.PublicID,
		UserID: sess.UserID,
		Role:   string(sess.Role),
		State:  string(sess.State),
		Since:  sess.CreatedAt,
	}
	if admin {
		p.SessionID, p.Metadata = sess.ID, sess.Metadata
	}
	return p
}

// handleSessionCreate is the JSON twin of WHIP and WHEP.
//
//	@Summary		Create a session (JSON WHIP/WHEP)
//	@Description	role publisher is WHIP, role viewer is WHEP. The answer SDP holds every candidate; resource_url takes PATCH (trickle, ICE restart) and DELETE. A token-protected room needs Authorization: Bearer.
//	@Tags			sessions
//	@Accept			json
//	@Produce		json
//	@Param			room			path		string					true	"Room name"
//	@Param			Authorization	header		string					false	"Bearer <token>"
//	@Param			session			body		api.CreateSessionRequest	true	"Offer"
//	@Success		201				{object}	api.CreateSessionResponse
//	@Header			201				{string}	Location	"Session URL"
//	@Header			201				{string}	ETag		"Strong entity tag"
//	@Failure		400				{object}	api.Problem
//	@Failure		401				{object}	api.Problem
//	@Failure		404				{object}	api.Problem
//	@Failure		422				{object}	api.Problem
//	@Failure		503				{object}	api.Problem
//	@Failure	409	{object}	api.Problem	"--max-rooms or --max-sessions-per-room reached (problem member limit names it)"
//	@Failure	413	{object}	api.Problem	"Body over --max-sdp-bytes / --max-json-bytes"
//	@Failure	429	{object}	api.Problem	"--session-rate exceeded for this address; Retry-After"
//	@Router			/api/v1/rooms/{room}/sessions [post]
func (s *Server) handleSessionCreate(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.CreateSessionRequest
	if err := api.DecodeJSON(w, r, s.validate, &req); err != nil {
		return err
	}
	role := store.Role(req.Role)
	if req.PublisherID != "" && (role != store.RoleViewer || !record.ValidPublicID(req.PublisherID)) {
		return api.Invalid(api.FieldError{Field: "publisher_id", Message: "must be a publisher's participant id (16 hex digits), and only for role viewer"})
	}
	if len(req.SDP) < 3 || req.SDP[:3] != "v=0" {
		return api.Invalid(api.FieldError{Field: "sdp", Message: `must be an SDP offer starting with "v=0"`})
	}
	room, exists, err := s.roomFor(ctx, r, chi.URLParam(r, "room"), role)
	if err != nil {
		return err
	}
	sess, ans, err := s.openIn(r, room, exists, record.OpenRequest{
		Role: role, Offer: req.SDP, UserID: req.UserID, Metadata: req.Metadata, PublisherID: req.PublisherID,
		// Where the client reached signaling: the diagnosis compares it with
		// the address the answer advertises.
		Timeline: []store.Event{{Kind: "request", Detail: "Host: " + r.Host}},
	})
	if err != nil {
		return err
	}
	url := resourceURL(room.Name, role, sess.ID)
	etag := record.ETag(ans.ICEUfrag)
	w.Header().Set("Location", url)
	w.Header().Set(ParticipantIDHeader, sess.PublicID)
	w.Header().Set("ETag", etag)
	s.addICELinks(w.Header(), sess.PublicID)
	return writeJSON(w, http.StatusCreated, api.CreateSessionResponse{
		Session:     toAPISession(sess),
		SDP:         ans.SDP,
		PublicAddr:  ans.PublicAddr,
		ResourceURL: url,
		ETag:        etag,
	})
}

// handleSessionList lists sessions.
//
//	@Summary		List sessions
//	@Description	Live sessions by default; state=closed lists ended ones still retained.
//	@Tags			sessions
//	@Produce		json
//	@Param			room	query		string	false	"Room name"
//	@Param			state	query		string	false	"State"	Enums(new,connecting,connected,disconnected,failed,closed)
//	@Param			role	query		string	false	"Role"	Enums(publisher,viewer)
//	@Success		200		{object}	api.SessionList
//	@Failure		400		{object}	api.Problem
//	@Security		AdminToken
//	@Failure		401		{object}	api.Problem	"Admin token missing or wrong: session ids and URLs are capabilities"
//	@Router			/api/v1/sessions [get]
func (s *Server) handleSessionList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.SessionFilter{Room: q.Get("room"), State: store.State(q.Get("state")), Role: store.Role(q.Get("role"))}
	var bad []api.FieldError
	if f.Room != "" && !api.ValidRoomName(f.Room) {
		bad = append(bad, api.FieldError{Field: "room", Message: "must be 1 to 64 letters, digits, '.', '_' or '-'"})
	}
	switch f.State {
	case "", store.StateNew, store.StateConnecting, store.StateConnected, store.StateDisconnected, store.StateFailed, store.StateClosed:
	default:
		bad = append(bad, api.FieldError{Field: "state", Message: "must be one of: new, connecting, connected, disconnected, failed, closed"})
	}
	switch f.Role {
	case "", store.RolePublisher, store.RoleViewer:
	default:
		bad = append(bad, api.FieldError{Field: "role", Message: "must be one of: publisher, viewer"})
	}
	if len(bad) > 0 {
		return api.Invalid(bad...)
	}
	list, err := s.store.ListSessions(r.Context(), f)
	if err != nil {
		return err
	}
	out := api.SessionList{Sessions: make([]api.Session, 0, len(list))}
	for _, sess := range list {
		out.Sessions = append(out.Sessions, toAPISession(sess))
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleSessionGet shows one session.
//
//	@Summary	Get a session
//	@Tags		sessions
//	@Produce	json
//	@Param		id	path		string	true	"Session id"
//	@Success	200	{object}	api.Session
//	@Failure	404	{object}	api.Problem
//	@Router		/api/v1/sessions/{id} [get]
func (s *Server) handleSessionGet(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if !record.ValidID(id) {
		return api.Errorf(http.StatusNotFound, "session not found")
	}
	sess, err := s.store.GetSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, "session not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toAPISession(sess))
}

// handleSessionDelete ends a session.
//
//	@Summary		End a session
//	@Description	Ends the session and frees its UDP port.
//	@Tags			sessions
//	@Param			id	path	string	true	"Session id"
//	@Success		204
//	@Failure		404	{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Router			/api/v1/sessions/{id} [delete]
func (s *Server) handleSessionDelete(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.liveSession(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	if err := s.closeSession(r.Context(), sess.ID, "deleted via API"); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handlePortList shows every port of the range.
//
//	@Summary		List UDP ports
//	@Description	Every port of the range: local and public port, free or leased, by which sessions since when, packets seen.
//	@Tags			ports
//	@Produce		json
//	@Success		200	{object}	api.PortList
//	@Router			/api/v1/ports [get]
func (s *Server) handlePortList(w http.ResponseWriter, r *http.Request) error {
	ports := s.engine.Ports()
	live, err := s.store.ListSessions(r.Context(), store.SessionFilter{})
	if err != nil {
		return err
	}
	byID := make(map[string]store.Session, len(live))
	for _, sess := range live {
		byID[sess.ID] = sess
	}
	admin := s.isAdmin(r)
	out := api.PortList{Total: len(ports), PeersPerPort: max(s.cfg.PeersPerPort, 1), Ports: make([]api.Port, 0, len(ports))}
	for _, p := range ports {
		ap := api.Port{
			LocalPort:  p.LocalPort,
			PublicPort: p.PublicPort,
			State:      "free",
			Sessions:   make([]api.PortSession, 0, len(p.Holders)),
			PacketsIn:  p.PacketsIn,
			BytesIn:    p.BytesIn,
		}
		if len(p.PublicAddrs) > 0 {
			ap.PublicAddr = p.PublicAddrs[0]
		}
		if p.Leased {
			ap.State = "leased"
			out.Leased++
		} else {
			out.Free++
		}
		if !p.LastPacket.IsZero() {
			t := p.LastPacket
			ap.LastPacketAt = &t
		}
		for _, h := range p.Holders {
			ps := api.PortSession{
				ParticipantID: byID[h.SessionID].PublicID, Room: h.Room, Role: string(h.Role),
				UserID: byID[h.SessionID].UserID, Since: h.Since,
			}
			if admin {
				ps.SessionID = h.SessionID
			}
			ap.Sessions = append(ap.Sessions, ps)
			// Without --public-ip the engine advertises interface
			// addresses per session; show the one the holder got.
			if ap.PublicAddr == "" {
				ap.PublicAddr = byID[h.SessionID].Lease.PublicAddr
			}
		}
		sort.Slice(ap.Sessions, func(i, j int) bool { return ap.Sessions[i].Since.Before(ap.Sessions[j].Since) })
		out.Ports = append(out.Ports, ap)
	}
	return writeJSON(w, http.StatusOK, out)
}
