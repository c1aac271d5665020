package media

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Limits on what an offer may hold. Real clients send 2-3 m-lines and a
// dozen candidates; far more is a malformed or hostile offer that would cost
// memory and ICE checks.
const (
	maxMediaSections = 16
	maxCandidates    = 64
)

// offerInfo is what pinhole needs to know of an offer before handing it to
// Pion, and what Pion's answer must then say.
type offerInfo struct {
	audio, video int // m-lines of each kind that pinhole serves
	candidates   int
	// pion is the offer as Pion is given it: parsed once here and pruned of
	// what pinhole cannot serve (see pruneMedia), so Pion's codec matching,
	// quadratic in the offer's payload types, runs on a handful of them.
	pion string
	// served lists the m-lines pinhole answers with media, by index; each
	// must be answered with port != 0 and the direction answerDirection.
	served []int
}

// forwarded reports whether pinhole forwards a codec (the set kindOf in
// keyframe.go knows); H264 counts only in packetization-mode 1.
//
// H264: RFC 6184 §6.2 makes single NAL unit mode (packetization-mode 0,
// also meant when the parameter is absent, RFC 6184 §8.1) the default, and
// browsers send FU-A fragments only in mode 1. pinhole forwards packets
// unchanged, so a viewer must have negotiated the publisher's mode: every
// browser publishes mode 1, so mode 1 is the only H264 pinhole answers, to
// publishers and viewers alike. A Firefox viewer (whose offer has 126 in
// mode 1 and 97 in mode 0) is answered 126 and decodes a Chrome publisher.
func forwarded(kind, name, fmtpLine string) bool {
	switch strings.ToLower(kind + "/" + name) {
	case "audio/opus", "video/vp8", "video/vp9", "video/av1":
		return true
	case "video/h264":
		return fmtpParam(fmtpLine, "packetization-mode") == "1"
	}
	return false
}

