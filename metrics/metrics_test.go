package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/diagnostics"
	"github.com/pinhole-rtc/pinhole/metrics"
	"github.com/pinhole-rtc/pinhole/store"
)

// updates replays a session's records as the Recorder writes them: each
// call appends events and hands Observe the record before and after.
type updates struct {
	m   *metrics.Metrics
	cur store.Session
}

func (u *updates) add(kind, detail string) {
	before := u.cur
	after := u.cur
	after.Events = append(append([]store.Event(nil), before.Events...), store.Event{At: time.Now(), Kind: kind, Detail: detail})
	u.m.Observe(before, after)
	u.cur = after
}

func TestSessionsByTransport(t *testing.T) {
	m, err := metrics.New(nil, nil, diagnostics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	session := func(id string) *updates {
		return &updates{m: m, cur: store.Session{ID: id, Room: "r", Role: store.RoleViewer, State: store.StateConnecting, CreatedAt: now}}
	}
	// A session over TCP, whose record is updated many times after the
	// transport event: counted once.
	tcp := session("a")
	tcp.add("offer", "")
	tcp.add("answer", "")
	tcp.add("transport", "tcp")
	tcp.add("tcp-fallback", "media over TCP: no UDP packet ever reached local UDP 10111")
	tcp.add("first-rtp-out", "video")
	// A session over UDP that an ICE restart moved to TCP: it counts
	// where it first ran.
	moved := session("b")
	moved.add("transport", "udp")
	moved.add("ice-restart", "")
	moved.add("transport", "tcp")
	// A session that never connected counts nowhere.
	session("c").add("offer", "")

	// Scraped as Prometheus does, through the handler.
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`pinhole_sessions_by_transport_total{transport="tcp"} 1`,
		`pinhole_sessions_by_transport_total{transport="udp"} 1`,
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
