package api

import (
	"fmt"
	"strings"
)

// ICEServer is a STUN or TURN server handed to clients in a Link header
// (RFC 9725 section 4.6) and checked by the diagnostics report.
type ICEServer struct {
	// URL is the stun:, turn: or turns: URI (RFC 7064, RFC 7065).
	URL string
	// Username and Credential are set for TURN servers.
	Username   string
	Credential string
}

// ParseICEServer parses one --ice-servers entry. TURN credentials may be
// given as userinfo, "turn:user:secret@turn.example.org:3478?transport=udp",
// because RFC 7065 URIs have no place for them; they are moved to the Link
// header parameters.
func ParseICEServer(s string) (ICEServer, error) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || rest == "" {
		return ICEServer{}, fmt.Errorf("%q is not a stun:, turn: or turns: URL", s)
	}
	switch strings.ToLower(scheme) {
	case "stun", "stuns":
		if strings.Contains(rest, "@") {
			return ICEServer{}, fmt.Errorf("%q: STUN URLs carry no credentials", s)
		}
		return ICEServer{URL: strings.ToLower(scheme) + ":" + rest}, nil
	case "turn", "turns":
		srv := ICEServer{}
		// The host is after the last "@": a password may contain "@"
		// itself ("turn:alice:p@ss@host" is user alice, credential p@ss),
		// and no host name does.
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			userinfo, host := rest[:i], rest[i+1:]
			user, cred, ok := strings.Cut(userinfo, ":")
			if !ok || user == "" || cred == "" {
				return ICEServer{}, fmt.Errorf("%q: TURN credentials must be user:secret@host", s)
			}
			srv.Username, srv.Credential, rest = user, cred, host
		}
		if rest == "" || strings.HasPrefix(rest, "?") {
			return ICEServer{}, fmt.Errorf("%q has no host", s)
		}
		srv.URL = strings.ToLower(scheme) + ":" + rest
		return srv, nil
	default:
		return ICEServer{}, fmt.Errorf("%q is not a stun:, turn: or turns: URL", s)
	}
}

// LinkValue renders the server as an RFC 8288 Link field value with the
// ice-server relation and, for TURN, the RFC 9725 section 4.6 credential
// parameters.
func (s ICEServer) LinkValue() string {
	v := "<" + s.URL + `>; rel="ice-server"`
	if s.Username != "" {
		v += "; username=" + quote(s.Username) + "; credential=" + quote(s.Credential) +
			`; credential-type="password"`
	}
	return v
}

// quote makes an RFC 9110 section 5.6.4 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
