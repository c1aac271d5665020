package handlers

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// maxTracked bounds the sessions Metrics follows at once; beyond it new
// sessions are counted but not diagnosed at close (far above what a port
// range of a few hundred ports can hold).
const maxTracked = 10000

// Metrics is pinhole's Prometheus instrumentation. It lives on the registry
// it is given (never the global default one), learns from the engine's
// events through Observe, and reads sessions and leases at scrape time.
type Metrics struct {
	reg    *prometheus.Registry
	store  store.Store
	engine atomic.Pointer[media.Engine]
	opts   DiagnosisOptions

	setup    prometheus.Histogram
	connect  prometheus.Histogram
	packets  *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	failures *prometheus.CounterVec
	closed   *prometheus.CounterVec

	sessionsDesc *prometheus.Desc
	portsDesc    *prometheus.Desc
	capDesc      *prometheus.Desc

	mu   sync.Mutex
	live map[string]*tracked
}

// tracked is Metrics' own light record of a live session: enough to time
// its milestones and to diagnose it when it closes.
type tracked struct {
	rec  store.Session
	last media.Counters
}

// NewMetrics registers pinhole's metrics on reg (nil: a new registry, with
// the Go and process collectors). st is read at scrape time for the
// sessions by role and state; opts tune the verdicts counted at close.
func NewMetrics(reg *prometheus.Registry, st store.Store, opts DiagnosisOptions) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// Buckets: setup is answer creation (ICE gathering on a mux, tens of
	// milliseconds); connection takes a round trip or a few, up to the
	// setup timeout (30 s) when a path is slow or broken.
	m := &Metrics{
		reg: reg, store: st, opts: opts, live: map[string]*tracked{},
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "pinhole", Name: "session_setup_seconds",
			Help:    "Time from the offer arriving to the answer being ready.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		connect: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "pinhole", Name: "session_time_to_connected_seconds",
			Help:    "Time from the offer arriving to the peer connection being connected.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 20, 30},
		}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pinhole", Name: "media_packets_total",
			Help: "RTP packets received from publishers (in) and sent to viewers (out).",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pinhole", Name: "media_bytes_total",
			Help: "RTP bytes received from publishers (in) and sent to viewers (out).",
		}, []string{"direction"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pinhole", Name: "session_failures_total",
			Help: "Ended sessions whose diagnosis failed, by verdict code (no-packet, ice-failed, dtls-failed, no-media...).",
		}, []string{"verdict"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pinhole", Name: "sessions_closed_total",
			Help: "Ended sessions by role.",
		}, []string{"role"}),
		sessionsDesc: prometheus.NewDesc("pinhole_sessions", "Sessions in the store by role and state (closed ones while retained).", []string{"role", "state"}, nil),
		portsDesc:    prometheus.NewDesc("pinhole_ports", "UDP ports of the range by lease state.", []string{"state"}, nil),
		capDesc:      prometheus.NewDesc("pinhole_session_capacity", "Sessions that can still be leased (free) and in all (total).", []string{"kind"}, nil),
	}
	for _, c := range []prometheus.Collector{m.setup, m.connect, m.packets, m.bytes, m.failures, m.closed, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"in", "out"} {
		m.packets.WithLabelValues(d)
		m.bytes.WithLabelValues(d)
	}
	return m, nil
}

// SetEngine gives Metrics the engine to read leases from. The engine is
// built after Metrics because Observe is part of its event callback.
func (m *Metrics) SetEngine(e *media.Engine) { m.engine.Store(e) }

