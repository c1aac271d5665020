// Package server wires pinhole together: the store, the recorder (and the
// metrics that observe it), the media engine, the session opener, the
// diagnostics and the HTTP handlers. main and every whole-system test build
// pinhole through New, so a new dependency is added in one place.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pinhole-rtc/pinhole/diagnostics"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/metrics"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// Config is what differs between a deployment and a test.
type Config struct {
	// Media configures the engine: ports, public addresses, timeouts.
	Media media.Config
	// HTTP configures the handlers: ICE servers, CORS, tokens, limits.
	HTTP handlers.Config
	// Diagnostics configures the report, the verdicts and the self-test;
	// its port and address fields default to Media's.
	Diagnostics diagnostics.Config
	// Store holds the records; nil is a new in-memory store.
	Store store.Store
	// Web serves the browser app; nil serves no pages.
	Web http.Handler
	// Logger receives every log line; nil is slog.Default().
	Logger *slog.Logger
	// NoMetrics leaves /metrics out (benchmarks run several servers in one
	// process).
	NoMetrics bool
	// RoomIdleTimeout: rooms WHIP/WHEP made on the fly are deleted after
	// this long without a live session (0: DefaultRoomIdleTimeout).
	RoomIdleTimeout time.Duration
}

// DefaultRoomIdleTimeout keeps an empty auto-created room long enough for
// a publisher that reconnects (network change, page reload) to find it
// again, and short enough that junk cannot pile rooms up to --max-rooms.
const DefaultRoomIdleTimeout = 5 * time.Minute

// Server is a wired pinhole: Handler serves HTTP; the parts are exported
// for tests and for main's shutdown.
type Server struct {
	cancel context.CancelFunc
	done   chan struct{}

	Store       store.Store
	Recorder    *record.Recorder
	Engine      *media.Engine
	Sessions    *record.Sessions
	Metrics     *metrics.Metrics
	Diagnostics *diagnostics.Diagnostics
	Handler     http.Handler
	// Events feeds the WHEP and room event streams from record updates.
	Events *handlers.Events
}

// New builds pinhole from cfg. Close releases what it acquired.
func New(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Media.Logger = log
	s := &Server{Store: cfg.Store}
	if s.Store == nil {
		s.Store = store.NewMemory(store.MemoryOptions{})
	}
	dc := cfg.Diagnostics
	if dc.UDPPorts == nil {
		dc.PublicIPs, dc.UDPPorts, dc.PublicPorts, dc.BindIP = cfg.Media.PublicIPs, cfg.Media.Ports, cfg.Media.PublicPorts, cfg.Media.BindIP
	}
	if dc.ICEServers == nil {
		dc.ICEServers = cfg.HTTP.ICEServers
	}
	var observers []record.Observer
	if !cfg.NoMetrics {
		m, err := metrics.New(nil, s.Store, diagnostics.Options{NoPacketAfter: dc.NoPacketAfter, NoMediaAfter: dc.NoMediaAfter})
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		s.Metrics = m
		observers = append(observers, m.Observe)
	}
	s.Events = handlers.NewEvents(log)
	observers = append(observers, s.Events.Observe)
	s.Recorder = record.NewRecorder(s.Store, log, observers...)
	engine, err := media.NewEngine(cfg.Media, s.Recorder.OnEvent)
	if err != nil {
		s.Recorder.Close()
		return nil, fmt.Errorf("--udp-ports: %w", err)
	}
	s.Engine = engine
	if s.Metrics != nil {
		s.Metrics.SetEngine(engine)
	}
	s.Sessions = &record.Sessions{Store: s.Store, Engine: engine, Recorder: s.Recorder,
		Node: cfg.HTTP.Node, MaxSessionsPerRoom: cfg.HTTP.Limits.MaxSessionsPerRoom}
	s.Diagnostics = diagnostics.New(diagnostics.Deps{Store: s.Store, Engine: engine, Sessions: s.Sessions,
		Recorder: s.Recorder, Logger: log, Config: dc})
	deps := handlers.Deps{Store: s.Store, Engine: engine, Sessions: s.Sessions, Config: cfg.HTTP, Logger: log,
		Diagnostics: s.Diagnostics, Web: cfg.Web, Events: s.Events}
	if s.Metrics != nil {
		deps.Metrics = s.Metrics.Handler()
	}
	s.Handler = handlers.New(deps)
	idle := cfg.RoomIdleTimeout
	if idle <= 0 {
		idle = DefaultRoomIdleTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.collectRooms(ctx, idle, log)
	return s, nil
}

// collectRooms deletes idle auto-created rooms, checking a few times per
// idle period (at most once a minute).
func (s *Server) collectRooms(ctx context.Context, idle time.Duration, log *slog.Logger) {
	defer close(s.done)
	t := time.NewTicker(min(idle/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n, err := s.Sessions.CollectRooms(ctx, idle, now); err != nil {
				log.Warn("collecting idle rooms", "err", err)
			} else if n > 0 {
				log.Info("idle rooms deleted", "rooms", n)
			}
		}
	}
}

// Close ends the event streams, the room collector and every peer
// connection (freeing every lease), then records the last events, in
// reverse order of acquisition. Stop serving HTTP first.
func (s *Server) Close() error {
	s.Events.Close()
	s.cancel()
	<-s.done
	err := s.Engine.Close()
	s.Recorder.Close()
	if err != nil {
		return fmt.Errorf("closing the media engine: %w", err)
	}
	return nil
}
