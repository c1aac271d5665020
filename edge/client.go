package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	proxyproto "github.com/pires/go-proxyproto"
)

// Via says how a request's client address was learned, which is how far
// it can be believed.
type Via int

const (
	// ViaUnknown: the request did not come through a server with
	// [ConnContext] installed, so the path is not known; Addr is the
	// request's RemoteAddr as net/http saw it.
	ViaUnknown Via = iota
	// ViaSocket: the TCP peer, with nothing in between that pinhole knows
	// of. Behind a forwarder that does not announce clients (FRP without
	// the PROXY protocol, ssh -R) that peer is the forwarder, 127.0.0.1 for
	// every internet client.
	ViaSocket
	// ViaProxyProtocol: the PROXY header of a configured upstream.
	ViaProxyProtocol
	// ViaForwarded: X-Forwarded-For or Forwarded, written by a trusted proxy.
	ViaForwarded
	// ViaProxyPeer: the peer is a trusted proxy but named no usable client
	// (no header, "unknown", an obfuscated name, garbage); Addr is that
	// proxy, so every such client shares one limit.
	ViaProxyPeer
)

// String names v for logs: socket, proxy-protocol, forwarded, proxy-peer
// or unknown.
func (v Via) String() string {
	switch v {
	case ViaSocket:
		return "socket"
	case ViaProxyProtocol:
		return "proxy-protocol"
	case ViaForwarded:
		return "forwarded"
	case ViaProxyPeer:
		return "proxy-peer"
	}
	return "unknown"
}

// Client is who sent a request, as far as the edge can tell.
type Client struct {
	// Addr is the client's address: what limits key on (see [LimitKey])
	// and logs show. IPv4-mapped IPv6 is unmapped.
	Addr netip.Addr
	// Peer is the address of the TCP peer on pinhole's socket, before any
	// PROXY header or forwarding header: the last hop.
	Peer netip.Addr
	// Via is how Addr was learned.
	Via Via
}

// IsLoopback reports whether the client itself is on this machine's
// loopback: its address is loopback and it came straight over the socket.
// A PROXY or forwarding header naming 127.0.0.1 names the proxy's own
// machine, not this one, so it does not count. Even then this is a hint
// (e.g. for "you are testing from the box itself"), never a privilege:
// an unannounced forwarder (FRP without the PROXY protocol) makes every
// internet client a loopback client, and a web page in a browser on the box
// can reach loopback too.
func (c Client) IsLoopback() bool {
	return c.Via == ViaSocket && c.Addr.IsLoopback()
}

// ForwardHeader names the header a trusted proxy writes the client into.
type ForwardHeader int

const (
	// XForwardedFor is X-Forwarded-For, written by nginx, Caddy, Traefik
	// and most others.
	XForwardedFor ForwardHeader = iota
	// Forwarded is RFC 7239's Forwarded.
	Forwarded
)

// Resolver finds the client of each request (--trusted-proxies).
type Resolver struct {
	trusted []netip.Prefix
	header  ForwardHeader
}

// NewResolver builds a resolver that reads header only from peers in
// trusted and ignores it from everyone else, who could write anything in
// it. Only the one header is read: a proxy appends to the header it knows
// and passes others through untouched, so reading the other one would take
// a client's forgery as the proxy's word.
func NewResolver(trusted []netip.Prefix, header ForwardHeader) (*Resolver, error) {
	for _, p := range trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("trusted proxies: invalid prefix %v", p)
		}
	}
	if header != XForwardedFor && header != Forwarded {
		return nil, fmt.Errorf("trusted proxies: unknown header %d", header)
	}
	return &Resolver{trusted: append([]netip.Prefix(nil), trusted...), header: header}, nil
}

type ctxKey int

const (
	connKey ctxKey = iota
	clientKey
)

// ConnContext is for [http.Server.ConnContext]: it keeps the connection in
// the context so the [Resolver] can tell a PROXY-announced client from a
// socket peer. It only stores the connection: asking a PROXY connection for
// its address here would read the header on the accept loop.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey, c)
}

// Middleware resolves each request's [Client] once and keeps it in the
// request's context for [ClientOf], [ClientAddr] and [ClientIsLoopback].
func (res *Resolver) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := res.Resolve(r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey, c)))
	})
}

// Resolve works out the client of r; [Resolver.Middleware] calls it once
// per request.
func (res *Resolver) Resolve(r *http.Request) Client {
	c := peerOf(r)
	if !inPrefixes(c.Addr, res.trusted) {
		return c
	}
	var hops []string
	switch res.header {
	case XForwardedFor:
		hops = xffHops(r.Header.Values("X-Forwarded-For"))
	case Forwarded:
		hops = forwardedHops(r.Header.Values("Forwarded"))
	}
	// The right-most hop was written by our peer, the one before it by the
	// proxy before that, and so on; the first hop from the right that is
	// not a trusted proxy is the client as told by one we trust. Anything
	// further left was written by the client or its proxies and is theirs
	// to invent, so taking the left-most (as many do) lets any client pick
	// its address.
	last := c.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		ip, ok := parseNode(hops[i])
		if !ok {
			// The trusted proxy that wrote this hop does not know (or
			// will not say) who connected to it: stop at that proxy.
			return Client{Addr: last, Peer: c.Peer, Via: ViaProxyPeer}
		}
		if !inPrefixes(ip, res.trusted) {
			return Client{Addr: ip, Peer: c.Peer, Via: ViaForwarded}
		}
		last = ip
	}
	if len(hops) == 0 {
		return Client{Addr: c.Addr, Peer: c.Peer, Via: ViaProxyPeer}
	}
	// Every hop is trusted: the left-most is as far as anyone knows.
	return Client{Addr: last, Peer: c.Peer, Via: ViaForwarded}
}