// fmtpParam returns one parameter of an fmtp value ("a=b;c=d").
func fmtpParam(line, key string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// answerDirection is the direction pinhole answers every served m-line with.
//
// RFC 9725 §4.2: "the SDP answer MUST use the "recvonly" attribute in any
// case". WHEP (draft-ietf-wish-whep §4.2, media direction attributes): "When
// a WHEP endpoint sends an SDP answer (accepting client offer), it MUST use
// "sendonly"".
func answerDirection(role Role) string {
	if role == RoleViewer {
		return "sendonly"
	}
	return "recvonly"
}

// inspectOffer parses an offer, checks pinhole can answer it in role, and
// prunes it for Pion. Errors wrap ErrBadOffer (400: unparseable, missing
// ICE/DTLS attributes) or ErrUnsupportedTracks (422: a track set pinhole
// cannot serve in full) and name the m-line at fault.
func inspectOffer(offer string, role Role) (offerInfo, error) {
	var info offerInfo
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return info, detail(ErrBadOffer, "SDP does not parse: %v", err)
	}
	if len(d.MediaDescriptions) == 0 {
		return info, detail(ErrUnsupportedTracks, "the offer has no m-line")
	}
	if len(d.MediaDescriptions) > maxMediaSections {
		return info, detail(ErrBadOffer, "the offer has %d m-lines, at most %d are accepted", len(d.MediaDescriptions), maxMediaSections)
	}
	sessionUfrag, _ := d.Attribute("ice-ufrag")
	_, sessionFingerprint := d.Attribute("fingerprint")
	sessionDir := sessionDirection(&d)
	for i, m := range d.MediaDescriptions {
		kind := m.MediaName.Media
		for _, a := range m.Attributes {
			if a.Key == "candidate" {
				info.candidates++
			}
		}
		if kind != "audio" && kind != "video" {
			continue // data channels and the like: left to Pion
		}
		_, bundleOnly := m.Attribute("bundle-only")
		// A port of 0 means the offerer does not want the m-line (RFC 3264
		// §5.1), except with a=bundle-only: RFC 8843 §6 has the offerer
		// put port 0 on m-lines it wants only inside the BUNDLE group
		// (Firefox, GStreamer), and RFC 9725 §4.5.1 lets WHIP clients do so.
		if m.MediaName.Port.Value == 0 && !bundleOnly {
			continue
		}
		at := mlineName(i, m)
		if _, ok := m.Attribute("ice-ufrag"); !ok && sessionUfrag == "" {
			return info, detail(ErrBadOffer, "%s has no a=ice-ufrag", at)
		}
		if _, ok := m.Attribute("fingerprint"); !ok && !sessionFingerprint {
			return info, detail(ErrBadOffer, "%s has no a=fingerprint (DTLS is required)", at)
		}
		dir := direction(m, sessionDir)
		switch role {
		case RolePublisher:
			// RFC 9725 §4.2: the offer SHOULD be sendonly and the answer
			// MUST be recvonly "in any case". sendrecv is answered recvonly
			// (RFC 3264 §6.1 allows it); a recvonly or inactive m-line can
			// only be answered sendonly or inactive, so it is refused.
			if dir != "sendonly" && dir != "sendrecv" {
				return info, detail(ErrUnsupportedTracks,
					"%s is %s: a WHIP offer sends media (sendonly or sendrecv, RFC 9725 section 4.2)", at, dir)
			}
		case RoleViewer:
			// WHEP §4.2: the offer SHOULD be recvonly, MAY be sendrecv, and
			// "inactive" and "sendonly" MUST NOT be used; the answer MUST
			// be sendonly.
			if dir != "recvonly" && dir != "sendrecv" {
				return info, detail(ErrUnsupportedTracks,
					"%s is %s: a WHEP offer receives media (recvonly or sendrecv, WHEP section 4.2)", at, dir)
			}
		}
		// Simulcast (RFC 8853) is several encodings of one track on one
		// m-line; pinhole forwards one stream per kind and would drain the
		// others, a partially successful session RFC 9725 §4.5.3 says not
		// to create. Refused with what to change.
		if v, ok := m.Attribute("simulcast"); ok {
			return info, detail(ErrUnsupportedTracks,
				"%s offers simulcast (a=simulcast:%s): pinhole forwards one stream per kind, send a single encoding", at, v)
		}
		if !pruneMedia(m) {
			return info, detail(ErrUnsupportedTracks,
				"%s offers no codec pinhole forwards (Opus, VP8, VP9, H264 packetization-mode 1, AV1); offered %s",
				at, strings.Join(offeredCodecs(m), ", "))
		}
		setDirection(m, answerDirection(role))
		if kind == "audio" {
			info.audio++
		} else {
			info.video++
		}
		// RFC 9725 §4.5.2 (WHEP §4.5.2 alike): one MediaStream with at
		// most one track of each kind; an endpoint that cannot serve the
		// track count MUST reject the POST with 422 or 400.
		if info.audio > 1 || info.video > 1 {
			return info, detail(ErrUnsupportedTracks,
				"%s is a second %s track: pinhole serves one audio and one video track (RFC 9725 section 4.5.2)", at, kind)
		}
		info.served = append(info.served, i)
	}
	if info.candidates > maxCandidates {
		return info, detail(ErrBadOffer, "the offer has %d candidates, at most %d are accepted", info.candidates, maxCandidates)
	}
	if info.audio+info.video == 0 {
		what := "sends"
		if role == RoleViewer {
			what = "receives"
		}
		return info, detail(ErrUnsupportedTracks,
			"no m-line %s audio or video in a codec pinhole forwards (Opus, VP8, VP9, H264, AV1)", what)
	}
	// The session-level direction, if any, now only describes m-lines
	// pinhole does not serve; each served one carries its own.
	b, err := d.Marshal()
	if err != nil {
		return info, detail(ErrBadOffer, "SDP does not marshal: %v", err)
	}
	info.pion = string(b)
	return info, nil
}

func mlineName(i int, m *sdp.MediaDescription) string {
	if mid, ok := m.Attribute("mid"); ok {
		return fmt.Sprintf("m-line %d (%s, mid %s)", i, m.MediaName.Media, mid)
	}
	return fmt.Sprintf("m-line %d (%s)", i, m.MediaName.Media)
}

func isDirection(k string) bool {
	return k == "sendrecv" || k == "sendonly" || k == "recvonly" || k == "inactive"
}

// sessionDirection is a session-level direction attribute, "" if none.
func sessionDirection(d *sdp.SessionDescription) string {
	for _, a := range d.Attributes {
		if isDirection(a.Key) {
			return a.Key
		}
	}
	return ""
}

// direction is an m-line's direction: its own attribute, else the
// session's, else sendrecv (RFC 8866 §6.7).
func direction(m *sdp.MediaDescription, session string) string {
	for _, a := range m.Attributes {
		if isDirection(a.Key) {
			return a.Key
		}
	}
	if session != "" {
		return session
	}
	return "sendrecv"
}

