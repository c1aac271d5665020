package handlers

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// handleWHIPCreate publishes into a room.
//
//	@Summary		Publish (WHIP)
//	@Description	RFC 9725 ingest: POST an SDP offer, get the answer with every candidate of pinhole's (public IP and port of the leased UDP port). The session URL is in Location; PATCH it for trickle ICE or ICE restart, DELETE it to stop. A room with a publish token requires Authorization: Bearer.
//	@Tags			WHIP
//	@Accept			application/sdp
//	@Produce		application/sdp
//	@Param			room			path		string	true	"Room name"
//	@Param			Authorization	header		string	false	"Bearer <publish token>"
//	@Param			offer			body		string	true	"SDP offer"
//	@Success		201				{string}	string	"SDP answer"
//	@Header			201				{string}	Location	"Session URL /whip/{room}/{id}"
//	@Header			201				{string}	ETag		"Strong entity tag for If-Match"
//	@Header			201				{string}	Link		"ICE servers, rel=ice-server"
//	@Failure		400				{object}	api.Problem	"Malformed offer"
//	@Failure		401				{object}	api.Problem	"Token missing or wrong"
//	@Failure		404				{object}	api.Problem	"No such room (auto-create off)"
//	@Failure		415				{object}	api.Problem	"Not application/sdp"
//	@Failure		422				{object}	api.Problem	"Track set pinhole cannot serve"
//	@Failure		503				{object}	api.Problem	"All UDP ports leased (Retry-After)"
//	@Failure	409	{object}	api.Problem	"--max-rooms or --max-sessions-per-room reached (problem member limit names it)"
//	@Failure	413	{object}	api.Problem	"Body over --max-sdp-bytes / --max-json-bytes"
//	@Failure	429	{object}	api.Problem	"--session-rate exceeded for this address; Retry-After"
//	@Router			/whip/{room} [post]
func (s *Server) handleWHIPCreate(w http.ResponseWriter, r *http.Request) error {
	return s.createResource(w, r, store.RolePublisher)
}

// handleWHEPCreate subscribes a viewer to a room.
//
//	@Summary		Watch (WHEP)
//	@Description	WHEP draft: POST an SDP offer (recvonly), get the answer. ?publisher= picks a publisher by its participant id; the default is the newest. A viewer that arrives before any publisher keeps its connection and gets media when one arrives.
//	@Tags			WHEP
//	@Accept			application/sdp
//	@Produce		application/sdp
//	@Param			room			path		string	true	"Room name"
//	@Param			publisher		query		string	false	"Participant id of the publisher to follow"
//	@Param			Authorization	header		string	false	"Bearer <view token>"
//	@Param			offer			body		string	true	"SDP offer"
//	@Success		201				{string}	string	"SDP answer"
//	@Header			201				{string}	Location	"Session URL /whep/{room}/{id}"
//	@Header			201				{string}	ETag		"Strong entity tag for If-Match"
//	@Header			201				{string}	Link		"ICE servers, rel=ice-server"
//	@Failure		400				{object}	api.Problem
//	@Failure		401				{object}	api.Problem
//	@Failure		404				{object}	api.Problem
//	@Failure		415				{object}	api.Problem
//	@Failure		422				{object}	api.Problem
//	@Failure		503				{object}	api.Problem
//	@Failure	409	{object}	api.Problem	"--max-rooms or --max-sessions-per-room reached (problem member limit names it)"
//	@Failure	413	{object}	api.Problem	"Body over --max-sdp-bytes / --max-json-bytes"
//	@Failure	429	{object}	api.Problem	"--session-rate exceeded for this address; Retry-After"
//	@Router			/whep/{room} [post]
func (s *Server) handleWHEPCreate(w http.ResponseWriter, r *http.Request) error {
	return s.createResource(w, r, store.RoleViewer)
}

