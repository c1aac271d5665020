package diagnostics

import (
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/store"
)

// rec builds a session record whose events happen at the given offsets (ms
// after t0), as the Recorder writes them.
type ev struct {
	ms     int
	kind   string
	detail string
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func rec(role store.Role, state store.State, events ...ev) store.Session {
	s := store.Session{
		ID: "0123456789abcdef0123456789abcdef", Room: "studio", Role: role, State: state, CreatedAt: t0,
		Lease: store.Lease{LocalPort: 10111, PublicAddr: "51.161.209.200:20111"},
	}
	for _, e := range events {
		at := t0.Add(time.Duration(e.ms) * time.Millisecond)
		s.Events = append(s.Events, store.Event{At: at, Kind: e.kind, Detail: e.detail})
		switch e.kind {
		case "state":
			s.Transitions = append(s.Transitions, store.Transition{State: store.State(e.detail), At: at})
		case "closed":
			s.Transitions = append(s.Transitions, store.Transition{State: store.StateClosed, At: at})
			s.CloseReason = e.detail
		case "first-packet":
			s.RemoteAddrs = append(s.RemoteAddrs, "203.0.113.2:40000")
		}
	}
	return s
}

var (
	offer  = ev{0, "offer", "1 client candidates: candidate:1 1 udp 2130706431 203.0.113.2 40000 typ host"}
	answer = ev{20, "answer", "lease local UDP 10111, public 51.161.209.200:20111; candidates: candidate:1 1 udp 2130706431 51.161.209.200 20111 typ host"}
	packet = ev{200, "first-packet", "local UDP 10111 from 203.0.113.2:40000"}
	iceOK  = ev{300, "ice-connected", ""}
	dtlsOK = ev{400, "dtls-connected", ""}
	conn   = ev{401, "state", "connected"}
)

func TestDiagnose(t *testing.T) {
	cases := []struct {
		name    string
		s       store.Session
		now     time.Duration
		status  string
		code    string
		hop     string
		summary []string
	}{
		{"healthy publisher", rec(store.RolePublisher, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn, ev{600, "first-rtp-in", ""}),
			time.Second, api.StatusOK, VerdictOK, "", []string{"media flowed"}},
		{"waiting for the first packet", rec(store.RolePublisher, store.StateNew, offer, answer),
			3 * time.Second, api.StatusPending, VerdictPending, "mapping", []string{"waiting for the first packet on local UDP 10111"}},
		{"mapping broken", rec(store.RolePublisher, store.StateNew, offer, answer),
			11 * time.Second, api.StatusFail, VerdictNoPacket, "mapping",
			[]string{"no packet reached local UDP 10111 within 10s", "public 51.161.209.200:20111 -> this host's UDP 10111"}},
		{"mapping broken, session ended by setup timeout", rec(store.RolePublisher, store.StateClosed, offer, answer, ev{8000, "closed", "setup timeout: not connected within 8s"}),
			time.Hour, api.StatusFail, VerdictNoPacket, "mapping", []string{"no packet reached local UDP 10111 before the session ended"}},
		{"no client candidates", rec(store.RolePublisher, store.StateClosed, ev{0, "offer", "0 client candidates: "}, answer, ev{30000, "closed", "setup timeout"}),
			time.Hour, api.StatusFail, VerdictNoCandidates, "mapping", []string{"offered no ICE candidates"}},
		{"self-test without candidates: still the mapping", rec(store.RolePublisher, store.StateClosed, ev{0, "selftest", "internal client"}, ev{1, "offer", "0 client candidates: "}, answer, ev{8000, "closed", "self-test finished"}),
			time.Hour, api.StatusFail, VerdictNoPacket, "mapping", []string{"no packet reached local UDP 10111"}},
		{"ice failed", rec(store.RolePublisher, store.StateClosed, offer, answer, packet, ev{5000, "ice-failed", "3 packets reached local UDP 10111"}, ev{5001, "closed", "connection failed"}),
			time.Hour, api.StatusFail, VerdictICEFailed, "ice", []string{"packets arrived (from 203.0.113.2:40000) but ICE failed", "203.0.113.2 40000 typ host"}},
		{"dtls failed", rec(store.RolePublisher, store.StateClosed, offer, answer, packet, iceOK, ev{900, "dtls-failed", ""}, ev{901, "closed", "connection failed"}),
			time.Hour, api.StatusFail, VerdictDTLSFailed, "dtls", []string{"DTLS failed"}},
		{"codec mismatch", rec(store.RoleViewer, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn, ev{500, "codec-mismatch", "publisher abc sends video/H264, which this viewer did not offer"}),
			time.Minute, api.StatusFail, VerdictCodecMismatch, "media", []string{"connected, no media: publisher abc sends video/H264"}},
		{"viewer without publisher", rec(store.RoleViewer, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn),
			time.Minute, api.StatusPending, VerdictNoPublisher, "media", []string{"no publisher"}},
		{"silent publisher", rec(store.RolePublisher, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn),
			time.Minute, api.StatusFail, VerdictNoMedia, "media", []string{"sent no RTP"}},
		{"lost after media", rec(store.RolePublisher, store.StateClosed, offer, answer, packet, iceOK, dtlsOK, conn, ev{600, "first-rtp-in", ""}, ev{60000, "ice-disconnected", ""}, ev{65000, "closed", "connection failed"}),
			time.Hour, api.StatusFail, VerdictConnectionLost, "ice", []string{"then the connection was lost"}},
		{"ended normally", rec(store.RoleViewer, store.StateClosed, offer, answer, packet, iceOK, dtlsOK, conn, ev{600, "following", "p"}, ev{700, "first-rtp-out", "video"}, ev{9000, "closed", "deleted by client"}),
			time.Hour, api.StatusOK, VerdictOK, "", []string{"media flowed; the session ended: deleted by client"}},
		{"refused offer", rec(store.RolePublisher, store.StateClosed, offer, ev{5, "closed", "setup failed: no codec"}),
			time.Hour, api.StatusFail, VerdictNoAnswer, "signaling", []string{"setup failed: no codec"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Diagnose(tc.s, Options{Now: t0.Add(tc.now)})
			v := d.Verdict
			if v.Status != tc.status || v.Code != tc.code || v.Hop != tc.hop {
				t.Fatalf("verdict %+v, want status %s code %s hop %s", v, tc.status, tc.code, tc.hop)
			}
			for _, want := range tc.summary {
				if !strings.Contains(v.Summary, want) {
					t.Errorf("summary %q lacks %q", v.Summary, want)
				}
			}
			if v.Status == api.StatusFail && v.Fix == "" {
				t.Errorf("no fix for %s", v.Code)
			}
			if len(d.Hops) != 5 || len(d.Timeline) != len(tc.s.Events) {
				t.Errorf("hops %d timeline %d", len(d.Hops), len(d.Timeline))
			}
			for i, h := range d.Hops {
				if h.Name == v.Hop && v.Code != VerdictConnectionLost {
					for _, later := range d.Hops[i+1:] {
						if later.Status != api.StatusSkipped {
							t.Errorf("hop %s after the broken %s is %s", later.Name, h.Name, later.Status)
						}
					}
				}
			}
		})
	}
}
