// Package metrics is pinhole's Prometheus instrumentation. Counters and
// histograms move on the transitions of session records (Observe is a
// record.Observer: it sees each update as before/after); gauges are read at
// scrape time from the store's counts and the engine's leases. It keeps no
// session records of its own.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinhole-rtc/pinhole/diagnostics"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/store"
)

// Metrics lives on the registry it is given (never the global default).
type Metrics struct {
	reg    *prometheus.Registry
	store  store.Store
	engine *media.Engine
	opts   diagnostics.Options

	setup    prometheus.Histogram
	connect  prometheus.Histogram
	packets  *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	failures *prometheus.CounterVec
	closed   *prometheus.CounterVec

	// byTransport counts each session once, by the transport ICE selected.
	byTransport *prometheus.CounterVec

	sessionsDesc *prometheus.Desc
	portsDesc    *prometheus.Desc
	capDesc      *prometheus.Desc
}

// New registers pinhole's metrics on reg (nil: a new registry, with the Go
// and process collectors). st and engine are read at scrape time (engine
// may be set later with SetEngine); opts tune the verdicts counted at
// close.
func New(reg *prometheus.Registry, st store.Store, opts diagnostics.Options) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// Buckets: setup is answer creation (ICE gathering on a mux, tens of
	// milliseconds); connection takes a round trip or a few, up to the
	// setup timeout (30 s) when a path is slow or broken.
	m := &Metrics{
		reg: reg, store: st, opts: opts,
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
		byTransport: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pinhole", Name: "sessions_by_transport_total",
			Help: "Sessions by the transport ICE first selected: udp, or tcp (ICE-TCP on the HTTP port, when no UDP check got through).",
		}, []string{"transport"}),
		sessionsDesc: prometheus.NewDesc("pinhole_sessions", "Sessions in the store by role and state (closed ones while retained).", []string{"role", "state"}, nil),
		portsDesc:    prometheus.NewDesc("pinhole_ports", "UDP ports of the range by lease state.", []string{"state"}, nil),
		capDesc:      prometheus.NewDesc("pinhole_session_capacity", "Sessions that can still be leased (free) and in all (total).", []string{"kind"}, nil),
	}
	for _, c := range []prometheus.Collector{m.setup, m.connect, m.packets, m.bytes, m.failures, m.closed, m.byTransport, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"in", "out"} {
		m.packets.WithLabelValues(d)
		m.bytes.WithLabelValues(d)
	}
	for _, tr := range []string{"udp", "tcp"} {
		m.byTransport.WithLabelValues(tr)
	}
	return m, nil
}

// SetEngine gives Metrics the engine to read leases from: the engine is
// built after Metrics, because Observe is part of its event path.
func (m *Metrics) SetEngine(e *media.Engine) { m.engine = e }

// Registry returns the registry the metrics live on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe counts what one record update changed. It is a record.Observer.
func (m *Metrics) Observe(before, after store.Session) {
	if !hasEvent(before, "answer") {
		if at, ok := eventAt(after, "answer"); ok {
			m.setup.Observe(at.Sub(after.CreatedAt).Seconds())
		}
	}
	// Once per session: the engine emits "transport" again only when an
	// ICE restart changes it, and a session counts where it first ran.
	if !hasEvent(before, "transport") {
		if tr, ok := eventDetail(after, "transport"); ok && (tr == "udp" || tr == "tcp") {
			m.byTransport.WithLabelValues(tr).Inc()
		}
	}
	if after.State == store.StateConnected && before.State != store.StateConnected && !everConnected(before) {
		m.connect.Observe(lastTransition(after).Sub(after.CreatedAt).Seconds())
	}
	m.packets.WithLabelValues("in").Add(float64(delta(after.Counters.PacketsIn, before.Counters.PacketsIn)))
	m.bytes.WithLabelValues("in").Add(float64(delta(after.Counters.BytesIn, before.Counters.BytesIn)))
	m.packets.WithLabelValues("out").Add(float64(delta(after.Counters.PacketsOut, before.Counters.PacketsOut)))
	m.bytes.WithLabelValues("out").Add(float64(delta(after.Counters.BytesOut, before.Counters.BytesOut)))
	if after.State == store.StateClosed && before.State != store.StateClosed {
		m.closed.WithLabelValues(string(after.Role)).Inc()
		if v := diagnostics.Diagnose(after, m.opts).Verdict; v.Status == "fail" {
			m.failures.WithLabelValues(v.Code).Inc()
		}
	}
}

func hasEvent(s store.Session, kind string) bool {
	_, ok := eventAt(s, kind)
	return ok
}

func eventAt(s store.Session, kind string) (time.Time, bool) {
	for _, e := range s.Events {
		if e.Kind == kind {
			return e.At, true
		}
	}
	return time.Time{}, false
}

// eventDetail is the detail of the first event of kind.
func eventDetail(s store.Session, kind string) (string, bool) {
	for _, e := range s.Events {
		if e.Kind == kind {
			return e.Detail, true
		}
	}
	return "", false
}

func everConnected(s store.Session) bool {
	for _, t := range s.Transitions {
		if t.State == store.StateConnected {
			return true
		}
	}
	return false
}

func lastTransition(s store.Session) time.Time {
	if len(s.Transitions) == 0 {
		return s.UpdatedAt
	}
	return s.Transitions[len(s.Transitions)-1].At
}

// delta is how much a cumulative counter grew; counters of one session
// never shrink, but a reset count must not subtract.
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
// the store's counts (nothing is copied), leases from the engine.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, role := range []store.Role{store.RolePublisher, store.RoleViewer} {
			for _, st := range []store.State{store.StateNew, store.StateConnecting, store.StateConnected,
				store.StateDisconnected, store.StateFailed, store.StateClosed} {
				n, err := m.store.CountSessions(ctx, store.SessionFilter{Role: role, State: st})
				if err != nil {
					return
				}
				ch <- prometheus.MustNewConstMetric(m.sessionsDesc, prometheus.GaugeValue, float64(n), string(role), string(st))
			}
		}
	}
	if e := m.engine; e != nil {
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