// setDirection makes the m-line say dir. The offer Pion is given is the
// client's with sendrecv narrowed to the one direction pinhole serves:
// Pion answers sendrecv to a sendrecv offer once a viewer's track is added,
// and WHEP §4.2 wants sendonly; answering recvonly or sendonly to a sendrecv
// offer is an answer RFC 3264 §6.1 allows.
func setDirection(m *sdp.MediaDescription, answer string) {
	offer := "sendonly" // what makes Pion answer recvonly
	if answer == "sendonly" {
		offer = "recvonly"
	}
	for i, a := range m.Attributes {
		if isDirection(a.Key) {
			m.Attributes[i] = sdp.NewPropertyAttribute(offer)
			return
		}
	}
	m.Attributes = append(m.Attributes, sdp.NewPropertyAttribute(offer))
}

// pruneMedia drops from an m-line the payload types of codecs pinhole does
// not forward, with their rtpmap, fmtp and rtcp-fb lines and their RTX
// (RFC 4588 apt=) companions; mid, ICE, DTLS, extmap and ssrc lines stay.
// It reports whether any forwarded codec is left. Pion would answer the
// dropped ones only to have pinhole never forward them, and matching them
// is most of SetRemoteDescription's cost (issue 11).
// RTX goes in every case: pinhole negotiates none (newMediaEngine).
func pruneMedia(m *sdp.MediaDescription) bool {
	names := map[string]string{}
	fmtps := map[string]string{}
	for _, a := range m.Attributes {
		pt, rest, _ := strings.Cut(a.Value, " ")
		switch a.Key {
		case "rtpmap":
			name, _, _ := strings.Cut(rest, "/")
			names[pt] = name
		case "fmtp":
			fmtps[pt] = rest
		}
	}
	keep := map[string]bool{}
	for pt, name := range names {
		if forwarded(m.MediaName.Media, name, fmtps[pt]) {
			keep[pt] = true
		}
	}
	if len(keep) == 0 {
		return false
	}
	formats := m.MediaName.Formats[:0]
	for _, pt := range m.MediaName.Formats {
		if keep[pt] {
			formats = append(formats, pt)
		}
	}
	m.MediaName.Formats = formats
	attrs := m.Attributes[:0]
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap", "fmtp", "rtcp-fb":
			pt, _, _ := strings.Cut(a.Value, " ")
			if pt != "*" && !keep[pt] {
				continue
			}
		}
		attrs = append(attrs, a)
	}
	m.Attributes = attrs
	return true
}

// offeredCodecs names an m-line's codecs, for the detail of a 422.
func offeredCodecs(m *sdp.MediaDescription) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		_, enc, _ := strings.Cut(a.Value, " ")
		name, _, _ := strings.Cut(enc, "/")
		if !seen[strings.ToLower(name)] && !isAuxCodec(m.MediaName.Media+"/"+name) {
			seen[strings.ToLower(name)] = true
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// checkAnswer holds Pion's answer to the rules inspectOffer enforced: every
// served m-line accepted (RFC 9725 §4.5.3: no partially successful answer;
// Pion may still refuse a codec pinhole kept, an H264 profile it does not
// register) and in the one direction pinhole serves (RFC 9725 §4.2, WHEP
// §4.2).
func checkAnswer(info offerInfo, role Role, answer string) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return fmt.Errorf("answer does not parse: %w", err)
	}
	want := answerDirection(role)
	for _, i := range info.served {
		if i >= len(d.MediaDescriptions) {
			return detail(ErrUnsupportedTracks, "m-line %d is not answered", i)
		}
		m := d.MediaDescriptions[i]
		if m.MediaName.Port.Value == 0 || len(m.MediaName.Formats) == 0 {
			return detail(ErrUnsupportedTracks, "%s: no offered codec can be negotiated", mlineName(i, m))
		}
		if got := direction(m, sessionDirection(&d)); got != want {
			return fmt.Errorf("%s answered %s, want %s", mlineName(i, m), got, want)
		}
	}
	return nil
}

// rewriteCandidatePorts replaces the port of pinhole's UDP candidates in an
// SDP or SDP fragment: Pion rewrites candidate addresses but never ports, and
// a router forwarding public port M to local port N needs M in the answer.
func rewriteCandidatePorts(s string, local, public int) string {
	if local == public {
		return s
	}
	lp, pp := strconv.Itoa(local), strconv.Itoa(public)
	lines := strings.SplitAfter(s, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		body := strings.TrimRight(line, "\r\n")
		eol := line[len(body):]
		f := strings.Fields(body)
		// a=candidate:<foundation> <component> <transport> <priority> <addr> <port> typ ...
		if len(f) >= 6 && strings.EqualFold(f[2], "udp") && f[5] == lp {
			f[5] = pp
			lines[i] = strings.Join(f, " ") + eol
		}
	}
	return strings.Join(lines, "")
}