// Registry returns the registry the metrics live on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe learns from one engine event. Called from Pion goroutines through
// the engine's callback: it only takes a short lock.
func (m *Metrics) Observe(ev media.Event) {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	m.mu.Lock()
	t := m.live[ev.SessionID]
	if t == nil {
		if ev.Kind == media.EventClosed || len(m.live) >= maxTracked {
			m.mu.Unlock()
			return
		}
		t = &tracked{rec: store.Session{ID: ev.SessionID, Room: ev.Room, Role: store.Role(ev.Role), State: store.StateNew, CreatedAt: at}}
		m.live[ev.SessionID] = t
	}
	s := &t.rec
	var diag *store.Session
	switch ev.Kind {
	case media.EventTimeline:
		if ev.Name == "answer" {
			m.setup.Observe(at.Sub(s.CreatedAt).Seconds())
		}
		addTimeline(s, store.Event{At: at, Kind: ev.Name, Detail: ev.Detail})
	case media.EventState:
		if s.SetState(store.State(ev.State), at) && ev.State == string(store.StateConnected) && !everConnected(s) {
			m.connect.Observe(at.Sub(s.CreatedAt).Seconds())
		}
	case media.EventRemoteAddr:
		s.AddRemoteAddr(ev.Detail)
	case media.EventSelectedPair:
		s.SelectedPair = ev.Detail
	case media.EventCounters:
		c := ev.Counters
		m.packets.WithLabelValues("in").Add(float64(delta(c.PacketsIn, t.last.PacketsIn)))
		m.bytes.WithLabelValues("in").Add(float64(delta(c.BytesIn, t.last.BytesIn)))
		m.packets.WithLabelValues("out").Add(float64(delta(c.PacketsOut, t.last.PacketsOut)))
		m.bytes.WithLabelValues("out").Add(float64(delta(c.BytesOut, t.last.BytesOut)))
		t.last = c
		s.Counters = store.Counters(c)
	case media.EventClosed:
		s.CloseReason = ev.Detail
		s.SetState(store.StateClosed, at)
		addTimeline(s, store.Event{At: at, Kind: "closed", Detail: ev.Detail})
		delete(m.live, ev.SessionID)
		cp := *s
		diag = &cp
	}
	m.mu.Unlock()
	if diag != nil {
		m.closed.WithLabelValues(string(diag.Role)).Inc()
		if v := Diagnose(*diag, m.opts).Verdict; v.Status == "fail" {
			m.failures.WithLabelValues(v.Code).Inc()
		}
	}
}

// everConnected reports whether s was connected before its last transition.
func everConnected(s *store.Session) bool {
	for _, t := range s.Transitions[:len(s.Transitions)-1] {
		if t.State == store.StateConnected {
			return true
		}
	}
	return false
}

// delta is how much a cumulative counter grew; counters of one session
// never shrink, but a restarted count must not subtract.
func delta(now, before uint64) uint64 {
	if now < before {
		return now
	}
	return now - before
}

// Describe implements prometheus.Collector for the scrape-time gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.sessionsDesc
	ch <- m.portsDesc
	ch <- m.capDesc
}

// Collect implements prometheus.Collector: sessions by role and state from
// the store, leases from the engine.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		sessions, err := m.store.ListSessions(ctx, store.SessionFilter{IncludeClosed: true})
		cancel()
		if err == nil {
			counts := map[[2]string]int{}
			for _, role := range []store.Role{store.RolePublisher, store.RoleViewer} {
				for _, st := range []store.State{store.StateNew, store.StateConnecting, store.StateConnected,
					store.StateDisconnected, store.StateFailed, store.StateClosed} {
					counts[[2]string{string(role), string(st)}] = 0
				}
			}
			for _, s := range sessions {
				counts[[2]string{string(s.Role), string(s.State)}]++
			}
			for k, n := range counts {
				ch <- prometheus.MustNewConstMetric(m.sessionsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
			}
		}
	}
	if e := m.engine.Load(); e != nil {
		leased, free := 0, 0
		for _, p := range e.Ports() {
			if p.Leased {
				leased++
			} else {
				free++
			}
		}
		ch <- prometheus.MustNewConstMetric(m.portsDesc, prometheus.GaugeValue, float64(leased), "leased")
		ch <- prometheus.MustNewConstMetric(m.portsDesc, prometheus.GaugeValue, float64(free), "free")
		f, total := e.Capacity()
		ch <- prometheus.MustNewConstMetric(m.capDesc, prometheus.GaugeValue, float64(f), "free")
		ch <- prometheus.MustNewConstMetric(m.capDesc, prometheus.GaugeValue, float64(total), "total")
	}
}
