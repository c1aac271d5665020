package edge

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// AllowHosts returns a middleware that answers 421 Misdirected Request to
// a request whose Host is not in hosts (--allowed-hosts), defeating DNS
// rebinding: a page on attacker.example whose name is made to resolve to
// this server sends Host: attacker.example, which is refused. 421 rather
// than 403 because RFC 9110 section 15.5.20 has it for exactly this, a
// server that will not answer for that authority; who the client is does
// not matter.
//
// An entry without a port ("media.example.org", "203.0.113.5", "::1")
// allows that host on any port; one with a port ("media.example.org:8443",
// "[2001:db8::1]:8443") only there. Names compare case-insensitively and
// without a trailing dot. localhost, 127.0.0.1 and ::1 are always allowed:
// nobody outside can make a browser send them, and the box's own checks use
// them. An empty list turns the check off. unlock names the setting to
// change (e.g. "--allowed-hosts"), for the refusal's message.
func AllowHosts(hosts []string, unlock string) (func(http.Handler) http.Handler, error) {
	if len(hosts) == 0 {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	anyPort := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}
	exact := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		host, port, hasPort := splitHost(h)
		if host == "" || strings.ContainsAny(host, "/ @?#") {
			return nil, fmt.Errorf("allowed hosts: %q is not a host or host:port", h)
		}
		if n, err := strconv.ParseUint(port, 10, 16); hasPort && (err != nil || n == 0) {
			return nil, fmt.Errorf("allowed hosts: %q is not a host or host:port", h)
		}
		if hasPort {
			exact[net.JoinHostPort(host, port)] = true
		} else {
			anyPort[host] = true
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, port, hasPort := splitHost(r.Host)
			if anyPort[host] || (hasPort && exact[net.JoinHostPort(host, port)]) {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusMisdirectedRequest)
			// %q: the Host header is the client's, never echoed raw.
			fmt.Fprintf(w, "this server does not answer for host %q; add it to %s to allow it\n", r.Host, unlock)
		})
	}, nil
}

// splitHost splits "host", "host:port", "[v6]:port", "[v6]" or a bare v6
// address into a normalised host (lower case, no brackets, no trailing
// dot) and port.
func splitHost(s string) (host, port string, hasPort bool) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port, hasPort = h, p, true
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	}
	return strings.TrimSuffix(strings.ToLower(host), "."), port, hasPort
}
