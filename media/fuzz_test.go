package media

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

// The parsers below read what a stranger on the internet sends: the WHIP/WHEP
// offer and the trickle-ICE PATCH body. Their fuzz targets check they never
// panic, that every refusal is one of the sentinels the handlers map to a 4xx,
// and that what they accept respects pinhole's limits. Seed corpora live in
// testdata/fuzz/<FuzzName>/ (real Pion offers, browser-shaped offers, each
// refusal once); plain `go test` runs them, `make fuzz` explores further.

// FuzzInspectOffer feeds arbitrary SDP to the offer checks and to the other
// helpers that parse SDP (answerCodecs, candidateLines, answerFragment).
func FuzzInspectOffer(f *testing.F) {
	f.Fuzz(func(t *testing.T, offer string, viewer bool) {
		role := RolePublisher
		if viewer {
			role = RoleViewer
		}
		info, err := inspectOffer(offer, role)
		if err != nil {
			if !errors.Is(err, ErrBadOffer) && !errors.Is(err, ErrUnsupportedTracks) {
				t.Fatalf("refusal %v is neither ErrBadOffer nor ErrUnsupportedTracks (the handler would answer 500)", err)
			}
			var d *DetailError
			if !errors.As(err, &d) || d.Detail == "" {
				t.Fatalf("refusal %v carries no detail for the client", err)
			}
		} else {
			if info.audio+info.video == 0 {
				t.Fatalf("accepted an offer with nothing to serve: %+v", info)
			}
			if info.candidates > maxCandidates {
				t.Fatalf("accepted %d candidates, limit %d", info.candidates, maxCandidates)
			}
			var d sdp.SessionDescription
			if d.UnmarshalString(offer) != nil {
				t.Fatal("accepted an offer that does not parse")
			}
			if n := len(d.MediaDescriptions); n > maxMediaSections {
				t.Fatalf("accepted %d m-lines, limit %d", n, maxMediaSections)
			}
		}
		// These run on Pion's own answers in production, but cost nothing
		// to harden against anything.
		_ = answerCodecs(offer)
		for _, c := range candidateLines(offer) {
			if !strings.HasPrefix(c, "candidate:") {
				t.Fatalf("candidate line %q lost its prefix", c)
			}
		}
		_ = answerFragment(offer)
		_ = iceUfrag(offer)
		_ = firstCandidateAddr(offer)
	})
}

// FuzzParseSDPFrag feeds arbitrary PATCH bodies to the trickle-ICE fragment
// parser and to the ICE-restart rewrite that uses its credentials.
func FuzzParseSDPFrag(f *testing.F) {
	f.Fuzz(func(t *testing.T, body string) {
		frag, err := parseSDPFrag(body)
		if err != nil {
			if !errors.Is(err, ErrBadFragment) {
				t.Fatalf("refusal %v is not ErrBadFragment", err)
			}
			return
		}
		if len(frag.candidates) > maxCandidates {
			t.Fatalf("accepted %d candidates, limit %d", len(frag.candidates), maxCandidates)
		}
		for _, c := range frag.candidates {
			if !strings.HasPrefix(c.candidate, "candidate:") || len(strings.Fields(c.candidate)) < 8 {
				t.Fatalf("accepted candidate %q", c.candidate)
			}
			// A lone CR inside a line is no line break in SDP (RFC 8866
			// section 5: CRLF, LF tolerated); only LF and a trailing CR are.
			if spansLines(c.candidate) || spansLines(c.mid) {
				t.Fatalf("candidate %q / mid %q spans lines", c.candidate, c.mid)
			}
		}
		if spansLines(frag.ufrag) || spansLines(frag.pwd) {
			t.Fatalf("credentials %q/%q span lines", frag.ufrag, frag.pwd)
		}
		// An ICE restart splices the fragment's credentials into the last
		// remote offer; the result must keep the offer's shape and carry no
		// old candidate.
		out := replaceICECredentials(body, frag.ufrag, frag.pwd)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimRight(line, "\r"), "a=candidate:") {
				t.Fatalf("restart offer kept candidate line %q", line)
			}
		}
	})
}

// FuzzRewriteCandidatePorts checks the public-port rewrite of answers and
// restart fragments: it only ever touches the port of UDP candidates on the
// local port, and leaves every other byte alone.
func FuzzRewriteCandidatePorts(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string, local, public uint16) {
		out := rewriteCandidatePorts(s, int(local), int(public))
		if local == public {
			if out != s {
				t.Fatal("rewrite with equal ports changed the text")
			}
			return
		}
		in, got := strings.SplitAfter(s, "\n"), strings.SplitAfter(out, "\n")
		if len(in) != len(got) {
			t.Fatalf("rewrite changed the line count from %d to %d", len(in), len(got))
		}
		lp, pp := strconv.Itoa(int(local)), strconv.Itoa(int(public))
		for i := range in {
			if in[i] == got[i] {
				continue
			}
			if !strings.HasPrefix(in[i], "a=candidate:") {
				t.Fatalf("rewrite changed a non-candidate line %q -> %q", in[i], got[i])
			}
			f := strings.Fields(got[i])
			if len(f) < 6 || f[5] != pp || !strings.EqualFold(f[2], "udp") {
				t.Fatalf("rewrite of %q gave %q, want UDP port %s", in[i], got[i], pp)
			}
			if orig := strings.Fields(in[i]); orig[5] != lp {
				t.Fatalf("rewrite touched port %s, not the local %s", orig[5], lp)
			}
			// Line ending preserved: \r\n stays \r\n, a last line without
			// one stays without.
			if strings.HasSuffix(in[i], "\n") != strings.HasSuffix(got[i], "\n") ||
				strings.HasSuffix(strings.TrimSuffix(in[i], "\n"), "\r") != strings.HasSuffix(strings.TrimSuffix(got[i], "\n"), "\r") {
				t.Fatalf("rewrite changed the line ending of %q -> %q", in[i], got[i])
			}
		}
	})
}

func spansLines(s string) bool {
	return strings.Contains(s, "\n") || strings.HasSuffix(s, "\r")
}
