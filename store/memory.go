package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Defaults for MemoryOptions.
const (
	// DefaultRetention keeps a closed session readable long enough for
	// someone to open its diagnosis after "connection failed", without
	// letting a busy node accumulate records forever.
	DefaultRetention = 10 * time.Minute
	// DefaultMaxClosed caps retained closed sessions (a few KB each, so
	// tens of MB at most) whatever the churn within the retention period.
	DefaultMaxClosed = 10000
	// DefaultMaxClosedBytes caps what retained closed sessions weigh
	// (their timelines, metadata and addresses, roughly): a client sending
	// huge offers must not make 10,000 records of 100 KB each.
	DefaultMaxClosedBytes = 64 << 20
)

// MemoryOptions configure NewMemory. Zero values take the defaults.
type MemoryOptions struct {
	// Retention is how long a closed session stays readable after the
	// store saw it close. Default DefaultRetention.
	Retention time.Duration
	// MaxClosed caps the number of closed sessions kept; the oldest closed
	// are forgotten first. Default DefaultMaxClosed.
	MaxClosed int
	// MaxClosedBytes caps their approximate size in bytes, the same way.
	// Default DefaultMaxClosedBytes.
	MaxClosedBytes int
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// closedMark records when the store saw a session close. seq tells a
// current mark from a stale queue entry left by a session that was
// reopened or deleted (times alone can repeat under a fake clock).
type closedMark struct {
	id   string
	at   time.Time
	seq  uint64
	size int
}

// Memory is the in-process Store: maps under one mutex. Every value that
// crosses its API is deep-copied, so callers never share memory with it.
type Memory struct {
	retention time.Duration
	maxClosed int
	maxBytes  int
	now       func() time.Time

	mu       sync.RWMutex
	rooms    map[string]Room
	sessions map[string]Session
	// closed holds the current mark of every closed session; queue holds
	// marks in the order sessions closed (oldest first, possibly stale), so
	// pruning pops from the front instead of scanning every session.
	closed      map[string]closedMark
	queue       []closedMark
	nextSeq     uint64
	closedBytes int
}

var _ Store = (*Memory)(nil)

// errEmptyKey guards against records that could never be addressed.
var errEmptyKey = errors.New("store: empty name or id")

// NewMemory returns an empty in-memory store.
func NewMemory(opts MemoryOptions) *Memory {
	m := &Memory{
		retention: opts.Retention,
		maxClosed: opts.MaxClosed,
		maxBytes:  opts.MaxClosedBytes,
		now:       opts.Now,
		rooms:     make(map[string]Room),
		sessions:  make(map[string]Session),
		closed:    make(map[string]closedMark),
	}
	if m.retention <= 0 {
		m.retention = DefaultRetention
	}
	if m.maxBytes <= 0 {
		m.maxBytes = DefaultMaxClosedBytes
	}
	if m.maxClosed <= 0 {
		m.maxClosed = DefaultMaxClosed
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// CloneRoom returns a deep copy of r.
func CloneRoom(r Room) Room {
	r.Metadata = maps.Clone(r.Metadata)
	return r
}

// CloneSession returns a deep copy of s: no map or slice is shared.
func CloneSession(s Session) Session {
	s.Metadata = maps.Clone(s.Metadata)
	s.Transitions = slices.Clone(s.Transitions)
	s.RemoteAddrs = slices.Clone(s.RemoteAddrs)
	s.Codecs = slices.Clone(s.Codecs)
	s.Events = slices.Clone(s.Events)
	return s
}

// CreateRoom stores r; a zero CreatedAt is set to now.
func (m *Memory) CreateRoom(ctx context.Context, r Room, maxRooms int) (Room, error) {
	if err := ctx.Err(); err != nil {
		return Room{}, err
	}
	if r.Name == "" {
		return Room{}, errEmptyKey
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rooms[r.Name]; ok {
		return Room{}, ErrExists
	}
	if maxRooms > 0 && len(m.rooms) >= maxRooms {
		return Room{}, &LimitError{Limit: LimitRooms, Max: maxRooms, Count: len(m.rooms)}
	}
	return m.putRoom(r), nil
}

// putRoom stores a copy of r and returns another; the caller holds mu.
func (m *Memory) putRoom(r Room) Room {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = m.now()
	}
	m.rooms[r.Name] = CloneRoom(r)
	return CloneRoom(r)
}

// EnsureRoom returns the existing room, or creates r and reports true.
func (m *Memory) EnsureRoom(ctx context.Context, r Room, maxRooms int) (Room, bool, error) {
	if err := ctx.Err(); err != nil {
		return Room{}, false, err
	}
	if r.Name == "" {
		return Room{}, false, errEmptyKey
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if got, ok := m.rooms[r.Name]; ok {
		return CloneRoom(got), false, nil
	}
	if maxRooms > 0 && len(m.rooms) >= maxRooms {
		return Room{}, false, &LimitError{Limit: LimitRooms, Max: maxRooms, Count: len(m.rooms)}
	}
	return m.putRoom(r), true, nil
}

// UpdateRoom runs fn on a copy of the room under the lock and stores it
// unless fn fails. The name cannot be changed.
func (m *Memory) UpdateRoom(ctx context.Context, name string, fn func(*Room) error) (Room, error) {
	if err := ctx.Err(); err != nil {
		return Room{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.rooms[name]
	if !ok {
		return Room{}, ErrNotFound
	}
	r := CloneRoom(old)
	if err := fn(&r); err != nil {
		return Room{}, err
	}
	r.Name = name
	m.rooms[name] = CloneRoom(r)
	return CloneRoom(r), nil
}

// GetRoom returns the room or ErrNotFound.
func (m *Memory) GetRoom(ctx context.Context, name string) (Room, error) {
	if err := ctx.Err(); err != nil {
		return Room{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.rooms[name]
	if !ok {
		return Room{}, ErrNotFound
	}
	return CloneRoom(r), nil
}

// ListRooms returns every room ordered by name.
func (m *Memory) ListRooms(ctx context.Context) ([]Room, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	out := make([]Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		out = append(out, CloneRoom(r))
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteRoom removes the room, leaving its sessions to their owners.
func (m *Memory) DeleteRoom(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rooms[name]; !ok {
		return ErrNotFound
	}
	delete(m.rooms, name)
	return nil
}

// CreateSession stores s; a zero CreatedAt is set to now and a zero
// UpdatedAt to CreatedAt.
func (m *Memory) CreateSession(ctx context.Context, s Session, maxLiveInRoom int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.ID == "" {
		return errEmptyKey
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.pruneLocked(now)
	if _, ok := m.sessions[s.ID]; ok {
		return ErrExists
	}
	if maxLiveInRoom > 0 {
		live := 0
		for _, o := range m.sessions {
			if o.Room == s.Room && o.State != StateClosed {
				live++
			}
		}
		if live >= maxLiveInRoom {
			return &LimitError{Limit: LimitSessionsPerRoom, Max: maxLiveInRoom, Count: live}
		}
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = s.CreatedAt
	}
	m.sessions[s.ID] = CloneSession(s)
	m.trackClosedLocked(s.ID, false, s.State == StateClosed, now)
	m.pruneLocked(now)
	return nil
}

// GetSession returns the session, or ErrNotFound when it does not exist or
// closed longer than the retention period ago (even if not yet pruned).
func (m *Memory) GetSession(ctx context.Context, id string) (Session, error) {
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[id]
	if !ok || m.expiredLocked(id, now) {
		return Session{}, ErrNotFound
	}
	return CloneSession(s), nil
}

// UpdateSession runs fn on a copy of the session under the store's lock and
// stores the copy unless fn fails. The id cannot be changed.
func (m *Memory) UpdateSession(ctx context.Context, id string, fn func(*Session) error) (Session, error) {
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.pruneLocked(now)
	old, ok := m.sessions[id]
	if !ok {
		return Session{}, ErrNotFound
	}
	s := CloneSession(old)
	if err := fn(&s); err != nil {
		return Session{}, err
	}
	s.ID = id
	// fn may keep its pointer; store a copy it cannot reach.
	m.sessions[id] = CloneSession(s)
	m.trackClosedLocked(id, old.State == StateClosed, s.State == StateClosed, now)
	m.pruneLocked(now)
	return CloneSession(s), nil
}

// ListSessions returns the matching sessions ordered by CreatedAt, then ID.
func (m *Memory) ListSessions(ctx context.Context, f SessionFilter) ([]Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.pruneLocked(m.now())
	out := make([]Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		if matches(s, f) {
			out = append(out, CloneSession(s))
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// CountSessions counts the matching sessions without copying them.
func (m *Memory) CountSessions(ctx context.Context, f SessionFilter) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(m.now())
	n := 0
	for _, s := range m.sessions {
		if matches(s, f) {
			n++
		}
	}
	return n, nil
}

// matches applies a SessionFilter: zero fields match all; closed sessions
// only when asked for.
func matches(s Session, f SessionFilter) bool {
	if s.State == StateClosed && !f.IncludeClosed && f.State != StateClosed {
		return false
	}
	return (f.Room == "" || s.Room == f.Room) &&
		(f.State == "" || s.State == f.State) &&
		(f.Role == "" || s.Role == f.Role)
}

// DeleteSession forgets the session.
func (m *Memory) DeleteSession(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.pruneLocked(now)
	if _, ok := m.sessions[id]; !ok {
		return ErrNotFound
	}
	delete(m.sessions, id)
	m.forgetClosedLocked(id) // its queue entry becomes stale
	return nil
}

// trackClosedLocked records a session entering or leaving StateClosed.
func (m *Memory) trackClosedLocked(id string, wasClosed, isClosed bool, now time.Time) {
	switch {
	case isClosed && !wasClosed:
		m.nextSeq++
		mark := closedMark{id: id, at: now, seq: m.nextSeq, size: recordSize(m.sessions[id])}
		m.closed[id] = mark
		m.closedBytes += mark.size
		m.queue = append(m.queue, mark)
	case wasClosed && !isClosed:
		m.forgetClosedLocked(id)
	}
}

// forgetClosedLocked drops id's closed mark and its bytes.
func (m *Memory) forgetClosedLocked(id string) {
	if mark, ok := m.closed[id]; ok {
		m.closedBytes -= mark.size
		delete(m.closed, id)
	}
}

// recordSize estimates what a session record weighs in memory: its
// strings and a fixed overhead per entry, close enough to cap by.
func recordSize(s Session) int {
	n := 512 + len(s.UserID) + len(s.SelectedPair) + len(s.CloseReason)
	for k, v := range s.Metadata {
		n += 32 + len(k) + len(v)
	}
	for _, a := range s.RemoteAddrs {
		n += 16 + len(a)
	}
	for _, e := range s.Events {
		n += 48 + len(e.Kind) + len(e.Detail)
	}
	return n
}

// expiredLocked reports whether id closed more than the retention ago.
func (m *Memory) expiredLocked(id string, now time.Time) bool {
	mark, ok := m.closed[id]
	return ok && now.Sub(mark.at) >= m.retention
}

// pruneLocked forgets closed sessions past the retention period, then the
// oldest closed ones beyond MaxClosed or MaxClosedBytes. Sessions are queued in the order the
// store saw them close, so both checks look only at the front of the queue.
func (m *Memory) pruneLocked(now time.Time) {
	for len(m.queue) > 0 {
		head := m.queue[0]
		cur, ok := m.closed[head.id]
		if ok && cur.seq == head.seq && now.Sub(head.at) < m.retention && len(m.closed) <= m.maxClosed && m.closedBytes <= m.maxBytes {
			break
		}
		m.queue[0] = closedMark{}
		m.queue = m.queue[1:]
		if ok && cur.seq == head.seq {
			m.forgetClosedLocked(head.id)
			delete(m.sessions, head.id)
		}
	}
	// Reslicing from the front never frees the backing array; copy once
	// the live part is small compared with it.
	if cap(m.queue) > 64 && len(m.queue) < cap(m.queue)/4 {
		m.queue = slices.Clone(m.queue)
	}
}
