package handlers_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/api"
)

var (
	ufragLineRE = regexp.MustCompile(`(?m)^a=ice-ufrag:.*$`)
	pwdLineRE   = regexp.MustCompile(`(?m)^a=ice-pwd:.*$`)
)

// TestE2EICERestart: a viewer restarts ICE through PATCH (RFC 9725 §4.3.3)
// and keeps receiving media over the restarted ICE session.
func TestE2EICERestart(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	e.publish(t, ctx, "studio")
	v, res := e.watch(t, ctx, "studio")
	if err := v.WaitVideoFrames(ctx, 10); err != nil {
		t.Fatal(err)
	}
	pc := v.PeerConnection()
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		t.Fatal("gathering")
	}
	local := pc.LocalDescription().SDP
	// RFC 8840 §4.4: the fragment carries the new credentials and the
	// candidates of the first media section.
	var frag strings.Builder
	frag.WriteString("a=ice-ufrag:" + api.SDPAttr(local, "a=ice-ufrag:") + "\r\n")
	frag.WriteString("a=ice-pwd:" + api.SDPAttr(local, "a=ice-pwd:") + "\r\n")
	frag.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:" + api.SDPAttr(local, "a=mid:") + "\r\n")
	for _, c := range strings.Split(local, "\r\n") {
		if strings.HasPrefix(c, "a=candidate:") {
			frag.WriteString(c + "\r\n")
		}
	}
	resp, body := e.do("PATCH", strings.TrimPrefix(res.URL, e.srv.URL), frag.String(),
		"Content-Type", api.SDPFragContentType, "If-Match", "*")
	if resp.StatusCode != 200 {
		t.Fatalf("restart: %d %s", resp.StatusCode, body)
	}
	newUfrag, newPwd := api.SDPAttr(body, "a=ice-ufrag:"), api.SDPAttr(body, "a=ice-pwd:")
	if newUfrag == "" || newPwd == "" || len(answerCandidates(body)) == 0 {
		t.Fatalf("restart answer fragment lacks credentials or candidates:\n%s", body)
	}
	answer := pc.RemoteDescription().SDP
	if newUfrag == api.SDPAttr(answer, "a=ice-ufrag:") {
		t.Errorf("restart kept the server's ufrag %q", newUfrag)
	}
	if tag := resp.Header.Get("ETag"); tag == "" || tag == res.ETag {
		t.Errorf("restart ETag %q (was %q)", tag, res.ETag)
	}
	answer = ufragLineRE.ReplaceAllString(answer, "a=ice-ufrag:"+newUfrag+"\r")
	answer = pwdLineRE.ReplaceAllString(answer, "a=ice-pwd:"+newPwd+"\r")
	answer = strings.ReplaceAll(answer, "\r\r", "\r")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("applying the restart answer: %v", err)
	}
	before := v.Stats().VideoFrames
	if err := v.WaitVideoFrames(ctx, before+30); err != nil {
		t.Fatalf("media after ICE restart: %v (%+v)", err, v.Stats())
	}
}
