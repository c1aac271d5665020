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

func recCodecs(s store.Session, codecs ...string) store.Session {
	s.Codecs = codecs
	return s
}

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
			2 * time.Second, api.StatusPending, VerdictPending, "mapping", []string{"waiting for the first packet on local UDP 10111"}},
		{"mapping broken", rec(store.RolePublisher, store.StateNew, offer, answer),
			11 * time.Second, api.StatusFail, VerdictNoPacket, "mapping",
			[]string{"no packet reached local UDP 10111 within 3s of the answer", "public 51.161.209.200:20111 -> this host's UDP 10111", "--public-ports wrong", "cannot be told apart"}},
		{"mapping broken, named at 3 s while the session is up", rec(store.RolePublisher, store.StateConnecting, offer, answer),
			3100 * time.Millisecond, api.StatusFail, VerdictNoPacket, "mapping", []string{"no packet reached local UDP 10111"}},
		{"wrong public IP: the Host header names another address", rec(store.RolePublisher, store.StateNew, ev{0, "request", "Host: 203.0.113.1:8080"}, offer, answer),
			4 * time.Second, api.StatusFail, VerdictPublicIPMismatch, "mapping",
			[]string{"reached pinhole at 203.0.113.1 (Host header) but the answer advertised 51.161.209.200", "--public-ip is probably wrong"}},
		{"Host header a LAN address: hairpin, not --public-ip", rec(store.RolePublisher, store.StateNew, ev{0, "request", "Host: 192.168.1.5:8080"}, offer, answer),
			4 * time.Second, api.StatusFail, VerdictNoPacket, "mapping", []string{"private address 192.168.1.5", "does not loop back"}},
		{"Host header a name: the two causes are not told apart", rec(store.RolePublisher, store.StateNew, ev{0, "request", "Host: media.example.org"}, offer, answer),
			4 * time.Second, api.StatusFail, VerdictNoPacket, "mapping", []string{"cannot be told apart"}},
		{"checks arrive, ICE not connected after 2 s: replies lost", rec(store.RolePublisher, store.StateConnecting, offer, answer, packet, ev{210, "ice-checking", ""}),
			2300 * time.Millisecond, api.StatusFail, VerdictICEFailed, "ice", []string{"pinhole's replies do not get back"}},
		{"ICE connected, no DTLS after 3 s", rec(store.RolePublisher, store.StateConnecting, offer, answer, packet, iceOK),
			3400 * time.Millisecond, api.StatusFail, VerdictDTLSFailed, "dtls", []string{"ICE connected but DTLS failed: no handshake within 3s"}},
		{"audio flows, viewer did not offer the video codec", recCodecs(rec(store.RoleViewer, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn, ev{450, "following", "p"},
			ev{460, "codec-mismatch", "publisher p sends video/VP8, which this viewer did not offer"}, ev{500, "first-rtp-out", "audio"}), "audio/opus", "video/H264"),
			time.Second, api.StatusFail, VerdictVideoCodec, "media", []string{"audio flows but no video", "sends video/VP8", "sees nothing"}},
		{"audio flows, no video within 4 s", recCodecs(rec(store.RoleViewer, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn, ev{450, "following", "p"},
			ev{500, "first-rtp-out", "audio"}), "audio/opus", "video/VP8"),
			5 * time.Second, api.StatusFail, VerdictNoVideo, "media", []string{"audio flows but no video reached the viewer"}},
		{"audio-only viewer: audio is all it wants", recCodecs(rec(store.RoleViewer, store.StateConnected, offer, answer, packet, iceOK, dtlsOK, conn, ev{450, "following", "p"},
			ev{500, "first-rtp-out", "audio"}), "audio/opus"),
			time.Minute, api.StatusOK, VerdictOK, "", []string{"media flowed"}},
		{"mapping broken, session ended by setup timeout", rec(store.RolePublisher, store.StateClosed, offer, answer, ev{8000, "closed", "setup timeout: not connected within 8s"}),
			time.Hour, api.StatusFail, VerdictNoPacket, "mapping", []string{"no packet reached local UDP 10111 within 3s of the answer"}},
		{"mapping broken, session ended before the deadline", rec(store.RolePublisher, store.StateClosed, offer, answer, ev{1000, "closed", "deleted by client"}),
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
			if len(d.Hops) != 5 || len(d.Timeline) != len(tc.s.Events)+len(d.VerdictHistory) {
				t.Errorf("hops %d timeline %d", len(d.Hops), len(d.Timeline))
			}
			if v.ID != v.Code || v.Headline != v.Summary || v.Evidence == nil {
				t.Errorf("verdict id/headline/evidence: %+v", v)
			}
			if v.Status == api.StatusFail && len(v.Evidence) == 0 {
				t.Errorf("no evidence for %s", v.ID)
			}
			// The path picture points at one broken step, on the verdict's hop.
			var broken []api.PathStep
			for _, p := range d.Path {
				if p.Broken {
					broken = append(broken, p)
				}
			}
			if v.Status == api.StatusFail && (len(broken) != 1 || broken[0].Hop != v.Hop || broken[0].Status != api.StatusFail || broken[0].Fix == "") {
				t.Errorf("path %+v for verdict %s at %s", d.Path, v.ID, v.Hop)
			}
			if v.Status != api.StatusFail && len(broken) != 0 {
				t.Errorf("broken step %+v for a %s verdict", broken, v.Status)
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

// A verdict is given as soon as the evidence is conclusive and revised as
// it grows; the history and the timeline show when.
func TestDiagnoseRevised(t *testing.T) {
	s := rec(store.RolePublisher, store.StateConnected, offer, answer, ev{4000, "first-packet", "local UDP 10111 from 203.0.113.2:40000"},
		ev{4100, "ice-connected", ""}, ev{4200, "dtls-connected", ""}, ev{4201, "state", "connected"}, ev{4400, "first-rtp-in", ""})
	d := Diagnose(s, Options{Now: t0.Add(10 * time.Second)})
	var ids []string
	for _, c := range d.VerdictHistory {
		ids = append(ids, c.ID+"@"+c.Hop)
	}
	got := strings.Join(ids, " ")
	if got != "pending@signaling pending@mapping no-packet@mapping pending@ice pending@dtls pending@media ok@" {
		t.Fatalf("history %s", got)
	}
	if np := d.VerdictHistory[2]; np.SinceStartMillis != 3020 {
		t.Errorf("no-packet named at %v ms, want 3020 (3 s after the answer)", np.SinceStartMillis)
	}
	n := 0
	for _, e := range d.Timeline {
		if e.Kind == "verdict" {
			n++
		}
	}
	if n != len(d.VerdictHistory) || d.Verdict.SinceStartMillis != 4400 {
		t.Errorf("timeline has %d verdict entries for %d changes; verdict at %v ms", n, len(d.VerdictHistory), d.Verdict.SinceStartMillis)
	}
	for _, p := range d.Path {
		if p.Status != api.StatusOK || p.SinceStartMillis == nil {
			t.Errorf("healthy path step %+v", p)
		}
	}
}

// TestDiagnoseTCP: a session whose media runs over ICE-TCP, with no UDP
// packet on its lease, is healthy, and the verdict says it is over TCP,
// why, and how to get UDP back; the mapping hop is not blamed.
func TestDiagnoseTCP(t *testing.T) {
	tcpNote := "media over TCP: no UDP packet ever reached local UDP 10111 (no UDP check arrived: the client's network blocks UDP, or the UDP forward is missing); ICE-TCP on the HTTP port, public 51.161.209.200:18443"
	overTCP := []ev{offer, answer, {250, "ice-checking", ""}, {300, "ice-connected", ""}, {300, "transport", "tcp"}, {300, "tcp-fallback", tcpNote}, dtlsOK, conn, {600, "first-rtp-in", ""}}
	for _, tc := range []struct {
		name     string
		s        store.Session
		headline []string
		fix      []string
	}{
		{"no UDP check arrived", rec(store.RolePublisher, store.StateConnected, overTCP...),
			[]string{"media flowed over TCP", "ICE-TCP on the HTTP port", "no UDP check from the client arrived"},
			[]string{"forward UDP 51.161.209.200:20111 -> this host:10111", "this client's network blocks UDP"}},
		{"ended: the reason follows", rec(store.RolePublisher, store.StateClosed, append(overTCP, ev{5000, "closed", "client sent DELETE"})...),
			[]string{"media flowed over TCP", "no UDP check from the client arrived; the session ended: client sent DELETE"},
			[]string{"forward UDP"}},
		{"UDP arrived but the client chose TCP", rec(store.RolePublisher, store.StateConnected, append([]ev{packet}, overTCP...)...),
			[]string{"media flowed over TCP", "UDP packets arrived, but the client's ICE chose its TCP pair"},
			[]string{"the forward works"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Diagnose(tc.s, Options{Now: t0.Add(10 * time.Second)})
			v := d.Verdict
			if v.Status != api.StatusOK || v.ID != VerdictOK || v.Hop != "" {
				t.Fatalf("verdict %+v, want ok; hops %+v", v, d.Hops)
			}
			for _, want := range tc.headline {
				if !strings.Contains(v.Headline, want) {
					t.Errorf("headline %q lacks %q", v.Headline, want)
				}
			}
			for _, want := range tc.fix {
				if !strings.Contains(v.Fix, want) {
					t.Errorf("fix %q lacks %q", v.Fix, want)
				}
			}
			if ev := strings.Join(v.Evidence, "\n"); !strings.Contains(ev, "transport: tcp") || !strings.Contains(ev, "tcp-fallback: "+tcpNote) {
				t.Errorf("evidence %q lacks the transport and the tcp-fallback note", v.Evidence)
			}
			for _, h := range d.Hops {
				if h.Status != api.StatusOK {
					t.Errorf("hop %s: %s (%s)", h.Name, h.Status, h.Detail)
				}
			}
		})
	}
	// Over UDP the verdict stays as it was.
	d := Diagnose(rec(store.RolePublisher, store.StateConnected, offer, answer, packet, iceOK, ev{300, "transport", "udp"}, dtlsOK, conn, ev{600, "first-rtp-in", ""}), Options{Now: t0.Add(time.Second)})
	if d.Verdict.Headline != "media flowed" || d.Verdict.Fix != "" {
		t.Fatalf("UDP verdict %+v", d.Verdict)
	}
}