func (s *Server) createResource(w http.ResponseWriter, r *http.Request, role store.Role) error {
	ctx := r.Context()
	publisher := ""
	if role == store.RoleViewer {
		publisher = r.URL.Query().Get("publisher")
		if publisher != "" && !record.ValidPublicID(publisher) {
			return api.Invalid(api.FieldError{Field: "publisher", Message: "must be a participant id (16 hex digits) from the room's participant list"})
		}
	}
	room, exists, err := s.roomFor(ctx, r, chi.URLParam(r, "room"), role)
	if err != nil {
		return err
	}
	// RFC 9725 §4.2: the offer is an SDP body of type application/sdp.
	offer, err := api.ReadSDP(w, r)
	if err != nil {
		return err
	}
	sess, ans, err := s.openIn(r, room, exists, record.OpenRequest{Role: role, Offer: offer, PublisherID: publisher,
		// Where the client reached signaling: the diagnosis compares it with
		// the address the answer advertises.
		Timeline: []store.Event{{Kind: "request", Detail: "Host: " + r.Host}}})
	if err != nil {
		return err
	}
	h := w.Header()
	// RFC 9725 §4.2: 201 Created, Location of the session URL, the answer
	// as application/sdp.
	h.Set("Location", resourceURL(room.Name, role, sess.ID))
	// The participant id others see for this session (the room's
	// participant list, ?publisher=), so a client can recognise itself.
	h.Set(ParticipantIDHeader, sess.PublicID)
	h.Set("Content-Type", api.SDPContentType)
	// RFC 9725 §4.3.1: a strong ETag identifies the ICE session, matched by
	// If-Match on PATCH.
	h.Set("ETag", record.ETag(ans.ICEUfrag))
	// RFC 9725 §4.3.1: Accept-Patch tells the client trickle ICE is taken.
	h.Set("Accept-Patch", api.SDPFragContentType)
	// RFC 9725 §4.6: one Link per STUN/TURN server (RFC 8288 syntax).
	s.addICELinks(h, sess.PublicID)
	// draft-ietf-wish-whep-03 §4.10: each supported extension is one Link
	// in the 201; webrtc-http-egress-events §4: the server-sent events
	// entry point, with the event types it offers.
	if role == store.RoleViewer && s.events != nil {
		h.Add("Link", whepEventsLink(room.Name, sess.ID))
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(ans.SDP))
	return nil
}

// handleWHIPPatch takes trickle ICE candidates or an ICE restart.
//
//	@Summary		Trickle ICE / ICE restart (WHIP)
//	@Description	RFC 9725 §4.3: application/trickle-ice-sdpfrag only; If-Match is required. With the current ETag the candidates are added (204). With If-Match: * or new ice-ufrag/ice-pwd the ICE session restarts (200 with the answer fragment and a new ETag).
//	@Tags			WHIP
//	@Accept			application/trickle-ice-sdpfrag
//	@Produce		application/trickle-ice-sdpfrag
//	@Param			room		path		string	true	"Room name"
//	@Param			id			path		string	true	"Session id"
//	@Param			If-Match	header		string	true	"ETag of the session, or * for ICE restart"
//	@Param			fragment	body		string	true	"SDP fragment"
//	@Success		200			{string}	string	"ICE restart answer fragment"
//	@Success		204			"Candidates added"
//	@Failure		400			{object}	api.Problem
//	@Failure		404			{object}	api.Problem
//	@Failure		412			{object}	api.Problem	"Stale If-Match"
//	@Failure		415			{object}	api.Problem
//	@Failure		428			{object}	api.Problem	"If-Match missing"
//	@Router			/whip/{room}/{id} [patch]
func (s *Server) handleWHIPPatch(w http.ResponseWriter, r *http.Request) error {
	return s.patchResource(w, r, store.RolePublisher)
}

// handleWHEPPatch is handleWHIPPatch for viewers.
//
//	@Summary		Trickle ICE / ICE restart (WHEP)
//	@Description	As for WHIP (WHEP draft §4.3).
//	@Tags			WHEP
//	@Accept			application/trickle-ice-sdpfrag
//	@Produce		application/trickle-ice-sdpfrag
//	@Param			room		path		string	true	"Room name"
//	@Param			id			path		string	true	"Session id"
//	@Param			If-Match	header		string	true	"ETag of the session, or * for ICE restart"
//	@Param			fragment	body		string	true	"SDP fragment"
//	@Success		200			{string}	string	"ICE restart answer fragment"
//	@Success		204			"Candidates added"
//	@Failure		400			{object}	api.Problem
//	@Failure		404			{object}	api.Problem
//	@Failure		412			{object}	api.Problem
//	@Failure		415			{object}	api.Problem
//	@Failure		428			{object}	api.Problem
//	@Router			/whep/{room}/{id} [patch]
func (s *Server) handleWHEPPatch(w http.ResponseWriter, r *http.Request) error {
	return s.patchResource(w, r, store.RoleViewer)
}