// peerOf is the client as the connection tells it.
func peerOf(r *http.Request) Client {
	remote := netip.Addr{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = ap.Addr().Unmap().WithZone("")
	}
	conn, _ := r.Context().Value(connKey).(net.Conn)
	if conn == nil {
		return Client{Addr: remote, Peer: remote, Via: ViaUnknown}
	}
	for {
		switch c := conn.(type) {
		case *tls.Conn:
			conn = c.NetConn()
			continue
		case *limitedConn:
			conn = c.Conn
			continue
		case *demuxConn:
			conn = c.Conn
			continue
		case *proxyproto.Conn:
			peer := addrOf(c.Raw().RemoteAddr())
			if c.ProxyHeader() != nil {
				return Client{Addr: addrOf(c.RemoteAddr()), Peer: peer, Via: ViaProxyProtocol}
			}
			return Client{Addr: peer, Peer: peer, Via: ViaSocket}
		}
		peer := addrOf(conn.RemoteAddr())
		return Client{Addr: peer, Peer: peer, Via: ViaSocket}
	}
}

// ClientOf is the client [Resolver.Middleware] found for r; without the
// middleware it is r's RemoteAddr with [ViaUnknown].
func ClientOf(r *http.Request) Client {
	if c, ok := r.Context().Value(clientKey).(Client); ok {
		return c
	}
	c := peerOf(r)
	c.Via = ViaUnknown
	return c
}

// ClientAddr is the address of r's client: [ClientOf](r).Addr.
func ClientAddr(r *http.Request) netip.Addr { return ClientOf(r).Addr }

// ClientIsLoopback reports whether r's client is on this machine's
// loopback; see [Client.IsLoopback] for why that is no privilege.
func ClientIsLoopback(r *http.Request) bool { return ClientOf(r).IsLoopback() }

// LimitKey is the key a per-client limit counts addr under: an IPv4
// address as it is, an IPv6 address by its /64, the smallest prefix an ISP
// gives one subscriber (RFC 6177), so one customer cannot get a fresh limit
// per address from its 2^64. The zero Addr gives "".
func LimitKey(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return ""
	case addr.Is4():
		return addr.String()
	}
	p, _ := addr.WithZone("").Prefix(64)
	return p.String()
}

// xffHops splits X-Forwarded-For header lines into hops, in order.
func xffHops(lines []string) []string {
	var hops []string
	for _, l := range lines {
		for _, h := range strings.Split(l, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	return hops
}

// errForwarded is a Forwarded header that does not parse.
var errForwarded = errors.New("malformed Forwarded header")

// forwardedHops returns the for= node of each element of RFC 7239
// Forwarded header lines, in order; an element without for=, or one that
// does not parse, is an empty hop, which stops the walk there. A
// malformed line makes every hop of it empty, since where its elements
// start and end is then unknown.
func forwardedHops(lines []string) []string {
	var hops []string
	for _, l := range lines {
		elems, err := splitForwarded(l)
		if err != nil {
			hops = append(hops, "")
			continue
		}
		for _, pairs := range elems {
			node := ""
			for _, kv := range pairs {
				if strings.EqualFold(kv[0], "for") {
					node = kv[1]
				}
			}
			hops = append(hops, node)
		}
	}
	return hops
}

// splitForwarded parses one Forwarded line (RFC 7239 section 4):
//
//	Forwarded   = 1#forwarded-element
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair = token "=" value
//	value          = token / quoted-string
//
// into elements of key/value pairs, quoted values unquoted.
func splitForwarded(s string) ([][][2]string, error) {
	var (
		elems [][][2]string
		pairs [][2]string
		i     int
	)
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			break
		}
		switch s[i] {
		case ',':
			elems = append(elems, pairs)
			pairs = nil
			i++
			continue
		case ';':
			i++
			continue
		}
		// token "=" value
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		key := s[start:i]
		if key == "" || i >= len(s) || s[i] != '=' {
			return nil, errForwarded
		}
		i++
		var val string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				ch := s[i]
				if ch == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if ch == '"' {
					closed = true
					break
				}
				b.WriteByte(ch)
			}
			if !closed {
				return nil, errForwarded
			}
			val = b.String()
		} else {
			start = i
			for i < len(s) && isTokenChar(s[i]) {
				i++
			}
			val = s[start:i]
		}
		pairs = append(pairs, [2]string{key, val})
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i < len(s) && s[i] != ';' && s[i] != ',' {
			return nil, errForwarded
		}
	}
	elems = append(elems, pairs)
	return elems, nil
}

// isTokenChar is RFC 9110's tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseNode reads one hop: an IP address, with or without a port and
// brackets ("192.0.2.1", "192.0.2.1:4711", "[2001:db8::1]:4711",
// "2001:db8::1"). "unknown", obfuscated names ("_hidden") and anything
// else are not an address.
func parseNode(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		return ip.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	// RFC 7239 allows an obfuscated port ("[2001:db8::1]:_abc") and
	// brackets without a port.
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			if ip, err := netip.ParseAddr(s[1:end]); err == nil && ip.Is6() && ip.Zone() == "" {
				return ip.Unmap(), true
			}
		}
		return netip.Addr{}, false
	}
	if host, _, ok := strings.Cut(s, ":"); ok {
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
