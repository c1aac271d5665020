package handlers_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/pinhole-rtc/pinhole/api"
)

// TestRealClientOffers posts offers shaped like what Chrome, Firefox, OBS,
// FFmpeg 8 and GStreamer send (testdata/offers/README.md) through the real
// handler and engine: each gets 201, a parseable answer with candidates and
// ICE credentials, and a DTLS role that complements the offer's (RFC 8842
// §5.3: actpass -> active or passive, passive -> active, active -> passive).
func TestRealClientOffers(t *testing.T) {
	e := newEnv(t)
	files, err := filepath.Glob("testdata/offers/*.sdp")
	if err != nil || len(files) < 6 {
		t.Fatalf("offers: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sdp")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// Clients send CRLF line ends (RFC 8866 §5); the files keep LF
			// so they read well.
			offer := strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n")
			endpoint := "/whip/offers"
			if strings.Contains(name, "watch") {
				endpoint = "/whep/offers"
			}
			resp, body := e.do("POST", endpoint, offer, "Content-Type", "application/sdp")
			if resp.StatusCode != 201 {
				t.Fatalf("POST %s: %d %s", endpoint, resp.StatusCode, body)
			}
			defer func() {
				if r, _ := e.do("DELETE", resp.Header.Get("Location"), ""); r.StatusCode != 200 {
					t.Errorf("DELETE: %d", r.StatusCode)
				}
			}()
			var ans sdp.SessionDescription
			if err := ans.UnmarshalString(body); err != nil {
				t.Fatalf("answer does not parse: %v\n%s", err, body)
			}
			if len(answerCandidates(body)) == 0 || api.SDPAttr(body, "a=ice-ufrag:") == "" || api.SDPAttr(body, "a=ice-pwd:") == "" {
				t.Errorf("answer lacks candidates or ICE credentials:\n%s", body)
			}
			if !strings.Contains(body, "a=fingerprint:") {
				t.Errorf("answer lacks a fingerprint")
			}
			offered := api.SDPAttr(offer, "a=setup:")
			answered := api.SDPAttr(body, "a=setup:")
			want := map[string][]string{
				"actpass": {"active", "passive"},
				"passive": {"active"},
				"active":  {"passive"},
			}[offered]
			ok := false
			for _, w := range want {
				ok = ok || answered == w
			}
			if !ok {
				t.Errorf("offer a=setup:%s answered a=setup:%s, want one of %v", offered, answered, want)
			}
			// Every offered media section is answered, in order (RFC 3264 §6).
			var offerSD sdp.SessionDescription
			if err := offerSD.UnmarshalString(offer); err != nil {
				t.Fatalf("offer does not parse: %v", err)
			}
			if len(ans.MediaDescriptions) != len(offerSD.MediaDescriptions) {
				t.Errorf("%d media sections answered, %d offered", len(ans.MediaDescriptions), len(offerSD.MediaDescriptions))
			}
		})
	}
}