func (s *Server) patchResource(w http.ResponseWriter, r *http.Request, role store.Role) error {
	sess, err := s.resource(r, role)
	if err != nil {
		return err
	}
	// RFC 9725 §4.3.1: the body is an application/trickle-ice-sdpfrag
	// (RFC 8840); anything else is 415, with Accept-Patch saying what is.
	frag, err := api.ReadFragment(w, r)
	if err != nil {
		return err
	}
	// RFC 9725 §4.3.1: If-Match is required; without it 428 (RFC 6585 §3).
	ifMatch := strings.TrimSpace(r.Header.Get("If-Match"))
	if ifMatch == "" {
		return api.Errorf(http.StatusPreconditionRequired, "If-Match is required: send the ETag of the session, or * for an ICE restart")
	}
	// RFC 9725 §4.3.3 and draft-ietf-wish-whep-03 §4.5.3: an ICE restart
	// carries If-Match "*" (RFC 9110 §13.1.1). Both print it quoted,
	// If-Match: "*", and clients copy that; as an entity tag "*" can never
	// be one of ours (ours are ice-chars, RFC 8839 §5.4), so the quoted
	// form means the restart too.
	wildcard := ifMatch == "*" || ifMatch == `"*"`
	newUfrag, newPwd := iceUfrag(frag), api.SDPAttr(frag, "a=ice-pwd:")
	if err := checkICECredentials(newUfrag, newPwd); err != nil {
		return err
	}
	// The ETag and the restart test both come from the live ICE session:
	// its current local and remote ufrags.
	local, remote, err := s.engine.ICEUfrags(sess.ID)
	if err != nil {
		return err
	}
	// RFC 9725 §4.3.3: a fragment with an ice-ufrag/ice-pwd other than the
	// current ICE session's is an ICE restart (overriding RFC 8840's
	// "discard").
	restart := wildcard || (newUfrag != "" && remote != "" && newUfrag != remote)
	// RFC 9725 §4.3.1: an entity tag that is not the session's current one
	// is 412 Precondition Failed (RFC 9110 §13.1.1, strong comparison).
	if !wildcard && !etagMatches(ifMatch, record.ETag(local)) {
		return api.Errorf(http.StatusPreconditionFailed, "If-Match %s does not match the session's current ETag", ifMatch)
	}
	if restart {
		// RFC 9725 §4.3.3: the restart request MUST include the updated
		// ice-pwd and ice-ufrag. RFC 8839 §4.4.1.1.1: restarting ICE MUST
		// change both, so a ufrag equal to the current one is no restart.
		// Refused before the engine sees it, the ICE session is kept
		// (RFC 9725 §4.3.3: a failed restart leaves the session as it was).
		switch {
		case newUfrag == "":
			return api.Invalid(api.FieldError{Field: "ice-ufrag", Message: "an ICE restart must carry the new a=ice-ufrag (RFC 9725 section 4.3.3)"})
		case newPwd == "":
			return api.Invalid(api.FieldError{Field: "ice-pwd", Message: "an ICE restart must carry the new a=ice-pwd (RFC 9725 section 4.3.3)"})
		case newUfrag == remote:
			return api.Invalid(api.FieldError{Field: "ice-ufrag", Message: "an ICE restart must change the ufrag; this is the current ICE session's (RFC 8839 section 4.4.1.1.1)"})
		}
	}
	if !restart {
		// RFC 9725 §4.3.2: trickled candidates are answered 204 No Content.
		if err := s.engine.Trickle(sess.ID, frag); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	answer, err := s.engine.Restart(sess.ID, frag)
	if err != nil {
		return err
	}
	local, _, err = s.engine.ICEUfrags(sess.ID)
	if err != nil {
		return err
	}
	etag := record.ETag(local)
	// RFC 9725 §4.3.3: 200 OK with the answer fragment (new ufrag/pwd and
	// candidates) and the new ETag of the restarted ICE session.
	w.Header().Set("Content-Type", api.SDPFragContentType)
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(answer))
	return nil
}

// checkICECredentials checks the a=ice-ufrag and a=ice-pwd of a fragment,
// when present, against RFC 8839 §5.4: ice-ufrag is 4 to 256 ice-chars,
// ice-pwd 22 to 256, an ice-char being ALPHA, DIGIT, "+" or "/". Shorter
// credentials weaken ICE's message integrity (RFC 8445 §5.3: at least 24
// bits of ufrag and 128 bits of password).
func checkICECredentials(ufrag, pwd string) error {
	var bad []api.FieldError
	if ufrag != "" && !iceChars(ufrag, 4) {
		bad = append(bad, api.FieldError{Field: "ice-ufrag", Message: "must be 4 to 256 characters of A-Z, a-z, 0-9, '+' and '/' (RFC 8839 section 5.4)"})
	}
	if pwd != "" && !iceChars(pwd, 22) {
		bad = append(bad, api.FieldError{Field: "ice-pwd", Message: "must be 22 to 256 characters of A-Z, a-z, 0-9, '+' and '/' (RFC 8839 section 5.4)"})
	}
	if len(bad) > 0 {
		return api.Invalid(bad...)
	}
	return nil
}

