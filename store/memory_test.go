package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/store"
	"github.com/pinhole-rtc/pinhole/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory(store.MemoryOptions{}) })
}

// fakeClock is a settable clock for retention tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// closeSession moves a session to closed through the store, as the
// handlers do when media reports the end.
func closeSession(t *testing.T, s store.Store, id string, at time.Time) {
	t.Helper()
	if _, err := s.UpdateSession(context.Background(), id, func(sess *store.Session) error {
		sess.SetState(store.StateClosed, at)
		return nil
	}); err != nil {
		t.Fatalf("close %s: %v", id, err)
	}
}

func create(t *testing.T, s store.Store, id string, state store.State) {
	t.Helper()
	if err := s.CreateSession(context.Background(), store.Session{ID: id, Room: "r", Role: store.RoleViewer, State: state}, 0); err != nil {
		t.Fatal(err)
	}
}

func listIDs(t *testing.T, s store.Store, f store.SessionFilter) string {
	t.Helper()
	list, err := s.ListSessions(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range list {
		out = append(out, x.ID)
	}
	return fmt.Sprint(out)
}

func TestMemoryDefaults(t *testing.T) {
	clk := newClock()
	m := store.NewMemory(store.MemoryOptions{Now: clk.Now})
	create(t, m, "a", store.StateNew)
	got, err := m.GetSession(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(clk.Now()) || !got.UpdatedAt.Equal(clk.Now()) {
		t.Fatalf("created %v updated %v, want the clock's %v", got.CreatedAt, got.UpdatedAt, clk.Now())
	}
	closeSession(t, m, "a", clk.Now())
	clk.Advance(store.DefaultRetention - time.Second)
	if _, err := m.GetSession(context.Background(), "a"); err != nil {
		t.Fatalf("closed session gone before the default retention: %v", err)
	}
	clk.Advance(time.Second)
	if _, err := m.GetSession(context.Background(), "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("closed session readable after the default retention: %v", err)
	}
}

func TestMemoryRetention(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := store.NewMemory(store.MemoryOptions{Retention: time.Minute, Now: clk.Now})
	create(t, m, "live", store.StateConnected)
	create(t, m, "early", store.StateConnected)
	create(t, m, "late", store.StateConnected)

	closeSession(t, m, "early", clk.Now())
	clk.Advance(30 * time.Second)
	closeSession(t, m, "late", clk.Now())

	clk.Advance(29 * time.Second) // early closed 59 s ago: still readable
	if _, err := m.GetSession(ctx, "early"); err != nil {
		t.Fatalf("early before retention: %v", err)
	}

	clk.Advance(time.Second) // early: 60 s; late: 30 s
	// Reads hide an expired session even before a write prunes it.
	if _, err := m.GetSession(ctx, "early"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("early after retention: %v, want ErrNotFound", err)
	}
	if got := listIDs(t, m, store.SessionFilter{IncludeClosed: true}); got != "[late live]" {
		t.Fatalf("listed %s, want [late live] (same CreatedAt: by id)", got)
	}
	if _, err := m.UpdateSession(ctx, "early", func(*store.Session) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a pruned session: %v", err)
	}

	clk.Advance(time.Hour) // open sessions never expire, however old
	if got := listIDs(t, m, store.SessionFilter{IncludeClosed: true}); got != "[live]" {
		t.Fatalf("listed %s, want [live]", got)
	}
	// A pruned id can be used again.
	create(t, m, "early", store.StateNew)
}

func TestMemoryMaxClosed(t *testing.T) {
	clk := newClock()
	m := store.NewMemory(store.MemoryOptions{MaxClosed: 3, Now: clk.Now})
	create(t, m, "open", store.StateConnected)
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("c%d", i)
		create(t, m, id, store.StateConnected)
		clk.Advance(time.Second)
		closeSession(t, m, id, clk.Now())
	}
	if got := listIDs(t, m, store.SessionFilter{IncludeClosed: true}); got != "[open c3 c4 c5]" {
		t.Fatalf("listed %s, want the open one and the 3 newest closed", got)
	}
	// A session created closed counts too.
	create(t, m, "c6", store.StateClosed)
	if got := listIDs(t, m, store.SessionFilter{State: store.StateClosed}); got != "[c4 c5 c6]" {
		t.Fatalf("listed %s, want [c4 c5 c6]", got)
	}
}

// TestMemoryReopenAndDelete covers the bookkeeping behind pruning: a
// session that fn moves out of closed (bypassing SetState) is no longer
// subject to retention, and deleting a closed session leaves no trace
// that could later prune a new session with the same id.
func TestMemoryReopenAndDelete(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := store.NewMemory(store.MemoryOptions{Retention: time.Minute, Now: clk.Now})

	create(t, m, "x", store.StateConnected)
	closeSession(t, m, "x", clk.Now())
	if _, err := m.UpdateSession(ctx, "x", func(s *store.Session) error {
		s.State = store.StateConnected
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if _, err := m.GetSession(ctx, "x"); err != nil {
		t.Fatalf("reopened session pruned: %v", err)
	}

	create(t, m, "y", store.StateConnected)
	closeSession(t, m, "y", clk.Now())
	if err := m.DeleteSession(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	create(t, m, "y", store.StateConnected)
	clk.Advance(2 * time.Minute)
	if got := listIDs(t, m, store.SessionFilter{}); got != "[x y]" {
		t.Fatalf("listed %s, want [x y]", got)
	}
}

func TestMemoryCancelledContext(t *testing.T) {
	m := store.NewMemory(store.MemoryOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.CreateRoom(ctx, store.Room{Name: "r"}, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateRoom: %v", err)
	}
	if err := m.CreateSession(ctx, store.Session{ID: "s"}, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateSession: %v", err)
	}
}

func TestMemoryEmptyKeys(t *testing.T) {
	m := store.NewMemory(store.MemoryOptions{})
	if _, err := m.CreateRoom(context.Background(), store.Room{}, 0); err == nil {
		t.Fatal("room without a name accepted")
	}
	if err := m.CreateSession(context.Background(), store.Session{}, 0); err == nil {
		t.Fatal("session without an id accepted")
	}
}

// BenchmarkMemoryUpdateSession measures the hot write path (media counters
// and events land here) with many closed sessions retained.
func BenchmarkMemoryUpdateSession(b *testing.B) {
	ctx := context.Background()
	m := store.NewMemory(store.MemoryOptions{})
	for i := 0; i < 5000; i++ {
		id := fmt.Sprintf("closed-%d", i)
		_ = m.CreateSession(ctx, store.Session{ID: id, State: store.StateClosed}, 0)
	}
	_ = m.CreateSession(ctx, store.Session{ID: "live", State: store.StateConnected}, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = m.UpdateSession(ctx, "live", func(s *store.Session) error {
			s.Counters.PacketsIn++
			return nil
		})
	}
}

// TestMemoryClosedBytesCap: closed sessions are also forgotten, oldest
// first, once their timelines weigh more than MaxClosedBytes; live ones
// never are.
func TestMemoryClosedBytesCap(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory(store.MemoryOptions{MaxClosedBytes: 100 << 10})
	big := strings.Repeat("x", 10<<10)
	_ = m.CreateSession(ctx, store.Session{ID: "live", State: store.StateConnected, Events: []store.Event{{Kind: "offer", Detail: big}}}, 0)
	for i := range 30 {
		id := fmt.Sprintf("closed-%02d", i)
		_ = m.CreateSession(ctx, store.Session{ID: id, State: store.StateClosed, Events: []store.Event{{Kind: "offer", Detail: big}}}, 0)
	}
	kept, _ := m.ListSessions(ctx, store.SessionFilter{State: store.StateClosed})
	if len(kept) == 0 || len(kept) > 10 {
		t.Fatalf("%d closed sessions of 10 KiB kept under a 100 KiB cap", len(kept))
	}
	if kept[len(kept)-1].ID != "closed-29" {
		t.Fatalf("the newest closed session was dropped: %s", kept[len(kept)-1].ID)
	}
	if _, err := m.GetSession(ctx, "live"); err != nil {
		t.Fatalf("a live session was dropped: %v", err)
	}
}
