package media

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

func readOffer(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "handlers", "testdata", "offers", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n")
}

// mline returns the offer with m-line i's text replaced by edit(text).
func editMline(offer string, i int, edit func(string) string) string {
	parts := strings.Split(offer, "\r\nm=")
	parts[i+1] = edit(parts[i+1])
	return strings.Join(parts, "\r\nm=")
}

// TestOfferRules: the canned offers that were answered wrongly, each now
// refused with a detail naming the m-line (RFC 9725 §4.2, §4.5.2, §4.5.3;
// WHEP §4.2).
func TestOfferRules(t *testing.T) {
	pub := readOffer(t, "chrome-publish.sdp") // m-line 0 audio, 1 video
	view := readOffer(t, "chrome-watch.sdp")  // m-line 0 video, 1 audio
	dir := func(from, to string) func(string) string {
		return func(s string) string { return strings.Replace(s, "a="+from+"\r\n", "a="+to+"\r\n", 1) }
	}
	onlyH265 := func(s string) string {
		// Keep the video m-line but offer H265 alone (what Pion registers
		// and pinhole does not forward).
		head, _, _ := strings.Cut(s, "\r\na=rtpmap:")
		head = strings.Replace(head, strings.SplitN(head, "\r\n", 2)[0], "video 9 UDP/TLS/RTP/SAVPF 49", 1)
		return head + "\r\na=rtpmap:49 H265/90000\r\na=fmtp:49 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST\r\n"
	}
	secondVideo := func(s string) string {
		_, video, _ := strings.Cut(s, "m=video")
		video = strings.Replace(video, "a=mid:1\r\n", "a=mid:2\r\n", 1)
		return strings.TrimSuffix(s, "\r\n") + "\r\nm=video" + video
	}
	for _, c := range []struct {
		name  string
		offer string
		role  Role
		want  error
		says  string
	}{
		{"whip recvonly audio", editMline(pub, 0, dir("sendonly", "recvonly")), RolePublisher, ErrUnsupportedTracks, "m-line 0 (audio, mid 0) is recvonly"},
		{"whip inactive video", editMline(pub, 1, dir("sendonly", "inactive")), RolePublisher, ErrUnsupportedTracks, "m-line 1 (video, mid 1) is inactive"},
		{"whep sendonly audio", editMline(view, 1, dir("recvonly", "sendonly")), RoleViewer, ErrUnsupportedTracks, "m-line 1 (audio, mid 1) is sendonly"},
		{"whip two video m-lines", secondVideo(pub), RolePublisher, ErrUnsupportedTracks, "m-line 2 (video, mid 2) is a second video track"},
		{"whip opus plus h265", editMline(pub, 1, onlyH265), RolePublisher, ErrUnsupportedTracks, "m-line 1 (video, mid 1) offers no codec pinhole forwards"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := inspectOffer(c.offer, c.role)
			var d *DetailError
			if !errors.Is(err, c.want) || !errors.As(err, &d) || !strings.Contains(d.Detail, c.says) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
		})
	}
	// H265 alone gets the same 422 as H265 beside Opus: one rule.
	h265 := editMline(pub, 1, onlyH265)
	h265 = strings.Replace(h265, "a=group:BUNDLE 0 1", "a=group:BUNDLE 1", 1)
	h265 = editMline(h265, 0, func(s string) string { return strings.Replace(s, "audio 50712", "audio 0", 1) })
	if _, err := inspectOffer(h265, RolePublisher); !errors.Is(err, ErrUnsupportedTracks) {
		t.Fatalf("H265 alone: %v, want ErrUnsupportedTracks", err)
	}
	// sendrecv is accepted from both and answered in the one direction
	// pinhole serves (Pion alone answers a sendrecv viewer sendrecv).
	for _, c := range []struct {
		offer  string
		viewer bool
		want   string
	}{
		{editMline(editMline(view, 0, dir("recvonly", "sendrecv")), 1, dir("recvonly", "sendrecv")), true, "a=sendonly"},
		{editMline(editMline(pub, 0, dir("sendonly", "sendrecv")), 1, dir("sendonly", "sendrecv")), false, "a=recvonly"},
	} {
		role := RolePublisher
		if c.viewer {
			role = RoleViewer
		}
		info, err := inspectOffer(c.offer, role)
		if err != nil {
			t.Fatal(err)
		}
		ans := pionAnswer(t, info.pion, c.viewer)
		if strings.Count(ans, c.want+"\r\n") != 2 {
			t.Errorf("sendrecv offer (viewer %v) answered:\n%s", c.viewer, ans)
		}
	}
}

