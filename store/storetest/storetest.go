// Package storetest is the conformance suite every store.Store
// implementation must pass: the in-memory store now, a Redis one later.
// Each implementation's tests call Run with a constructor for a fresh,
// empty store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/store"
)

// Run runs the whole table against stores made by newStore, one fresh
// store per subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"rooms/create-get", testRoomCreateGet},
		{"rooms/duplicate", testRoomDuplicate},
		{"rooms/not-found", testRoomNotFound},
		{"rooms/ensure", testRoomEnsure},
		{"rooms/list-ordered", testRoomListOrdered},
		{"rooms/delete-keeps-sessions", testRoomDeleteKeepsSessions},
		{"rooms/copies", testRoomCopies},
		{"sessions/create-get", testSessionCreateGet},
		{"sessions/created-at-default", testSessionCreatedAtDefault},
		{"sessions/duplicate", testSessionDuplicate},
		{"sessions/not-found", testSessionNotFound},
		{"sessions/delete", testSessionDelete},
		{"sessions/copies", testSessionCopies},
		{"sessions/update-atomic", testSessionUpdateAtomic},
		{"sessions/update-abort", testSessionUpdateAbort},
		{"sessions/update-keeps-id", testSessionUpdateKeepsID},
		{"sessions/set-state", testSessionSetState},
		{"sessions/closed-readable", testSessionClosedReadable},
		{"sessions/filters", testSessionFilters},
		{"sessions/ordering", testSessionOrdering},
		{"limits/rooms-atomic", testRoomLimitAtomic},
		{"rooms/update", testRoomUpdate},
		{"limits/sessions-per-room-atomic", testSessionLimitAtomic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// t0 is a fixed UTC instant without a monotonic reading, so values
// survive a serialising store unchanged.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// sampleSession is a session with every field set, maps and slices included.
func sampleSession(id string) store.Session {
	return store.Session{
		ID:           id,
		Room:         "lobby",
		Role:         store.RolePublisher,
		UserID:       "alice",
		Metadata:     map[string]string{"device": "obs"},
		State:        store.StateConnected,
		Transitions:  []store.Transition{{State: store.StateNew, At: t0}, {State: store.StateConnected, At: t0.Add(time.Second)}},
		CreatedAt:    t0,
		UpdatedAt:    t0.Add(time.Second),
		Lease:        store.Lease{LocalPort: 10111, PublicAddr: "203.0.113.7:20111"},
		RemoteAddrs:  []string{"198.51.100.2:50000"},
		SelectedPair: "host 127.0.0.1:10111 <-> host 127.0.0.1:50000",
		Counters:     store.Counters{PacketsIn: 1, BytesIn: 2, PacketsOut: 3, BytesOut: 4},
		PublisherID:  "",
		Codecs:       []string{"video/VP8", "audio/opus"},
		Events:       []store.Event{{At: t0, Kind: "offer", Detail: "3 candidates"}},
		Node:         "node-1",
	}
}

// sameSession compares sessions by their JSON form (how any store may keep
// them).
func sameSession(t *testing.T, got, want store.Session) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Fatalf("session differs\n got: %s\nwant: %s", g, w)
	}
}

func sameRoom(t *testing.T, got, want store.Room) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("room differs\n got: %s\nwant: %s", g, w)
	}
}

func mustCreateSession(t *testing.T, s store.Store, sess store.Session) {
	t.Helper()
	if err := s.CreateSession(ctx(t), sess, 0); err != nil {
		t.Fatalf("CreateSession(%s): %v", sess.ID, err)
	}
}

func mustGetSession(t *testing.T, s store.Store, id string) store.Session {
	t.Helper()
	got, err := s.GetSession(ctx(t), id)
	if err != nil {
		t.Fatalf("GetSession(%s): %v", id, err)
	}
	return got
}

func mustCreateRoom(t *testing.T, s store.Store, r store.Room) store.Room {
	t.Helper()
	got, err := s.CreateRoom(ctx(t), r, 0)
	if err != nil {
		t.Fatalf("CreateRoom(%s): %v", r.Name, err)
	}
	return got
}

func testRoomCreateGet(t *testing.T, s store.Store) {
	want := store.Room{
		Name: "lobby", CreatedAt: t0, Metadata: map[string]string{"topic": "demo"},
		PublishToken: "p", ViewToken: "v", AutoCreated: true,
	}
	sameRoom(t, mustCreateRoom(t, s, want), want)
	got, err := s.GetRoom(ctx(t), "lobby")
	if err != nil {
		t.Fatal(err)
	}
	sameRoom(t, got, want)

	// A zero CreatedAt is filled in by the store.
	r := mustCreateRoom(t, s, store.Room{Name: "fresh"})
	if r.CreatedAt.IsZero() {
		t.Fatal("CreatedAt not set")
	}
	if got, _ := s.GetRoom(ctx(t), "fresh"); !got.CreatedAt.Equal(r.CreatedAt) {
		t.Fatalf("stored CreatedAt %v, returned %v", got.CreatedAt, r.CreatedAt)
	}
}

