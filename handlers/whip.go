package handlers

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/edge"
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
//	@Description	WHEP draft: POST an SDP offer (recvonly), get the answer. ?publisher= picks a publisher session; the default is the newest. A viewer that arrives before any publisher keeps its connection and gets media when one arrives.
//	@Tags			WHEP
//	@Accept			application/sdp
//	@Produce		application/sdp
//	@Param			room			path		string	true	"Room name"
//	@Param			publisher		query		string	false	"Publisher session id to follow"
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
		if publisher != "" && !record.ValidID(publisher) {
			return api.Invalid(api.FieldError{Field: "publisher", Message: "must be a session id (32 hex digits)"})
		}
	}
	room, err := s.roomForSession(ctx, r, chi.URLParam(r, "room"), role)
	if err != nil {
		return err
	}
	// RFC 9725 §4.2: the offer is an SDP body of type application/sdp.
	offer, err := api.ReadSDP(w, r)
	if err != nil {
		return err
	}
	sess, ans, err := s.sessions.Open(ctx, record.OpenRequest{Room: room.Name, Role: role, Offer: offer, PublisherID: publisher,
		TrustLocalCandidates: edge.ClientIsLoopback(r),
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
	h.Set("Content-Type", api.SDPContentType)
	// RFC 9725 §4.3.1: a strong ETag identifies the ICE session, matched by
	// If-Match on PATCH.
	h.Set("ETag", record.ETag(ans.ICEUfrag))
	// RFC 9725 §4.3.1: Accept-Patch tells the client trickle ICE is taken.
	h.Set("Accept-Patch", api.SDPFragContentType)
	// RFC 9725 §4.6: one Link per STUN/TURN server (RFC 8288 syntax).
	s.addICELinks(h)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(ans.SDP))
	return nil
}

func (s *Server) addICELinks(h http.Header) {
	for _, srv := range s.cfg.ICEServers {
		h.Add("Link", srv.LinkValue())
	}
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
	// The ETag and the restart test both come from the live ICE session:
	// its current local and remote ufrags.
	local, remote, err := s.engine.ICEUfrags(sess.ID)
	if err != nil {
		return err
	}
	// RFC 9725 §4.3.3: an ICE restart is requested with If-Match: "*" and
	// a fragment carrying new ice-ufrag/ice-pwd (RFC 8840 §4.4).
	newUfrag := iceUfrag(frag)
	restart := ifMatch == "*" || (newUfrag != "" && remote != "" && newUfrag != remote)
	// RFC 9725 §4.3.1: an entity tag that is not the session's current one
	// is 412 Precondition Failed (RFC 9110 §13.1.1, strong comparison).
	if ifMatch != "*" && !etagMatches(ifMatch, record.ETag(local)) {
		return api.Errorf(http.StatusPreconditionFailed, "If-Match %s does not match the session's current ETag", ifMatch)
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

// handleWHEPHead answers HEAD on the WHEP endpoint.
//
//	@Summary		WHEP endpoint probe
//	@Description	HEAD on the WHEP endpoint answers 200 with Accept-Post, so players can probe it.
//	@Tags			WHEP
//	@Param			room	path	string	true	"Room name"
//	@Success		200
//	@Router			/whep/{room} [head]
func (s *Server) handleWHEPHead(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Accept-Post", api.SDPContentType)
	w.WriteHeader(http.StatusOK)
	return nil
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
