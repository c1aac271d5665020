package media

import (
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
// Pion.
type offerInfo struct {
	audio, video int // m-lines of each kind that pinhole can serve
	candidates   int
}

// servableAudio and servableVideo are the codecs forwarded between
// publishers and viewers.
var servableCodecs = map[string]bool{"opus": true, "vp8": true, "vp9": true, "h264": true, "av1": true}

// inspectOffer parses an offer and checks it can be served in role. Errors
// wrap ErrBadOffer (unparseable) or ErrUnsupportedTracks (422).
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
	for i, m := range d.MediaDescriptions {
		kind := m.MediaName.Media
		for _, a := range m.Attributes {
			if a.Key == "candidate" {
				info.candidates++
			}
		}
		if kind != "audio" && kind != "video" {
			continue // data channels and the like: answered as rejected
		}
		if m.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := m.Attribute("ice-ufrag"); !ok && sessionUfrag == "" {
			return info, detail(ErrBadOffer, "m-line %d (%s) has no a=ice-ufrag", i, kind)
		}
		if _, ok := m.Attribute("fingerprint"); !ok {
			if _, ok := d.Attribute("fingerprint"); !ok {
				return info, detail(ErrBadOffer, "m-line %d (%s) has no a=fingerprint (DTLS is required)", i, kind)
			}
		}
		dir := direction(m)
		switch role {
		case RolePublisher:
			if dir == "recvonly" || dir == "inactive" {
				continue
			}
		case RoleViewer:
			if dir == "sendonly" || dir == "inactive" {
				continue
			}
		}
		if !hasServableCodec(m) {
			continue
		}
		if kind == "audio" {
			info.audio++
		} else {
			info.video++
		}
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
	return info, nil
}

func direction(m *sdp.MediaDescription) string {
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return "sendrecv"
}

func hasServableCodec(m *sdp.MediaDescription) bool {
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		// "96 VP8/90000"
		_, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(enc, "/")
		if servableCodecs[strings.ToLower(name)] {
			return true
		}
	}
	return false
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