func testRoomDuplicate(t *testing.T, s store.Store) {
	mustCreateRoom(t, s, store.Room{Name: "lobby", ViewToken: "first"})
	_, err := s.CreateRoom(ctx(t), store.Room{Name: "lobby", ViewToken: "second"}, 0)
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate CreateRoom: %v, want ErrExists", err)
	}
	got, _ := s.GetRoom(ctx(t), "lobby")
	if got.ViewToken != "first" {
		t.Fatalf("duplicate overwrote the room: %+v", got)
	}
}

func testRoomNotFound(t *testing.T, s store.Store) {
	if _, err := s.GetRoom(ctx(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRoom: %v, want ErrNotFound", err)
	}
	if err := s.DeleteRoom(ctx(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteRoom: %v, want ErrNotFound", err)
	}
}

func testRoomEnsure(t *testing.T, s store.Store) {
	r, created, err := s.EnsureRoom(ctx(t), store.Room{Name: "lobby", AutoCreated: true, CreatedAt: t0}, 0)
	if err != nil || !created {
		t.Fatalf("first EnsureRoom: created=%v err=%v", created, err)
	}
	if !r.AutoCreated || r.Name != "lobby" {
		t.Fatalf("first EnsureRoom returned %+v", r)
	}
	r2, created, err := s.EnsureRoom(ctx(t), store.Room{Name: "lobby", ViewToken: "other"}, 0)
	if err != nil || created {
		t.Fatalf("second EnsureRoom: created=%v err=%v", created, err)
	}
	sameRoom(t, r2, r) // the existing room, not the argument
	if rooms, _ := s.ListRooms(ctx(t)); len(rooms) != 1 {
		t.Fatalf("%d rooms, want 1", len(rooms))
	}
}

func testRoomListOrdered(t *testing.T, s store.Store) {
	rooms, err := s.ListRooms(ctx(t))
	if err != nil || len(rooms) != 0 {
		t.Fatalf("empty store: %v rooms, err %v", len(rooms), err)
	}
	for _, n := range []string{"c", "a", "b"} {
		mustCreateRoom(t, s, store.Room{Name: n})
	}
	rooms, err = s.ListRooms(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rooms {
		names = append(names, r.Name)
	}
	if fmt.Sprint(names) != "[a b c]" {
		t.Fatalf("order %v, want [a b c]", names)
	}
}

func testRoomDeleteKeepsSessions(t *testing.T, s store.Store) {
	mustCreateRoom(t, s, store.Room{Name: "lobby"})
	mustCreateSession(t, s, sampleSession("s1"))
	if err := s.DeleteRoom(ctx(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRoom(ctx(t), "lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted room: %v", err)
	}
	if err := s.DeleteRoom(ctx(t), "lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteRoom: %v", err)
	}
	mustGetSession(t, s, "s1") // ending sessions is the caller's job
}

func testRoomCopies(t *testing.T, s store.Store) {
	in := store.Room{Name: "lobby", CreatedAt: t0, Metadata: map[string]string{"k": "v"}}
	created := mustCreateRoom(t, s, in)
	in.Metadata["k"] = "mutated input"
	created.Metadata["k"] = "mutated create result"
	got, _ := s.GetRoom(ctx(t), "lobby")
	got.Metadata["k"] = "mutated get result"
	list, _ := s.ListRooms(ctx(t))
	list[0].Metadata["k"] = "mutated list result"
	ensured, _, _ := s.EnsureRoom(ctx(t), store.Room{Name: "lobby"}, 0)
	ensured.Metadata["k"] = "mutated ensure result"
	again, _ := s.GetRoom(ctx(t), "lobby")
	if again.Metadata["k"] != "v" {
		t.Fatalf("stored room shares memory with a caller: %+v", again)
	}
}

func testSessionCreateGet(t *testing.T, s store.Store) {
	want := sampleSession("s1")
	mustCreateSession(t, s, want)
	sameSession(t, mustGetSession(t, s, "s1"), want)
}

func testSessionCreatedAtDefault(t *testing.T, s store.Store) {
	mustCreateSession(t, s, store.Session{ID: "s1", Room: "lobby", Role: store.RoleViewer, State: store.StateNew})
	got := mustGetSession(t, s, "s1")
	if got.CreatedAt.IsZero() {
		t.Fatal("CreatedAt not set")
	}
}

func testSessionDuplicate(t *testing.T, s store.Store) {
	mustCreateSession(t, s, sampleSession("s1"))
	dup := sampleSession("s1")
	dup.UserID = "mallory"
	if err := s.CreateSession(ctx(t), dup, 0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate CreateSession: %v, want ErrExists", err)
	}
	if got := mustGetSession(t, s, "s1"); got.UserID != "alice" {
		t.Fatalf("duplicate overwrote the session: %+v", got)
	}
}

func testSessionNotFound(t *testing.T, s store.Store) {
	if _, err := s.GetSession(ctx(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSession: %v", err)
	}
	called := false
	_, err := s.UpdateSession(ctx(t), "nope", func(*store.Session) error { called = true; return nil })
	if !errors.Is(err, store.ErrNotFound) || called {
		t.Fatalf("UpdateSession: %v (fn called %v)", err, called)
	}
	if err := s.DeleteSession(ctx(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteSession: %v", err)
	}
}

func testSessionDelete(t *testing.T, s store.Store) {
	mustCreateSession(t, s, sampleSession("s1"))
	if err := s.DeleteSession(ctx(t), "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx(t), "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSession after delete: %v", err)
	}
	if err := s.DeleteSession(ctx(t), "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteSession: %v", err)
	}
	if list, _ := s.ListSessions(ctx(t), store.SessionFilter{IncludeClosed: true}); len(list) != 0 {
		t.Fatalf("deleted session still listed: %+v", list)
	}
	// The id is free again.
	mustCreateSession(t, s, sampleSession("s1"))
}

// mutate scribbles over every map and slice of s.
func mutate(s *store.Session) {
	s.Metadata["device"] = "mutated"
	s.Transitions[0].State = store.StateFailed
	s.RemoteAddrs[0] = "mutated"
	s.Codecs[0] = "mutated"
	s.Events[0].Kind = "mutated"
}

func testSessionCopies(t *testing.T, s store.Store) {
	want := sampleSession("s1")
	in := sampleSession("s1")
	mustCreateSession(t, s, in)
	mutate(&in)

	got := mustGetSession(t, s, "s1")
	mutate(&got)

	var kept *store.Session
	updated, err := s.UpdateSession(ctx(t), "s1", func(sess *store.Session) error {
		kept = sess
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mutate(&updated)
	mutate(kept) // fn's pointer, used after UpdateSession returned

	list, _ := s.ListSessions(ctx(t), store.SessionFilter{})
	if len(list) != 1 {
		t.Fatalf("%d sessions listed", len(list))
	}
	mutate(&list[0])

	sameSession(t, mustGetSession(t, s, "s1"), want)
}

// testSessionUpdateAtomic runs 50 goroutines x 20 read-modify-write
// updates; any lost update shows in the totals (run with -race).
func testSessionUpdateAtomic(t *testing.T, s store.Store) {
	const workers, each = 50, 20
	mustCreateSession(t, s, store.Session{ID: "s1", Room: "lobby", Role: store.RolePublisher, State: store.StateNew, CreatedAt: t0})
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := s.UpdateSession(c, "s1", func(sess *store.Session) error {
					sess.Counters.PacketsIn++
					sess.Events = append(sess.Events, store.Event{At: t0, Kind: "tick"})
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := mustGetSession(t, s, "s1")
	if got.Counters.PacketsIn != workers*each || len(got.Events) != workers*each {
		t.Fatalf("packets_in %d, events %d, want %d each", got.Counters.PacketsIn, len(got.Events), workers*each)
	}
}

var errAbort = errors.New("abort")

func testSessionUpdateAbort(t *testing.T, s store.Store) {
	want := sampleSession("s1")
	mustCreateSession(t, s, want)
	_, err := s.UpdateSession(ctx(t), "s1", func(sess *store.Session) error {
		sess.Counters.PacketsIn = 999
		sess.SetState(store.StateClosed, t0.Add(time.Hour))
		mutate(sess)
		return fmt.Errorf("wrapped: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("UpdateSession: %v, want fn's error", err)
	}
	sameSession(t, mustGetSession(t, s, "s1"), want)
}

func testSessionUpdateKeepsID(t *testing.T, s store.Store) {
	mustCreateSession(t, s, sampleSession("s1"))
	got, err := s.UpdateSession(ctx(t), "s1", func(sess *store.Session) error {
		sess.ID = "s2"
		sess.UserID = "bob"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "s1" || got.UserID != "bob" {
		t.Fatalf("returned %s/%s, want s1/bob", got.ID, got.UserID)
	}
	if _, err := s.GetSession(ctx(t), "s2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("id changed by fn: %v", err)
	}
	if mustGetSession(t, s, "s1").UserID != "bob" {
		t.Fatal("update lost")
	}
}

func testSessionSetState(t *testing.T, s store.Store) {
	mustCreateSession(t, s, store.Session{ID: "s1", Room: "lobby", Role: store.RoleViewer, CreatedAt: t0})
	steps := []struct {
		state   store.State
		changed bool
	}{
		{store.StateNew, true},
		{store.StateNew, false}, // same state: no transition
		{store.StateConnecting, true},
		{store.StateConnected, true},
		{store.StateDisconnected, true},
		{store.StateConnected, true},
		{store.StateClosed, true},
		{store.StateConnected, false}, // nothing leaves closed
		{store.StateClosed, false},
	}
	var wantTransitions []store.Transition
	for i, st := range steps {
		at := t0.Add(time.Duration(i+1) * time.Second)
		var changed bool
		got, err := s.UpdateSession(ctx(t), "s1", func(sess *store.Session) error {
			changed = sess.SetState(st.state, at)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if changed != st.changed {
			t.Fatalf("step %d: SetState(%s) = %v, want %v", i, st.state, changed, st.changed)
		}
		if st.changed {
			wantTransitions = append(wantTransitions, store.Transition{State: st.state, At: at})
			if !got.UpdatedAt.Equal(at) {
				t.Fatalf("step %d: UpdatedAt %v, want %v", i, got.UpdatedAt, at)
			}
		}
	}
	got, err := s.GetSession(ctx(t), "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateClosed {
		t.Fatalf("state %s, want closed", got.State)
	}
	g, _ := json.Marshal(got.Transitions)
	w, _ := json.Marshal(wantTransitions)
	if string(g) != string(w) {
		t.Fatalf("transitions\n got %s\nwant %s", g, w)
	}
}

func testSessionClosedReadable(t *testing.T, s store.Store) {
	mustCreateSession(t, s, sampleSession("s1"))
	if _, err := s.UpdateSession(ctx(t), "s1", func(sess *store.Session) error {
		sess.SetState(store.StateClosed, time.Now())
		sess.CloseReason = "ice failed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := mustGetSession(t, s, "s1") // its diagnosis must stay readable
	if got.State != store.StateClosed || got.CloseReason != "ice failed" {
		t.Fatalf("got %+v", got)
	}
}

func ids(list []store.Session) string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return fmt.Sprint(out)
}

func testSessionFilters(t *testing.T, s store.Store) {
	for i, sess := range []store.Session{
		{ID: "a", Room: "r1", Role: store.RolePublisher, State: store.StateConnected},
		{ID: "b", Room: "r1", Role: store.RoleViewer, State: store.StateConnected},
		{ID: "c", Room: "r1", Role: store.RoleViewer, State: store.StateClosed},
		{ID: "d", Room: "r2", Role: store.RoleViewer, State: store.StateConnecting},
		{ID: "e", Room: "r2", Role: store.RolePublisher, State: store.StateClosed},
	} {
		sess.CreatedAt = t0.Add(time.Duration(i) * time.Second)
		mustCreateSession(t, s, sess)
	}
	for _, tc := range []struct {
		f    store.SessionFilter
		want string
	}{
		{store.SessionFilter{}, "[a b d]"},
		{store.SessionFilter{IncludeClosed: true}, "[a b c d e]"},
		{store.SessionFilter{State: store.StateClosed}, "[c e]"},
		{store.SessionFilter{Room: "r1"}, "[a b]"},
		{store.SessionFilter{Room: "r1", IncludeClosed: true}, "[a b c]"},
		{store.SessionFilter{Role: store.RoleViewer}, "[b d]"},
		{store.SessionFilter{Role: store.RoleViewer, IncludeClosed: true}, "[b c d]"},
		{store.SessionFilter{State: store.StateConnected}, "[a b]"},
		{store.SessionFilter{State: store.StateConnected, IncludeClosed: true}, "[a b]"},
		{store.SessionFilter{Room: "r2", Role: store.RolePublisher, State: store.StateClosed}, "[e]"},
		{store.SessionFilter{Room: "r3", IncludeClosed: true}, "[]"},
	} {
		list, err := s.ListSessions(ctx(t), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(list); got != tc.want {
			t.Errorf("ListSessions(%+v) = %s, want %s", tc.f, got, tc.want)
		}
		n, err := s.CountSessions(ctx(t), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(list) {
			t.Errorf("CountSessions(%+v) = %d, ListSessions has %d", tc.f, n, len(list))
		}
	}
}

func testSessionOrdering(t *testing.T, s store.Store) {
	// Created out of order; "b1" and "b2" share a CreatedAt and sort by id.
	for _, c := range []struct {
		id  string
		sec int
	}{{"c", 3}, {"b2", 2}, {"a", 1}, {"b1", 2}, {"d", 4}} {
		mustCreateSession(t, s, store.Session{
			ID: c.id, Room: "r", Role: store.RoleViewer, State: store.StateNew,
			CreatedAt: t0.Add(time.Duration(c.sec) * time.Second),
		})
	}
	list, err := s.ListSessions(ctx(t), store.SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list); got != "[a b1 b2 c d]" {
		t.Fatalf("order %s, want [a b1 b2 c d]", got)
	}
}

// testRoomLimitAtomic creates rooms from many goroutines at once: exactly
// maxRooms succeed, whether made by CreateRoom or EnsureRoom, and the rest
// get a *LimitError naming the limit.
func testRoomLimitAtomic(t *testing.T, s store.Store) {
	const maxRooms, tries = 5, 40
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := store.Room{Name: fmt.Sprintf("room-%02d", i)}
			if i%2 == 0 {
				_, errs[i] = s.CreateRoom(ctx(t), r, maxRooms)
			} else {
				_, _, errs[i] = s.EnsureRoom(ctx(t), r, maxRooms)
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var le *store.LimitError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &le) && errors.Is(err, store.ErrLimit) && le.Limit == store.LimitRooms && le.Max == maxRooms:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	rooms, _ := s.ListRooms(ctx(t))
	if ok != maxRooms || len(rooms) != maxRooms {
		t.Fatalf("%d creations succeeded, %d rooms exist; want %d", ok, len(rooms), maxRooms)
	}
	// An existing room is still returned by EnsureRoom at the limit.
	if _, created, err := s.EnsureRoom(ctx(t), rooms[0], maxRooms); err != nil || created {
		t.Fatalf("EnsureRoom of an existing room at the limit: created=%v err=%v", created, err)
	}
}

// testSessionLimitAtomic: concurrent session creations in one room never
// exceed the limit; closed sessions do not count, other rooms are apart.
func testSessionLimitAtomic(t *testing.T, s store.Store) {
	const maxLive, tries = 4, 30
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.CreateSession(ctx(t), store.Session{ID: fmt.Sprintf("s%02d", i), Room: "lobby", Role: store.RoleViewer, State: store.StateNew}, maxLive)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var le *store.LimitError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &le) && le.Limit == store.LimitSessionsPerRoom && le.Max == maxLive:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok != maxLive {
		t.Fatalf("%d sessions created, want %d", ok, maxLive)
	}
	if err := s.CreateSession(ctx(t), store.Session{ID: "other", Room: "hall", State: store.StateNew}, maxLive); err != nil {
		t.Fatalf("another room is not limited by lobby's count: %v", err)
	}
	live, _ := s.ListSessions(ctx(t), store.SessionFilter{Room: "lobby"})
	if _, err := s.UpdateSession(ctx(t), live[0].ID, func(x *store.Session) error {
		x.SetState(store.StateClosed, t0)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx(t), store.Session{ID: "after-close", Room: "lobby", State: store.StateNew}, maxLive); err != nil {
		t.Fatalf("a closed session frees its place: %v", err)
	}
}

// testRoomUpdate: UpdateRoom changes a room atomically, keeps its name,
// aborts on fn's error and answers ErrNotFound for a missing room.
func testRoomUpdate(t *testing.T, s store.Store) {
	mustCreateRoom(t, s, store.Room{Name: "lobby", AutoCreated: true})
	got, err := s.UpdateRoom(ctx(t), "lobby", func(r *store.Room) error {
		r.AutoCreated, r.ViewToken, r.Name = false, "view-token-1", "renamed"
		return nil
	})
	if err != nil || got.Name != "lobby" || got.AutoCreated || got.ViewToken != "view-token-1" {
		t.Fatalf("UpdateRoom: %+v %v", got, err)
	}
	stop := errors.New("stop")
	if _, err := s.UpdateRoom(ctx(t), "lobby", func(r *store.Room) error { r.ViewToken = "x"; return stop }); !errors.Is(err, stop) {
		t.Fatalf("aborted update: %v", err)
	}
	if r, _ := s.GetRoom(ctx(t), "lobby"); r.ViewToken != "view-token-1" {
		t.Fatalf("an aborted update changed the room: %+v", r)
	}
	if _, err := s.UpdateRoom(ctx(t), "nowhere", func(*store.Room) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing room: %v", err)
	}
}
