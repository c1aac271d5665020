package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Event streams: the WHEP server-sent events extension and the room event
// stream of the JSON API. Both are WHATWG server-sent events
// (text/event-stream), each event's data one line of JSON.

// EventStreamContentType is the media type of an event stream.
const EventStreamContentType = "text/event-stream"

// WHEPEventsRel is the Link relation of the WHEP server-sent events
// extension (webrtc-http-egress-events §4, IANA section).
const WHEPEventsRel = "urn:ietf:params:whep:ext:core:server-sent-events"

// WHEP event types pinhole sends (webrtc-http-egress-events §4.1, §4.2,
// §4.5). layers, reconnect and scte35 are not offered: pinhole forwards one
// layer and never moves a viewer.
const (
	WHEPEventActive      = "active"
	WHEPEventInactive    = "inactive"
	WHEPEventViewerCount = "viewercount"
)

// WHEPEvents are the event types announced in the Link's events attribute,
// in that order.
var WHEPEvents = []string{WHEPEventActive, WHEPEventInactive, WHEPEventViewerCount}

// ViewerCount is the data of a viewercount event (§4.5).
type ViewerCount struct {
	ViewerCount int `json:"viewercount" example:"3"`
}

// Room event types of GET /api/v1/rooms/{room}/events.
const (
	RoomEventJoined           = "participant.joined"
	RoomEventLeft             = "participant.left"
	RoomEventState            = "participant.state"
	RoomEventPublisherStarted = "publisher.started"
	RoomEventPublisherStopped = "publisher.stopped"
)

// RoomEvent is the data of one room event: what happened and to whom, as
// the public participant list shows them. It never carries a session id
// or a session URL: those are capabilities.
type RoomEvent struct {
	Type        string      `json:"type" enums:"participant.joined,participant.left,participant.state,publisher.started,publisher.stopped"`
	Room        string      `json:"room" example:"studio"`
	Participant Participant `json:"participant"`
	At          time.Time   `json:"at"`
}

// MaxEventListBody caps the body of an event stream POST: the longest list
// of the six event types the extension defines is under 80 bytes.
const MaxEventListBody = 1 << 10

// ReadEventList reads the body of a POST creating a WHEP event stream
// (webrtc-http-egress-events §4): an optional application/json array of
// event types, each one of offered. An empty body asks for all of them.
// A wrong type is 415, junk 400, an unknown event type 400 naming its
// index.
func ReadEventList(w http.ResponseWriter, r *http.Request, offered []string) ([]string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxEventListBody)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "body exceeds %d bytes", mbe.Limit)
		}
		return nil, Errorf(http.StatusBadRequest, "reading the body failed")
	}
	if strings.TrimSpace(string(b)) == "" {
		return slices.Clone(offered), nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != JSONContentType {
		return nil, Errorf(http.StatusUnsupportedMediaType, "Content-Type must be %s: a JSON array of event types", JSONContentType).
			WithHeader("Accept-Post", JSONContentType)
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, Errorf(http.StatusBadRequest, "body must be a JSON array of event types, e.g. [%q]", offered[0])
	}
	var bad []FieldError
	var out []string
	for i, ev := range list {
		if !slices.Contains(offered, ev) {
			bad = append(bad, FieldError{Field: fmt.Sprintf("[%d]", i),
				Message: fmt.Sprintf("unknown event type; this session offers %s", strings.Join(offered, ", "))})
			continue
		}
		if !slices.Contains(out, ev) {
			out = append(out, ev)
		}
	}
	if len(bad) > 0 {
		return nil, Invalid(bad...)
	}
	if len(out) == 0 {
		return nil, Invalid(FieldError{Field: "[]", Message: "must name at least one event type"})
	}
	return out, nil
}
