package handlers

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// Bounds that keep a misbehaving session from growing memory without end.
const (
	// maxTimeline caps a session's timeline: a healthy session records about
	// ten milestones; 256 leaves room for many restarts and state flaps.
	maxTimeline = 256
	// maxPending caps events buffered for a session whose record is not
	// written yet (setup takes milliseconds; a handful of events arrive).
	maxPending = 256
	// pendingTTL drops buffered events of ids never registered. Handlers
	// always register or forget an id before the request ends, so only
	// events arriving after a session was forgotten linger; two minutes is
	// far beyond any request.
	pendingTTL = 2 * time.Minute
)

type recOp int

const (
	opEvent recOp = iota
	opRegister
	opForget
	opSync
)

type recItem struct {
	op   recOp
	ev   media.Event
	id   string
	done chan struct{}
}

type pendingEvents struct {
	since  time.Time
	events []media.Event
}

// Recorder writes the engine's events into the store. media.Engine calls
// OnEvent from Pion goroutines, which must never wait on the store, so
// OnEvent only queues; one goroutine applies events in order.
//
// An event can arrive before the handler has written the session's record
// (the engine emits "offer", "answer", even "closed" during setup). Such
// events are held per session until the handler registers the id (then they
// are applied, in order, before anything later) or forgets it (they are
// dropped). Because register and forget travel through the same queue as
// events, ordering holds without locks around the store.
type Recorder struct {
	st  store.Store
	log *slog.Logger

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []recItem
	closed bool
	done   chan struct{}

	// Owned by run.
	known   map[string]bool
	pending map[string]*pendingEvents
	// gone holds ids that ended (closed or forgotten) for pendingTTL, so
	// stragglers (a last counters event after "closed") are dropped rather
	// than held as if the record were still to come.
	gone      map[string]time.Time
	lastSweep time.Time

	// onClosed, when set, is called (from run) for each closed session.
	onClosed atomic.Pointer[func(id string)]
}

// NewRecorder starts a recorder writing into st. Close stops it.
func NewRecorder(st store.Store, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{
		st:      st,
		log:     log,
		done:    make(chan struct{}),
		known:   map[string]bool{},
		pending: map[string]*pendingEvents{},
		gone:    map[string]time.Time{},
	}
	r.cond = sync.NewCond(&r.mu)
	go r.run()
	return r
}

// OnEvent queues ev. It never blocks on the store; hand it to
// media.NewEngine.
func (r *Recorder) OnEvent(ev media.Event) { r.push(recItem{op: opEvent, ev: ev}) }

// register says the session's record now exists: held events are applied.
func (r *Recorder) register(id string) { r.push(recItem{op: opRegister, id: id}) }

// forget says no record will be written for id: held events are dropped.
func (r *Recorder) forget(id string) { r.push(recItem{op: opForget, id: id}) }

// Sync waits until every event queued before the call has been applied. Tests
// and shutdown use it.
func (r *Recorder) Sync() {
	done := make(chan struct{})
	if !r.push(recItem{op: opSync, done: done}) {
		return
	}
	select {
	case <-done:
	case <-r.done:
	}
}

func (r *Recorder) push(it recItem) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.queue = append(r.queue, it)
	r.cond.Signal()
	return true
}

// Close applies what is queued and stops the recorder. Call it after the
// engine is closed, so the final "closed" events are recorded. Idempotent.
func (r *Recorder) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.cond.Signal()
	}
	r.mu.Unlock()
	<-r.done
}

func (r *Recorder) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		for len(r.queue) == 0 && !r.closed {
			r.cond.Wait()
		}
		batch := r.queue
		r.queue = nil
		closed := r.closed
		r.mu.Unlock()
		for _, it := range batch {
			r.handle(it)
		}
		if closed && len(batch) == 0 {
			return
		}
	}
}

func (r *Recorder) handle(it recItem) {
	now := time.Now()
	switch it.op {
	case opSync:
		close(it.done)
	case opRegister:
		r.known[it.id] = true
		if p := r.pending[it.id]; p != nil {
			delete(r.pending, it.id)
			for _, ev := range p.events {
				r.apply(ev)
				if ev.Kind == media.EventClosed {
					delete(r.known, it.id)
					r.gone[it.id] = now
				}
			}
		}
	case opForget:
		delete(r.pending, it.id)
		delete(r.known, it.id)
		r.gone[it.id] = now
	case opEvent:
		id := it.ev.SessionID
		if r.known[id] {
			r.apply(it.ev)
			if it.ev.Kind == media.EventClosed {
				delete(r.known, id)
				r.gone[id] = now
			}
			return
		}
		if _, ok := r.gone[id]; ok {
			return
		}
		p := r.pending[id]
		if p == nil {
			p = &pendingEvents{since: now}
			r.pending[id] = p
		}
		if len(p.events) < maxPending {
			p.events = append(p.events, it.ev)
		}
	}
	if now.Sub(r.lastSweep) > pendingTTL/4 {
		r.lastSweep = now
		for id, p := range r.pending {
			if now.Sub(p.since) > pendingTTL {
				delete(r.pending, id)
			}
		}
		for id, at := range r.gone {
			if now.Sub(at) > pendingTTL {
				delete(r.gone, id)
			}
		}
	}
}

// apply writes one event into the session's record.
func (r *Recorder) apply(ev media.Event) {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	_, err := r.st.UpdateSession(context.Background(), ev.SessionID, func(s *store.Session) error {
		s.UpdatedAt = at
		switch ev.Kind {
		case media.EventState:
			if s.SetState(store.State(ev.State), at) {
				addTimeline(s, store.Event{At: at, Kind: "state", Detail: ev.State})
			}
		case media.EventTimeline:
			addTimeline(s, store.Event{At: at, Kind: ev.Name, Detail: ev.Detail})
		case media.EventRemoteAddr:
			s.AddRemoteAddr(ev.Detail)
		case media.EventSelectedPair:
			s.SelectedPair = ev.Detail
			addTimeline(s, store.Event{At: at, Kind: "selected-pair", Detail: ev.Detail})
		case media.EventCounters:
			s.Counters = store.Counters(ev.Counters)
		case media.EventClosed:
			if s.CloseReason == "" {
				s.CloseReason = ev.Detail
			}
			if s.SetState(store.StateClosed, at) {
				addTimeline(s, store.Event{At: at, Kind: "closed", Detail: ev.Detail})
			}
		}
		return nil
	})
	if err != nil {
		r.log.Warn("recording session event failed", "session", ev.SessionID, "kind", ev.Kind, "err", err)
	}
	if ev.Kind == media.EventClosed {
		if f := r.onClosed.Load(); f != nil {
			(*f)(ev.SessionID)
		}
	}
}

func addTimeline(s *store.Session, e store.Event) {
	if len(s.Events) >= maxTimeline {
		return
	}
	s.Events = append(s.Events, e)
}