// iceChars reports whether s is min to 256 ice-chars (RFC 8839 §5.4).
func iceChars(s string, min int) bool {
	if len(s) < min || len(s) > 256 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// etagMatches compares an If-Match list with the current tag, strongly:
// weak tags never match (RFC 9110 §13.1.1).
func etagMatches(ifMatch, current string) bool {
	for _, t := range strings.Split(ifMatch, ",") {
		if t = strings.TrimSpace(t); t == current && !strings.HasPrefix(t, "W/") {
			return true
		}
	}
	return false
}

// handleWHIPDelete ends a publisher session.
//
//	@Summary		Stop publishing (WHIP)
//	@Description	RFC 9725 §4.2: DELETE the session URL ends the session and frees its UDP port. If-Match is not needed.
//	@Tags			WHIP
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Success		200
//	@Failure		401	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Router			/whip/{room}/{id} [delete]
func (s *Server) handleWHIPDelete(w http.ResponseWriter, r *http.Request) error {
	return s.deleteResource(w, r, store.RolePublisher)
}

// handleWHEPDelete ends a viewer session.
//
//	@Summary		Stop watching (WHEP)
//	@Description	WHEP draft §4.2: DELETE the session URL ends the session and frees its UDP port.
//	@Tags			WHEP
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Success		200
//	@Failure		401	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Router			/whep/{room}/{id} [delete]
func (s *Server) handleWHEPDelete(w http.ResponseWriter, r *http.Request) error {
	return s.deleteResource(w, r, store.RoleViewer)
}

func (s *Server) deleteResource(w http.ResponseWriter, r *http.Request, role store.Role) error {
	sess, err := s.resource(r, role)
	if err != nil {
		return err
	}
	if err := s.closeSession(r.Context(), sess.ID, "deleted by client"); err != nil {
		return err
	}
	// RFC 9725 §4.2: the endpoint answers the DELETE with 200 OK.
	w.WriteHeader(http.StatusOK)
	return nil
}

// resource finds the live session of a WHIP/WHEP session URL: the id, the
// room and the role must all match, else 404. The room's token for the role
// is required as on POST (RFC 9725 §4.7: every request is authenticated).
func (s *Server) resource(r *http.Request, role store.Role) (store.Session, error) {
	ctx := r.Context()
	sess, err := s.liveSession(ctx, chi.URLParam(r, "id"))
	if err != nil {
		return store.Session{}, err
	}
	if sess.Room != chi.URLParam(r, "room") || sess.Role != role {
		return store.Session{}, api.Errorf(http.StatusNotFound, "session not found")
	}
	room, err := s.store.GetRoom(ctx, sess.Room)
	if err == nil {
		if err := authorize(r, room, role); err != nil {
			return store.Session{}, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Session{}, err
	}
	return sess, nil
}

// handleWHIPOptions answers OPTIONS and CORS preflight on the WHIP endpoint.
//
//	@Summary		WHIP endpoint options
//	@Description	RFC 9725 §4.2: Accept-Post: application/sdp; CORS preflight answers.
//	@Tags			WHIP
//	@Param			room	path	string	true	"Room name"
//	@Success		204
//	@Header			204	{string}	Accept-Post	"application/sdp"
//	@Router			/whip/{room} [options]
func (s *Server) handleWHIPOptions(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Allow", "OPTIONS, POST")
	w.Header().Set("Accept-Post", api.SDPContentType)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleWHEPOptions answers OPTIONS and CORS preflight on the WHEP endpoint.
//
//	@Summary		WHEP endpoint options
//	@Description	WHEP draft §4.2: Accept-Post: application/sdp; CORS preflight answers.
//	@Tags			WHEP
//	@Param			room	path	string	true	"Room name"
//	@Success		204
//	@Header			204	{string}	Accept-Post	"application/sdp"
//	@Router			/whep/{room} [options]
func (s *Server) handleWHEPOptions(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Allow", "OPTIONS, HEAD, POST")
	w.Header().Set("Accept-Post", api.SDPContentType)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleWHIPGet answers GET and HEAD on the WHIP endpoint.
//
//	@Summary		WHIP endpoint GET
//	@Description	RFC 9725 §4.1: the endpoint has no representation, so GET answers 2xx with no content (200, Content-Length 0, Accept-Post). HEAD answers the same headers. An invalid room name is 400; a missing room 404 unless rooms are made on the fly.
//	@Tags			WHIP
//	@Param			room	path	string	true	"Room name"
//	@Success		200
//	@Header			200	{string}	Accept-Post	"application/sdp"
//	@Failure		400	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Router			/whip/{room} [get]
func (s *Server) handleWHIPGet(w http.ResponseWriter, r *http.Request) error {
	return s.endpointGet(w, r, store.RolePublisher)
}

// handleWHEPHead answers GET and HEAD on the WHEP endpoint.
//
//	@Summary		WHEP endpoint probe
//	@Description	draft-ietf-wish-whep-03 §4.2: HEAD answers 200 with Content-Type: application/sdp and no body, so players can tell a WHEP endpoint; §4.1: GET answers the same, with no content. An invalid room name is 400; a missing room 404 unless rooms are made on the fly.
//	@Tags			WHEP
//	@Param			room	path	string	true	"Room name"
//	@Success		200
//	@Header			200	{string}	Content-Type	"application/sdp"
//	@Failure		400	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Router			/whep/{room} [head]
//	@Router			/whep/{room} [get]
func (s *Server) handleWHEPHead(w http.ResponseWriter, r *http.Request) error {
	return s.endpointGet(w, r, store.RoleViewer)
}

// endpointGet is GET and HEAD on a WHIP or WHEP endpoint. It needs no token:
// it tells no more than the room list does.
func (s *Server) endpointGet(w http.ResponseWriter, r *http.Request, role store.Role) error {
	name := chi.URLParam(r, "room")
	if !api.ValidRoomName(name) {
		return api.Invalid(api.FieldError{Field: "room", Message: "must be 1 to 64 letters, digits, '.', '_' or '-'"})
	}
	if _, err := s.store.GetRoom(r.Context(), name); errors.Is(err, store.ErrNotFound) && !s.cfg.AutoCreateRooms {
		return api.Errorf(http.StatusNotFound, "room %q does not exist", name)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	h := w.Header()
	h.Set("Accept-Post", api.SDPContentType)
	if role == store.RoleViewer {
		// draft-ietf-wish-whep-03 §4.2: HEAD SHOULD answer 200 with
		// Content-Type: application/sdp, and MUST carry the headers GET
		// would: so GET carries it too. A WHIP endpoint does not claim
		// it, so a player does not take it for a WHEP one.
		h.Set("Content-Type", api.SDPContentType)
	}
	return noContent(w)
}

// noContent answers 200 with an empty body: RFC 9725 §4.1 and
// draft-ietf-wish-whep-03 §4.1 ("2xx successful response with no
// content"). 200 rather than 204 so that HEAD, which repeats GET's
// headers, can answer the 200 the WHEP draft asks of it.
func noContent(w http.ResponseWriter) error {
	w.Header().Set("Content-Length", "0")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// handleWHIPSessionGet answers GET and HEAD on a WHIP session URL.
//
//	@Summary		WHIP session GET
//	@Description	RFC 9725 §4.1: a session has no representation: 200 with no content while it lives (holder of the URL; the room's publish token applies), 404 after.
//	@Tags			WHIP
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Success		200
//	@Failure		401	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Router			/whip/{room}/{id} [get]
func (s *Server) handleWHIPSessionGet(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.resource(r, store.RolePublisher); err != nil {
		return err
	}
	return noContent(w)
}

// handleWHEPSessionGet answers GET and HEAD on a WHEP session URL.
//
//	@Summary		WHEP session GET
//	@Description	draft-ietf-wish-whep-03 §4.1: 200 with no content while the session lives (holder of the URL; the room's view token applies), 404 after.
//	@Tags			WHEP
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Success		200
//	@Failure		401	{object}	api.Problem
//	@Failure		404	{object}	api.Problem
//	@Router			/whep/{room}/{id} [get]
func (s *Server) handleWHEPSessionGet(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.resource(r, store.RoleViewer); err != nil {
		return err
	}
	return noContent(w)
}

// handleResourceOptions answers OPTIONS and CORS preflight on a session URL.
//
//	@Summary		Session URL options
//	@Description	RFC 9725 §4.3.1: Accept-Patch: application/trickle-ice-sdpfrag.
//	@Tags			WHIP
//	@Param			room	path	string	true	"Room name"
//	@Param			id		path	string	true	"Session id"
//	@Success		204
//	@Header			204	{string}	Accept-Patch	"application/trickle-ice-sdpfrag"
//	@Router			/whip/{room}/{id} [options]
func (s *Server) handleResourceOptions(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Allow", "OPTIONS, PATCH, DELETE")
	w.Header().Set("Accept-Patch", api.SDPFragContentType)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
