package handlers

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
)

// addICELinks adds one Link per STUN/TURN server a client allowed into the
// room may use (RFC 9725 section 4.6), for the session with public id pub:
//
//   - STUN servers as configured;
//   - TURN servers with static credentials from --ice-servers only with
//     --share-ice-credentials: handing them to every anonymous client would
//     make the operator's TURN server an open relay;
//   - TURN servers without credentials get, with --turn-secret, time-limited
//     ones of the TURN REST scheme (coturn use-auth-secret): username
//     "expiry:id", credential base64(HMAC-SHA1(secret, username)). They
//     expire after --turn-ttl and name the session, so a leaked one is
//     worth little and can be traced.
func (s *Server) addICELinks(h http.Header, pub string) {
	for _, srv := range s.iceServersFor(pub, time.Now()) {
		h.Add("Link", srv.LinkValue())
	}
}

// iceServersFor is the list addICELinks advertises.
func (s *Server) iceServersFor(pub string, now time.Time) []api.ICEServer {
	var out []api.ICEServer
	for _, srv := range s.cfg.ICEServers {
		isTURN := strings.HasPrefix(srv.URL, "turn")
		switch {
		case !isTURN:
			out = append(out, srv)
		case srv.Username != "":
			if s.cfg.ShareICECredentials {
				out = append(out, srv)
			}
		case s.cfg.TURNSecret != "":
			srv.Username, srv.Credential = TURNRESTCredential(s.cfg.TURNSecret, pub, now.Add(s.turnTTL()))
			out = append(out, srv)
		default:
			out = append(out, srv)
		}
	}
	return out
}

// DefaultTURNTTL is how long TURN REST credentials last unless TURNTTL
// says otherwise: longer than a session, because a TURN allocation is
// refreshed (every 10 minutes) with the same credentials.
const DefaultTURNTTL = 12 * time.Hour

func (s *Server) turnTTL() time.Duration {
	if s.cfg.TURNTTL > 0 {
		return s.cfg.TURNTTL
	}
	return DefaultTURNTTL
}

// TURNRESTCredential makes a TURN REST API credential (draft-uberti-
// behave-turn-rest, as coturn's use-auth-secret checks it) for id, valid
// until expiry.
func TURNRESTCredential(secret, id string, expiry time.Time) (username, credential string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + id
	mac := hmac.New(sha1.New, []byte(secret))
	_, _ = mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
