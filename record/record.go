// Package record keeps each session's store record in step with its live
// peer connection, through one path:
//
//   - Sessions.Open creates the record with the request (state new), before
//     media starts, then asks the engine for the peer connection; a refused
//     setup deletes the record again, so bad input leaves nothing behind.
//   - The engine reports what happens through media events; Recorder queues
//     them off Pion's goroutines and Apply, the one function that turns a
//     media event into a record update, writes each into the store.
//   - Sessions.Close ends the peer connection and applies the same "closed"
//     event at once, so a GET right after a DELETE shows the session closed.
//
// Observers (metrics) see every applied update as a before/after pair, so
// counters come from transitions, never from a second reading of events.
package record

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// Bounds that keep a misbehaving session from growing memory without end.
const (
	// MaxTimeline caps a session's timeline: a healthy session records about
	// ten milestones; 256 leaves room for many restarts and state flaps.
	MaxTimeline = 256
	// MaxDetail caps one timeline entry's detail: a few candidate lines
	// fit, while a 60 KB offer cannot make every record 60 KB larger.
	MaxDetail = 2048
)

// Apply writes one media event into a session's record. It is the only
// place a media event becomes part of a record.
func Apply(s *store.Session, ev media.Event) {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	s.UpdatedAt = at
	switch ev.Kind {
	case media.EventState:
		if s.SetState(store.State(ev.State), at) {
			AddTimeline(s, store.Event{At: at, Kind: "state", Detail: ev.State})
		}
	case media.EventTimeline:
		AddTimeline(s, store.Event{At: at, Kind: ev.Name, Detail: ev.Detail})
	case media.EventRemoteAddr:
		s.AddRemoteAddr(ev.Detail)
	case media.EventSelectedPair:
		s.SelectedPair = ev.Detail
		AddTimeline(s, store.Event{At: at, Kind: "selected-pair", Detail: ev.Detail})
	case media.EventCounters:
		s.Counters = store.Counters(ev.Counters)
	case media.EventClosed:
		if s.CloseReason == "" {
			s.CloseReason = ev.Detail
		}
		if s.SetState(store.StateClosed, at) {
			AddTimeline(s, store.Event{At: at, Kind: "closed", Detail: ev.Detail})
		}
	}
}

// AddTimeline appends e to the session's timeline within MaxTimeline
// entries, its detail cut to MaxDetail bytes.
func AddTimeline(s *store.Session, e store.Event) {
	if len(s.Events) >= MaxTimeline {
		return
	}
	if len(e.Detail) > MaxDetail {
		e.Detail = e.Detail[:MaxDetail] + "..."
	}
	s.Events = append(s.Events, e)
}

// Observer is told of every update the Recorder writes: the record before
// and after it. It runs on the Recorder's goroutine (or the caller's, for
// Record) and must not block.
type Observer func(before, after store.Session)

// Recorder writes media events into the store in the order they happened.
// media.Engine calls OnEvent from Pion goroutines, which must never wait on
// the store, so OnEvent only queues; one goroutine applies events in order.
// The record exists before the engine starts (Sessions.Open), so every
// event has a record to go to; one whose record is gone (a refused setup,
// a forgotten session) is dropped.
type Recorder struct {
	st        store.Store
	log       *slog.Logger
	observers []Observer

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []item
	closed bool
	done   chan struct{}
}

type item struct {
	ev   media.Event
	sync chan struct{} // a Sync marker instead of an event
}

// NewRecorder starts a recorder writing into st, telling observers of each
// update. Close stops it.
func NewRecorder(st store.Store, log *slog.Logger, observers ...Observer) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{st: st, log: log, observers: observers, done: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	go r.run()
	return r
}

// OnEvent queues ev. It never blocks on the store: hand it to
// media.NewEngine.
func (r *Recorder) OnEvent(ev media.Event) { r.push(item{ev: ev}) }

// Sync waits until every event queued before the call has been applied.
// Tests, the self-test and shutdown use it.
func (r *Recorder) Sync() {
	done := make(chan struct{})
	if !r.push(item{sync: done}) {
		return
	}
	select {
	case <-done:
	case <-r.done:
	}
}

// Record applies ev now, on the caller's goroutine, through the same path
// as queued events. Handlers use it for what they decide themselves (a
// DELETE closes the record at once).
func (r *Recorder) Record(ctx context.Context, ev media.Event) error {
	var before store.Session
	after, err := r.st.UpdateSession(context.WithoutCancel(ctx), ev.SessionID, func(s *store.Session) error {
		before = *s
		Apply(s, ev)
		return nil
	})
	if err != nil {
		return err
	}
	for _, o := range r.observers {
		o(before, after)
	}
	return nil
}

func (r *Recorder) push(it item) bool {
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
			if it.sync != nil {
				close(it.sync)
				continue
			}
			if err := r.Record(context.Background(), it.ev); err != nil && !errors.Is(err, store.ErrNotFound) {
				r.log.Warn("recording session event failed", "session", it.ev.SessionID, "kind", it.ev.Kind, "err", err)
			}
		}
		if closed && len(batch) == 0 {
			return
		}
	}
}
