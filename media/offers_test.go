package media_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/pinhole-rtc/pinhole/media"
)

// TestClientOfferFixtures opens a session from every real client offer
// (handlers/testdata/offers, README.md there) and checks what pinhole
// answers: accepted or refused, the direction of every m-line (RFC 9725
// §4.2, WHEP §4.2), the BUNDLE group, the candidates and the codecs.
func TestClientOfferFixtures(t *testing.T) {
	for _, c := range []struct {
		file    string
		viewer  bool
		refused error  // nil: accepted
		codecs  string // first negotiated audio and video codecs
	}{
		{file: "chrome-publish.sdp", codecs: "audio/opus video/VP8"},
		{file: "chrome-watch.sdp", viewer: true, codecs: "video/VP8 audio/opus"},
		{file: "firefox-publish.sdp", codecs: "audio/opus video/VP8"},
		{file: "firefox-watch.sdp", viewer: true, codecs: "audio/opus video/VP8"},
		{file: "firefox68-audio-only.sdp", codecs: "audio/opus"},
		{file: "safari-publish.sdp", codecs: "audio/opus video/H264"},
		{file: "obs-whip.sdp", codecs: "audio/opus video/H264"},
		{file: "ffmpeg8-whip.sdp"},
		{file: "gstreamer-whipclientsink.sdp"},
		{file: "rejected/chrome-simulcast.sdp", refused: media.ErrUnsupportedTracks},
	} {
		t.Run(c.file, func(t *testing.T) {
			f := newEngine(t, 1, nil)
			offer := offerFixture(t, c.file)
			open, want := f.e.Publish, "recvonly"
			if c.viewer {
				open, want = f.e.Watch, "sendonly"
			}
			ans, err := open(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: offer})
			if c.refused != nil {
				var d *media.DetailError
				if !errors.Is(err, c.refused) || !errors.As(err, &d) || !strings.Contains(d.Detail, "m-line") {
					t.Fatalf("got %v, want %v with a detail naming the m-line", err, c.refused)
				}
				t.Logf("refused: %s", d.Detail)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var o, a sdp.SessionDescription
			if err := o.UnmarshalString(offer); err != nil {
				t.Fatal(err)
			}
			if err := a.UnmarshalString(ans.SDP); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if len(a.MediaDescriptions) != len(o.MediaDescriptions) {
				t.Fatalf("%d m-lines answered, %d offered", len(a.MediaDescriptions), len(o.MediaDescriptions))
			}
			var mids []string
			for i, m := range a.MediaDescriptions {
				mid, _ := m.Attribute("mid")
				omid, _ := o.MediaDescriptions[i].Attribute("mid")
				if mid != omid {
					t.Errorf("m-line %d: mid %q answered, %q offered", i, mid, omid)
				}
				if m.MediaName.Port.Value == 0 {
					t.Errorf("m-line %d (%s) rejected: a partial answer (RFC 9725 §4.5.3)", i, mid)
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
					t.Errorf("m-line %d (%s) answered %q, want %q", i, mid, dir, want)
				}
			}
			if g, _ := a.Attribute("group"); g != "BUNDLE "+strings.Join(mids, " ") {
				t.Errorf("answer a=group:%s, want BUNDLE %s", g, strings.Join(mids, " "))
			}
			if cs := candidatePorts(ans.SDP); len(cs) == 0 || !strings.HasPrefix(cs[0], "127.0.0.1:") {
				t.Errorf("answer candidates %v, want pinhole's on 127.0.0.1", cs)
			}
			if c.codecs != "" && strings.Join(firstPerKind(ans.Codecs), " ") != c.codecs {
				t.Errorf("codecs %v, want first %s", ans.Codecs, c.codecs)
			}
		})
	}
}

func firstPerKind(codecs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range codecs {
		kind, _, _ := strings.Cut(c, "/")
		if !seen[kind] {
			seen[kind] = true
			out = append(out, c)
		}
	}
	return out
}
