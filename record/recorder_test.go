package record

import (
	"context"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// TestRecorderAppliesInOrder: the record exists before media starts, the
// engine's events are applied in the order they were queued, a transition
// after "closed" changes nothing, and events of an id without a record are
// dropped without creating one. Observers see each update as before/after.
func TestRecorderAppliesInOrder(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory(store.MemoryOptions{})
	var closedSeen int
	rec := NewRecorder(st, nil, func(before, after store.Session) {
		if before.State != store.StateClosed && after.State == store.StateClosed {
			closedSeen++
		}
	})
	defer rec.Close()
	t0 := time.Now().UTC()
	ev := func(id string, kind media.EventKind, state, detail string, d time.Duration) media.Event {
		return media.Event{SessionID: id, Room: "r", Role: media.RolePublisher, At: t0.Add(d), Kind: kind, State: state, Name: detail, Detail: detail}
	}
	if err := st.CreateSession(ctx, store.Session{ID: "a", Room: "r", Role: store.RolePublisher, State: store.StateNew,
		Transitions: []store.Transition{{State: store.StateNew, At: t0}}, CreatedAt: t0}, 0); err != nil {
		t.Fatal(err)
	}
	rec.OnEvent(ev("a", media.EventState, "connecting", "", 1*time.Millisecond))
	rec.OnEvent(ev("a", media.EventTimeline, "", "answer", 2*time.Millisecond))
	rec.OnEvent(ev("a", media.EventRemoteAddr, "", "127.0.0.1:5000", 3*time.Millisecond))
	rec.OnEvent(ev("a", media.EventClosed, "", "setup timeout", 4*time.Millisecond))
	rec.OnEvent(ev("a", media.EventState, "connected", "", 5*time.Millisecond)) // after closed: ignored
	rec.OnEvent(ev("b", media.EventState, "connecting", "", 0))                 // no record: dropped
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
	if _, err := st.GetSession(ctx, "b"); err == nil {
		t.Errorf("an event without a record created one")
	}
	if closedSeen != 1 {
		t.Errorf("observer saw %d close transitions, want 1", closedSeen)
	}
}

// TestTimelineBounded: a huge detail is cut, and the timeline stops growing
// at MaxTimeline entries.
func TestTimelineBounded(t *testing.T) {
	var s store.Session
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = 'x'
	}
	for range MaxTimeline + 10 {
		Apply(&s, media.Event{Kind: media.EventTimeline, Name: "offer", Detail: string(big)})
	}
	if len(s.Events) != MaxTimeline {
		t.Fatalf("%d timeline entries, want %d", len(s.Events), MaxTimeline)
	}
	if n := len(s.Events[0].Detail); n > MaxDetail+3 {
		t.Fatalf("detail of %d bytes kept, cap %d", n, MaxDetail)
	}
}