// pionAnswer answers offer the way a session does (pinhole's media engine,
// a sink track per kind for a viewer), without ICE gathering: what Pion
// negotiates is all this compares.
func pionAnswer(t *testing.T, offer string, viewer bool) string {
	t.Helper()
	me, _, _, err := newMediaEngine()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	if viewer {
		added := map[webrtc.RTPCodecType]bool{}
		for _, tr := range pc.GetTransceivers() {
			if k := tr.Kind(); !added[k] && tr.Direction() != webrtc.RTPTransceiverDirectionInactive {
				added[k] = true
				if _, err := pc.AddTrack(newSinkTrack(k, "t")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ans.SDP
}

type answered struct {
	mid, first string // mid, first codec "PT name/fmtp"
	codecs     map[string]bool
}

func summarize(t *testing.T, s string) []answered {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		t.Fatal(err)
	}
	var out []answered
	for _, m := range d.MediaDescriptions {
		a := answered{codecs: map[string]bool{}}
		a.mid, _ = m.Attribute("mid")
		for _, pt := range m.MediaName.Formats {
			name := ""
			fmtp := ""
			for _, at := range m.Attributes {
				p, rest, _ := strings.Cut(at.Value, " ")
				if p == pt && at.Key == "rtpmap" {
					name = rest
				}
				if p == pt && at.Key == "fmtp" {
					fmtp = rest
				}
			}
			c := pt + " " + name + " " + fmtp
			if a.first == "" && m.MediaName.Port.Value != 0 {
				a.first = c
			}
			a.codecs[c] = true
		}
		out = append(out, a)
	}
	return out
}

// TestPrunedOfferSameAnswer: Pion's answer to the pruned offer (issue 11)
// has the same m-lines, mids and chosen codec with its payload type as its
// answer to the client's offer, and no codec the full answer lacks; only
// codecs pinhole never forwards are gone. Directions are the point of the
// rules and are checked in TestClientOfferFixtures.
func TestPrunedOfferSameAnswer(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "handlers", "testdata", "offers", "*.sdp"))
	if err != nil || len(files) < 9 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			offer := readOffer(t, name)
			viewer := strings.Contains(name, "watch")
			role := RolePublisher
			if viewer {
				role = RoleViewer
			}
			info, err := inspectOffer(offer, role)
			if err != nil {
				t.Fatal(err)
			}
			before, after := summarize(t, pionAnswer(t, offer, viewer)), summarize(t, pionAnswer(t, info.pion, viewer))
			if len(before) != len(after) {
				t.Fatalf("%d m-lines before, %d after", len(before), len(after))
			}
			for i := range before {
				b, a := before[i], after[i]
				if b.mid != a.mid || b.first != a.first {
					t.Errorf("m-line %d: before mid %s first %q, after mid %s first %q", i, b.mid, b.first, a.mid, a.first)
				}
				for c := range a.codecs {
					if !b.codecs[c] {
						t.Errorf("m-line %d: %q answered only after pruning", i, c)
					}
				}
			}
		})
	}
	// A Firefox viewer is answered H264 in packetization-mode 1 (126), the
	// mode Chrome publishes, never 97 (mode 0).
	info, err := inspectOffer(readOffer(t, "firefox-watch.sdp"), RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	ans := pionAnswer(t, info.pion, true)
	if !strings.Contains(ans, "a=rtpmap:126 H264/90000") || strings.Contains(ans, "a=rtpmap:97 H264") {
		t.Errorf("Firefox viewer's H264 answer:\n%s", ans)
	}
}