// answerCodecs lists the media codecs of an SDP, in order, without
// retransmission and FEC formats.
func answerCodecs(s string) []string {
	var d sdp.SessionDescription
	if d.UnmarshalString(s) != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Port.Value == 0 {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			_, enc, _ := strings.Cut(a.Value, " ")
			name, _, _ := strings.Cut(enc, "/")
			mime := m.MediaName.Media + "/" + name
			if isAuxCodec(mime) || seen[strings.ToLower(mime)] {
				continue
			}
			seen[strings.ToLower(mime)] = true
			out = append(out, mime)
		}
	}
	return out
}

// candidateLines returns the a=candidate lines of an SDP.
func candidateLines(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "a=candidate:") {
			out = append(out, strings.TrimPrefix(line, "a="))
		}
	}
	return out
}

// sdpFrag is a parsed application/trickle-ice-sdpfrag body (RFC 8840).
type sdpFrag struct {
	ufrag, pwd      string
	candidates      []fragCandidate
	endOfCandidates bool
}

type fragCandidate struct {
	mid       string
	candidate string // "candidate:..." without "a="
}

// parseSDPFrag reads a trickle-ice-sdpfrag: session-level ice-ufrag/pwd and
// m= sections with a=mid and a=candidate lines (RFC 8840 section 9).
func parseSDPFrag(body string) (sdpFrag, error) {
	var f sdpFrag
	mid := ""
	sawLine := false
	for n, raw := range strings.Split(body, "\n") {
		line := strings.TrimRight(raw, "\r")
		if line == "" {
			continue
		}
		sawLine = true
		if len(line) < 2 || line[1] != '=' {
			return f, detail(ErrBadFragment, "line %d is not an SDP line: %q", n+1, truncate(line, 40))
		}
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := strings.TrimPrefix(line, "a=")
			if len(strings.Fields(c)) < 8 {
				return f, detail(ErrBadFragment, "line %d: candidate has too few fields", n+1)
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, candidate: c})
			if len(f.candidates) > maxCandidates {
				return f, detail(ErrBadFragment, "more than %d candidates", maxCandidates)
			}
		case line == "a=end-of-candidates":
			f.endOfCandidates = true
		}
	}
	if !sawLine {
		return f, detail(ErrBadFragment, "empty fragment")
	}
	return f, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// replaceICECredentials puts new ice-ufrag/pwd into an SDP and drops its
// candidates: the remote offer of an ICE restart.
func replaceICECredentials(s, ufrag, pwd string) string {
	lines := strings.SplitAfter(s, "\n")
	out := lines[:0]
	for _, line := range lines {
		t := strings.TrimRight(line, "\r\n")
		eol := line[len(t):]
		switch {
		case strings.HasPrefix(t, "a=ice-ufrag:"):
			out = append(out, "a=ice-ufrag:"+ufrag+eol)
		case strings.HasPrefix(t, "a=ice-pwd:"):
			out = append(out, "a=ice-pwd:"+pwd+eol)
		case strings.HasPrefix(t, "a=candidate:"), t == "a=end-of-candidates":
		default:
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// answerFragment builds the sdpfrag answering an ICE restart (RFC 8840,
// RFC 9725 section 4.3.2): the new ufrag/pwd and pinhole's candidates.
func answerFragment(answer string) string {
	var b strings.Builder
	var d sdp.SessionDescription
	if d.UnmarshalString(answer) != nil {
		return ""
	}
	ufrag, pwd := "", ""
	if len(d.MediaDescriptions) > 0 {
		ufrag, _ = d.MediaDescriptions[0].Attribute("ice-ufrag")
		pwd, _ = d.MediaDescriptions[0].Attribute("ice-pwd")
	}
	if v, ok := d.Attribute("ice-ufrag"); ok {
		ufrag = v
	}
	if v, ok := d.Attribute("ice-pwd"); ok {
		pwd = v
	}
	b.WriteString("a=ice-ufrag:" + ufrag + "\r\n")
	b.WriteString("a=ice-pwd:" + pwd + "\r\n")
	// Pion bundles every m-line on one transport: the candidates of the
	// first m-line are all of them.
	for i, m := range d.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		b.WriteString("m=" + m.MediaName.String() + "\r\n")
		b.WriteString("a=mid:" + mid + "\r\n")
		if i == 0 {
			for _, a := range m.Attributes {
				if a.Key == "candidate" {
					b.WriteString("a=candidate:" + a.Value + "\r\n")
				}
			}
			b.WriteString("a=end-of-candidates\r\n")
		}
	}
	return b.String()
}
