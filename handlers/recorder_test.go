package handlers

import (
	"context"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// TestRecorderEarlyEvents: events that arrive before the handler wrote the
// session record (the engine reports "connecting", even "closed", during
// setup) are held and applied in order on register, and dropped on forget.
func TestRecorderEarlyEvents(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory(store.MemoryOptions{})
	rec := NewRecorder(st, testLogger(t))
	defer rec.Close()
	t0 := time.Now().UTC()
	ev := func(id string, kind media.EventKind, state, detail string, d time.Duration) media.Event {
		return media.Event{SessionID: id, Room: "r", Role: media.RolePublisher, At: t0.Add(d), Kind: kind, State: state, Name: detail, Detail: detail}
	}

	// Early events, then the record, then register.
	rec.OnEvent(ev("a", media.EventState, "connecting", "", 1*time.Millisecond))
	rec.OnEvent(ev("a", media.EventTimeline, "", "answer", 2*time.Millisecond))
	rec.OnEvent(ev("a", media.EventRemoteAddr, "", "127.0.0.1:5000", 3*time.Millisecond))
	rec.OnEvent(ev("a", media.EventClosed, "", "setup timeout", 4*time.Millisecond))
	rec.Sync()
	if err := st.CreateSession(ctx, store.Session{ID: "a", Room: "r", Role: store.RolePublisher, State: store.StateNew,
		Transitions: []store.Transition{{State: store.StateNew, At: t0}}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	rec.register("a")
	rec.OnEvent(ev("a", media.EventState, "connected", "", 5*time.Millisecond)) // after closed: ignored
	rec.Sync()
	s, err := st.GetSession(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var states []store.State
	for _, tr := range s.Transitions {
		states = append(states, tr.State)
	}
	if len(states) != 3 || states[0] != store.StateNew || states[1] != store.StateConnecting || states[2] != store.StateClosed {
		t.Errorf("transitions %v, want new connecting closed", states)
	}
	if s.CloseReason != "setup timeout" || len(s.RemoteAddrs) != 1 {
		t.Errorf("record %+v", s)
	}
	kinds := map[string]bool{}
	for _, e := range s.Events {
		kinds[e.Kind] = true
	}
	if !kinds["answer"] || !kinds["closed"] {
		t.Errorf("timeline %+v", s.Events)
	}

	// Forgotten ids: their held events are dropped, nothing is written.
	rec.OnEvent(ev("b", media.EventState, "connecting", "", 0))
	rec.forget("b")
	rec.Sync()
	if len(rec.pendingIDs()) != 0 {
		t.Errorf("events still held: %v", rec.pendingIDs())
	}
}

// pendingIDs lists ids with held events; it runs on the recorder goroutine's
// data, so callers Sync first and nothing else may be queued.
func (r *Recorder) pendingIDs() []string {
	var ids []string
	for id := range r.pending {
		ids = append(ids, id)
	}
	return ids
}