// TestBadOffers: a malformed offer is 400 naming what is wrong; a track
// set pinhole cannot serve is 422 (RFC 9725 section 4.5.2). Neither leaks a lease.
func TestBadOffers(t *testing.T) {
	e := newEnv(t)
	pcmuOnly := crlf(`v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=audio 9 UDP/TLS/RTP/SAVPF 0
c=IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 84:67:F7:27:AE:00:74:71:AA:EF:42:E1:B8:85:78:C9:6D:02:CB:F8:83:07:79:1F:4F:79:F8:1B:0A:5F:7C:C7
a=setup:actpass
a=mid:0
a=sendonly
a=rtcp-mux
a=rtpmap:0 PCMU/8000
`)
	cases := []struct {
		name, body string
		status     int
		detail     string
	}{
		{"does not parse", "v=0\r\ngarbage\r\n", 400, "malformed SDP offer"},
		{"no media", crlf("v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nt=0 0\n"), 422, "m-line"},
		{"only PCMU", pcmuOnly, 422, "codec"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do("POST", "/whip/studio", tc.body, "Content-Type", "application/sdp")
			p := problem(t, resp, body, tc.status)
			if d, _ := p["detail"].(string); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q does not say %q", d, tc.detail)
			}
		})
	}
	if free, total := e.engine.Capacity(); free != total {
		t.Errorf("leases leaked: %d of %d free", free, total)
	}
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// TestOfferAnswers is TestClientOfferFixtures of package media over HTTP:
// every fixture under testdata/offers POSTed to WHIP or WHEP, and what the
// 201 answers checked: every m-line answered in order, accepted, in the one
// direction pinhole serves (RFC 9725 §4.2 recvonly; WHEP-03 §4.3.5
// sendonly), all in the BUNDLE group (RFC 9725 §4.4.1), pinhole's
// candidates, and the codecs chosen. A refused fixture is 422 naming the
// m-line (RFC 9725 §4.5.3: no partially successful answers).
func TestOfferAnswers(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		file   string
		viewer bool
		status int
		codecs string // first payload of each served m-line, in order
	}{
		{"chrome-publish.sdp", false, 201, "audio/opus video/VP8"},
		{"chrome-watch.sdp", true, 201, "video/VP8 audio/opus"},
		{"firefox-publish.sdp", false, 201, "audio/opus video/VP8"},
		{"firefox-watch.sdp", true, 201, "audio/opus video/VP8"},
		{"firefox68-audio-only.sdp", false, 201, "audio/opus"},
		{"safari-publish.sdp", false, 201, "audio/opus video/H264"},
		{"obs-whip.sdp", false, 201, "audio/opus video/H264"},
		{"ffmpeg8-whip.sdp", false, 201, ""},
		{"gstreamer-whipclientsink.sdp", false, 201, ""},
		{"rejected/chrome-simulcast.sdp", false, 422, ""},
	} {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata/offers", c.file))
			if err != nil {
				t.Fatal(err)
			}
			offer := crlf(string(raw))
			endpoint, want := "/whip/answers", "recvonly"
			if c.viewer {
				endpoint, want = "/whep/answers", "sendonly"
			}
			resp, body := e.do("POST", endpoint, offer, "Content-Type", api.SDPContentType)
			if c.status != 201 {
				p := problem(t, resp, body, c.status)
				if d, _ := p["detail"].(string); !strings.Contains(d, "m-line") {
					t.Errorf("refusal does not name the m-line: %s", d)
				}
				return
			}
			if resp.StatusCode != 201 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			defer e.do("DELETE", resp.Header.Get("Location"), "")
			var o, a sdp.SessionDescription
			if err := o.UnmarshalString(offer); err != nil {
				t.Fatal(err)
			}
			if err := a.UnmarshalString(body); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if len(a.MediaDescriptions) != len(o.MediaDescriptions) {
				t.Fatalf("%d m-lines answered, %d offered", len(a.MediaDescriptions), len(o.MediaDescriptions))
			}
			var mids, codecs []string
			for i, m := range a.MediaDescriptions {
				mid, _ := m.Attribute("mid")
				if omid, _ := o.MediaDescriptions[i].Attribute("mid"); mid != omid {
					t.Errorf("m-line %d: mid %q answered, %q offered", i, mid, omid)
				}
				if m.MediaName.Port.Value == 0 {
					t.Errorf("m-line %d rejected: a partial answer", i)
					continue
				}
				mids = append(mids, mid)
				dir := ""
				for _, at := range m.Attributes {
					switch at.Key {
					case "sendrecv", "sendonly", "recvonly", "inactive":
						dir = at.Key
					}
				}
				if dir != want {
					t.Errorf("m-line %d answered %q, want %q", i, dir, want)
				}
				if len(m.MediaName.Formats) > 0 {
					for _, at := range m.Attributes {
						if pt, rest, _ := strings.Cut(at.Value, " "); at.Key == "rtpmap" && pt == m.MediaName.Formats[0] {
							name, _, _ := strings.Cut(rest, "/")
							codecs = append(codecs, m.MediaName.Media+"/"+name)
						}
					}
				}
			}
			if g, _ := a.Attribute("group"); g != "BUNDLE "+strings.Join(mids, " ") {
				t.Errorf("a=group:%s, want BUNDLE %s", g, strings.Join(mids, " "))
			}
			if cs := answerCandidates(body); len(cs) == 0 || !strings.HasPrefix(cs[0], "127.0.0.1:") {
				t.Errorf("answer candidates %v", cs)
			}
			if c.codecs != "" && strings.Join(codecs, " ") != c.codecs {
				t.Errorf("codecs %v, want %s", codecs, c.codecs)
			}
		})
	}
}
