package record

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// Sessions opens and closes sessions: the record in the store and the peer
// connection in the engine, always in that order, so the record of a live
// peer connection always exists.
type Sessions struct {
	Store    store.Store
	Engine   *media.Engine
	Recorder *Recorder
	// Node names this instance in session records.
	Node string
	// MaxSessionsPerRoom caps a room's live sessions, enforced by the store
	// where the record is created (0: no cap).
	MaxSessionsPerRoom int
}

// OpenRequest is what WHIP, WHEP, the JSON API and the self-test share to
// start a session.
type OpenRequest struct {
	Room        string
	Role        store.Role
	Offer       string
	UserID      string
	Metadata    map[string]string
	PublisherID string
	// Timeline is written into the record before any media event (the
	// self-test marks its session this way).
	Timeline []store.Event
	// TrustLocalCandidates lets the offer's loopback and host-address
	// candidates through: the HTTP client itself is on this host.
	TrustLocalCandidates bool
}

// NewID returns an unguessable 128-bit id in hex. RFC 9725 sections 4.2
// and 4.7 rely on the session URL being hard to guess: whoever knows it can
// end the session.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// NewPublicID returns a session's public id: 64 random bits in hex, apart
// from the session id, so that showing it to a room's participants tells
// them nothing of the session URL.
func NewPublicID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidPublicID reports whether id could be one of NewPublicID's.
func ValidPublicID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// ValidID reports whether id could be one of NewID's, so that junk never
// reaches the store.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// ETag is the entity tag of a session URL: pinhole's ICE ufrag, quoted
// (RFC 9725 section 4.3.1: the ETag identifies the ICE session; an ICE
// restart changes the ufrag and so the tag). A ufrag is ice-chars (RFC 8839
// section 5.4: ALPHA, DIGIT, "+", "/"), all valid etagc (RFC 9110 section
// 8.8.3), so it is a strong tag as it stands.
func ETag(localUfrag string) string { return `"` + localUfrag + `"` }

// Open records a new session (state new), then asks the engine for its peer
// connection. When the engine refuses (bad offer, full pool), the record is
// deleted again and the engine's error returned.
func (s *Sessions) Open(ctx context.Context, req OpenRequest) (store.Session, *media.Answer, error) {
	id := NewID()
	now := time.Now().UTC()
	rec := store.Session{
		ID:          id,
		PublicID:    NewPublicID(),
		Room:        req.Room,
		Role:        req.Role,
		UserID:      req.UserID,
		Metadata:    req.Metadata,
		State:       store.StateNew,
		Transitions: []store.Transition{{State: store.StateNew, At: now}},
		CreatedAt:   now,
		UpdatedAt:   now,
		PublisherID: req.PublisherID,
		Node:        s.Node,
	}
	for _, e := range req.Timeline {
		AddTimeline(&rec, e)
	}
	// The request may be cancelled from here on; what is created must be
	// recorded or undone regardless.
	wctx := context.WithoutCancel(ctx)
	if err := s.Store.CreateSession(wctx, rec, s.MaxSessionsPerRoom); err != nil {
		return store.Session{}, nil, err
	}
	mreq := media.SessionRequest{ID: id, Room: req.Room, Offer: req.Offer, PublisherID: req.PublisherID,
		TrustLocalCandidates: req.TrustLocalCandidates}
	var (
		ans *media.Answer
		err error
	)
	if req.Role == store.RolePublisher {
		ans, err = s.Engine.Publish(ctx, mreq)
	} else {
		ans, err = s.Engine.Watch(ctx, mreq)
	}
	if err != nil {
		if derr := s.Store.DeleteSession(wctx, id); derr != nil && !errors.Is(derr, store.ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("deleting the record of a refused session: %w", derr))
		}
		return store.Session{}, nil, err
	}
	rec, err = s.Store.UpdateSession(wctx, id, func(r *store.Session) error {
		r.Lease = store.Lease{LocalPort: ans.LocalPort, PublicAddr: ans.PublicAddr}
		r.Codecs = ans.Codecs
		return nil
	})
	if err != nil {
		_ = s.Engine.CloseSession(id, "recording the session failed")
		return store.Session{}, nil, fmt.Errorf("recording the session: %w", err)
	}
	return rec, ans, nil
}

// Close ends a live session and applies the "closed" event to its record
// at once. The engine's own closed event arrives later and changes nothing.
func (s *Sessions) Close(ctx context.Context, id, reason string) error {
	if err := s.Engine.CloseSession(id, reason); err != nil && !errors.Is(err, media.ErrSessionNotFound) {
		return err
	}
	return s.Recorder.Record(ctx, media.Event{SessionID: id, At: time.Now().UTC(), Kind: media.EventClosed, Detail: reason})
}
