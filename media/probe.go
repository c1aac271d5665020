package media

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Probe timeouts. They are the numbers of the manual checklist: a STUN server
// that does not answer within 5 s is useless to a browser's ICE gathering,
// and a TURN allocation (two round trips plus authentication) gets 8 s.
const (
	DefaultSTUNTimeout = 5 * time.Second
	DefaultTURNTimeout = 8 * time.Second
	// maxProbeTimeout bounds what a caller may ask for, so an API request can
	// never hold a socket for long.
	maxProbeTimeout = 30 * time.Second
	// stunRTO is the first retransmission interval of a binding request
	// (RFC 8489 section 6.2.1 suggests 500 ms); it doubles on every resend.
	stunRTO = 500 * time.Millisecond
)

// ProbeClass classifies the outcome of a STUN or TURN probe, so a client can
// branch on it and a person gets the matching fix.
type ProbeClass string

// Probe classes.
const (
	ProbeOK ProbeClass = "ok"
	// ProbeBadURL: the URL is not a usable stun:/turn: URI.
	ProbeBadURL ProbeClass = "bad-url"
	// ProbeDNS: the host name does not resolve.
	ProbeDNS ProbeClass = "dns"
	// ProbeUnreachable: the network refused at once (no route, port closed
	// on a TCP transport, firewall reject).
	ProbeUnreachable ProbeClass = "unreachable"
	// ProbeTimeout: nothing answered within the timeout (UDP dropped
	// somewhere, or a closed UDP port).
	ProbeTimeout ProbeClass = "timeout"
	// ProbeAuthRefused: the TURN server refused the username or credential.
	ProbeAuthRefused ProbeClass = "auth-refused"
	// ProbeQuota: the TURN server refused the allocation for quota or capacity.
	ProbeQuota ProbeClass = "quota"
	// ProbeRefused: the destination is loopback, private, link-local,
	// shared, multicast, broadcast, a cloud metadata service or this host,
	// and the probe address policy does not allow it; nothing was sent.
	ProbeRefused ProbeClass = "refused-destination"
	// ProbeTLS: the TLS handshake with a turns: server failed.
	ProbeTLS ProbeClass = "tls"
	// ProbeOther: anything else.
	ProbeOther ProbeClass = "other"
)

// STUNProbe asks a STUN server for this host's mapped address.
type STUNProbe struct {
	// URL is a stun: (or turn:, which also answers binding requests) URI over UDP.
	URL string
	// Timeout bounds the whole probe; zero means DefaultSTUNTimeout.
	Timeout time.Duration
	// Resolver resolves the host name; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// Policy says where the probe may send; nil refuses every
	// special-purpose range (see AddrPolicy).
	Policy *AddrPolicy
}

// STUNResult is what a STUN probe saw.
type STUNResult struct {
	URL string `json:"url"`
	// Server is the address the probe sent to, once resolved.
	Server string `json:"server,omitempty"`
	// Reachable is true when the server answered the binding request.
	Reachable bool `json:"reachable"`
	// MappedAddr is this host's address as the server saw it (srflx).
	MappedAddr string `json:"mapped_addr,omitempty"`
	// LocalAddr is the local socket the probe used.
	LocalAddr string `json:"local_addr,omitempty"`
	// RTTMillis is the round-trip time of the answered request.
	RTTMillis float64    `json:"rtt_ms,omitempty"`
	Class     ProbeClass `json:"class"`
	// Error is a fixed sentence per class, never the underlying error:
	// the probe is open to anonymous clients, and raw errors (connection
	// refused, an internal TLS service's certificate names) would make it
	// a scanner.
	Error string `json:"error,omitempty"`
	// Fix says what to do when the probe failed.
	Fix string `json:"fix,omitempty"`
	// Cause is the underlying error, for the server's log only.
	Cause error `json:"-"`
}

// ProbeSTUN sends binding requests to the STUN server at url until it
// answers or timeout (zero: 5 s) passes, under the default address policy
// (every special-purpose range refused); RunSTUNProbe takes a policy.
func ProbeSTUN(ctx context.Context, url string, timeout time.Duration) STUNResult {
	return RunSTUNProbe(ctx, STUNProbe{URL: url, Timeout: timeout})
}

// RunSTUNProbe runs p. It never returns an error: every failure is a class
// in the result.
func RunSTUNProbe(ctx context.Context, p STUNProbe) STUNResult {
	res := STUNResult{URL: p.URL}
	ctx, cancel := context.WithTimeout(ctx, clampTimeout(p.Timeout, DefaultSTUNTimeout))
	defer cancel()

	uri, err := stun.ParseURI(p.URL)
	if err != nil || (uri.Scheme != stun.SchemeTypeSTUN && uri.Scheme != stun.SchemeTypeTURN) || uri.Proto != stun.ProtoTypeUDP {
		res.Class, res.Error, res.Cause = ProbeBadURL, fmt.Sprintf("%q is not a stun: URI over UDP", p.URL), err
		res.Fix = "use stun:host:port, e.g. stun:stun.example.org:3478"
		return res
	}
	policy := p.Policy.For(uri.Host, uri.Port)
	fail := func(err error) STUNResult {
		res.Class, res.Error, res.Fix = classify(err, uri.Host, false)
		res.Cause = err
		return res
	}
	server, err := resolveAllowed(ctx, p.Resolver, uri.Host, uri.Port, policy)
	if err != nil {
		return fail(err)
	}
	res.Server = server.String()

	conn, err := listenUDPFor(server, policy)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	res.LocalAddr = conn.LocalAddr().String()

	mapped, rtt, err := stunBinding(ctx, conn, server)
	if err != nil {
		return fail(err)
	}
	res.Reachable, res.Class = true, ProbeOK
	res.MappedAddr = mapped.String()
	res.RTTMillis = float64(rtt.Microseconds()) / 1000
	return res
}

// stunBinding performs one binding transaction with retransmissions until
// ctx ends. The socket is unconnected, as a browser's is: a closed UDP port
// then looks like what the browser sees, a timeout.
func stunBinding(ctx context.Context, conn net.PacketConn, server netip.AddrPort) (netip.AddrPort, time.Duration, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	to := net.UDPAddrFromAddrPort(server)
	deadline, _ := ctx.Deadline()
	buf := make([]byte, 1500)
	rto := stunRTO
	var first time.Time
	for {
		sent := time.Now()
		if first.IsZero() {
			first = sent
		}
		if _, err := conn.WriteTo(req.Raw, to); err != nil {
			return netip.AddrPort{}, 0, err
		}
		wait := sent.Add(rto)
		if wait.After(deadline) {
			wait = deadline
		}
		rto *= 2
		for {
			_ = conn.SetReadDeadline(wait)
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				if isTimeout(err) {
					break
				}
				return netip.AddrPort{}, 0, err
			}
			if !sameAddr(from, server) || !stun.IsMessage(buf[:n]) {
				continue // a stray datagram; keep waiting for ours
			}
			msg := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if err := msg.Decode(); err != nil || msg.TransactionID != req.TransactionID {
				continue
			}
			rtt := time.Since(sent)
			if msg.Type.Class == stun.ClassErrorResponse {
				var code stun.ErrorCodeAttribute
				_ = code.GetFrom(msg)
				return netip.AddrPort{}, rtt, &stun.TurnError{StunMessageType: msg.Type, ErrorCodeAttr: code}
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(msg); err == nil {
				return addrPort(xor.IP, xor.Port), rtt, nil
			}
			var plain stun.MappedAddress
			if err := plain.GetFrom(msg); err != nil {
				return netip.AddrPort{}, rtt, fmt.Errorf("binding response without a mapped address: %w", err)
			}
			return addrPort(plain.IP, plain.Port), rtt, nil
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return netip.AddrPort{}, 0, fmt.Errorf("no answer from %s in %s: %w", server, time.Since(first).Round(time.Millisecond), context.DeadlineExceeded)
		}
	}
}

// TURNProbe asks a TURN server for a relay allocation.
type TURNProbe struct {
	// URL is a turn: or turns: URI; ?transport=tcp selects TCP.
	URL        string
	Username   string
	Credential string
	// Timeout bounds the whole probe; zero means DefaultTURNTimeout.
	Timeout time.Duration
	// Resolver resolves the host name; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// TLSConfig is used for turns:; nil verifies against the system roots.
	TLSConfig *tls.Config
	// Policy says where the probe may send or connect; nil refuses every
	// special-purpose range (see AddrPolicy).
	Policy *AddrPolicy
}

// TURNResult is what a TURN probe saw.
type TURNResult struct {
	URL string `json:"url"`
	// Server is the address the probe sent to, once resolved.
	Server    string `json:"server,omitempty"`
	Transport string `json:"transport,omitempty"`
	// Allocated is true when the server granted a relay allocation.
	Allocated bool `json:"allocated"`
	// RelayedAddr is the relay candidate address the server allocated.
	RelayedAddr string `json:"relayed_addr,omitempty"`
	// MappedAddr is this host's address as the TURN server saw it.
	MappedAddr string `json:"mapped_addr,omitempty"`
	// RTTMillis is the time the allocation took (both round trips).
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// ErrorCode is the STUN error code the server answered, if any.
	ErrorCode int        `json:"error_code,omitempty"`
	Class     ProbeClass `json:"class"`
	// Error is a fixed sentence per class, never the underlying error (see
	// STUNResult.Error).
	Error string `json:"error,omitempty"`
	// Fix says what to do when the probe failed.
	Fix string `json:"fix,omitempty"`
	// Cause is the underlying error, for the server's log only.
	Cause error `json:"-"`
}

// ProbeTURN allocates a relay on the TURN server of p and frees it again.
func ProbeTURN(ctx context.Context, p TURNProbe) TURNResult {
	res := TURNResult{URL: p.URL}
	ctx, cancel := context.WithTimeout(ctx, clampTimeout(p.Timeout, DefaultTURNTimeout))
	defer cancel()

	uri, err := stun.ParseURI(p.URL)
	if err != nil || (uri.Scheme != stun.SchemeTypeTURN && uri.Scheme != stun.SchemeTypeTURNS) {
		res.Class, res.Error, res.Cause = ProbeBadURL, fmt.Sprintf("%q is not a turn: or turns: URI", p.URL), err
		res.Fix = "use turn:host:port?transport=udp (or turns:host:5349)"
		return res
	}
	if p.Username == "" {
		res.Class, res.Error = ProbeBadURL, "a TURN server needs a username and credential"
		res.Fix = "give the username and credential configured on the TURN server"
		return res
	}
	res.Transport = uri.Proto.String()
	if uri.Scheme == stun.SchemeTypeTURNS {
		res.Transport = "tls"
	}
	policy := p.Policy.For(uri.Host, uri.Port)
	fail := func(err error) TURNResult {
		res.Class, res.Error, res.Fix = classify(err, uri.Host, true)
		res.ErrorCode = stunCode(err)
		res.Cause = err
		return res
	}
	server, err := resolveAllowed(ctx, p.Resolver, uri.Host, uri.Port, policy)
	if err != nil {
		return fail(err)
	}
	res.Server = server.String()

	conn, err := turnConn(ctx, uri, server, p.TLSConfig, policy)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()

	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: server.String(),
		Username:       p.Username,
		Password:       p.Credential,
		Conn:           conn,
		Software:       "pinhole-probe",
		LoggerFactory:  quietLoggers(),
	})
	if err != nil {
		return fail(err)
	}
	// Deferred before the relay's Close below, so it runs after it: the
	// deallocation (a Refresh with lifetime 0, sent without waiting) is
	// the last transaction, and Close ends it and every other one.
	defer client.Close()
	if err := client.Listen(); err != nil {
		return fail(err)
	}

	type allocResult struct {
		relay net.PacketConn
		rtt   time.Duration
		err   error
	}
	done := make(chan allocResult, 1)
	go func() {
		start := time.Now()
		relay, err := client.Allocate()
		done <- allocResult{relay: relay, err: err, rtt: time.Since(start)}
	}()

	var r allocResult
	select {
	case r = <-done:
	case <-ctx.Done():
		// Closing the transactions and the socket ends Allocate at once; the
		// client would otherwise retransmit for 63 s.
		client.Close()
		_ = conn.Close()
		r = <-done
		if r.err == nil {
			r.err = ctx.Err()
		} else {
			r.err = fmt.Errorf("no allocation from %s within the timeout: %w", server, context.DeadlineExceeded)
		}
	}
	if r.relay != nil {
		// Close sends a Refresh with lifetime 0 without waiting for it.
		defer r.relay.Close()
	}
	if r.err != nil {
		return fail(r.err)
	}
	res.Allocated, res.Class = true, ProbeOK
	res.RelayedAddr = r.relay.LocalAddr().String()
	// The server's view of us (the srflx address), within what is left of
	// the timeout; a server that ignores it does not spoil the allocation.
	mapped := make(chan net.Addr, 1)
	go func() {
		a, _ := client.SendBindingRequestTo(net.UDPAddrFromAddrPort(server))
		mapped <- a
	}()
	var m net.Addr
	select {
	case m = <-mapped:
	case <-ctx.Done():
		client.Close()
		m = <-mapped
	}
	if m != nil {
		res.MappedAddr = m.String()
	}
	res.RTTMillis = float64(r.rtt.Microseconds()) / 1000
	return res
}

// turnConn opens the client socket for the URI's transport, under policy:
// a UDP socket checks every datagram, a TCP connect (TLS runs on it) its
// destination.
func turnConn(ctx context.Context, uri *stun.URI, server netip.AddrPort, tlsConf *tls.Config, policy *AddrPolicy) (net.PacketConn, error) {
	if uri.Scheme == stun.SchemeTypeTURN && uri.Proto == stun.ProtoTypeUDP {
		return listenUDPFor(server, policy)
	}
	c, err := policy.Dialer().DialContext(ctx, "tcp", server.String())
	if err != nil {
		return nil, err
	}
	if uri.Scheme == stun.SchemeTypeTURNS {
		conf := &tls.Config{ServerName: uri.Host, MinVersion: tls.VersionTLS12}
		if tlsConf != nil {
			conf = tlsConf.Clone()
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, &tlsError{err}
		}
		c = tc
	}
	return turn.NewSTUNConn(c), nil
}

// listenUDPFor opens an ephemeral socket of the server's address family,
// every datagram it writes checked by policy. The family matters: pion/turn
// infers the relay family it asks for from the socket, and a dual-stack
// "[::]" socket would request an IPv6 relay.
func listenUDPFor(server netip.AddrPort, policy *AddrPolicy) (net.PacketConn, error) {
	network, laddr := "udp6", "[::]:0"
	if server.Addr().Is4() {
		network, laddr = "udp4", "0.0.0.0:0"
	}
	pc, err := net.ListenPacket(network, laddr)
	if err != nil {
		return nil, err
	}
	return policy.PacketConn(pc), nil
}

// tlsError marks a failed TLS handshake with a turns: server.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// resolveUDP turns host:port into one address, IPv4 first since pinhole's
// leases are UDP4.
// resolveAllowed resolves host:port and checks the address against policy
// before any socket is opened (the socket checks again on every datagram,
// so a name that resolves elsewhere later gains nothing).
func resolveAllowed(ctx context.Context, r *net.Resolver, host string, port int, policy *AddrPolicy) (netip.AddrPort, error) {
	server, err := resolveUDP(ctx, r, host, port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return server, policy.Check(server)
}

func resolveUDP(ctx context.Context, r *net.Resolver, host string, port int) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, &net.DNSError{Err: "no address", Name: host, IsNotFound: true}
	}
	best := ips[0]
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			best = ip
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(port)), nil
}

// classify maps an error to a class, the fixed sentence the answer gives
// for it and the fix a person should try. The error's own text never goes
// into the answer (it stays in the result's Cause, for the log): a probe
// open to anyone must not tell "connection refused" from "filtered", or
// echo the names in an internal service's certificate. isTURN selects TURN
// wording.
func classify(err error, host string, isTURN bool) (class ProbeClass, msg, fix string) {
	kind := "STUN"
	if isTURN {
		kind = "TURN"
	}
	var dnsErr *net.DNSError
	var tlsErr *tlsError
	switch {
	case errors.Is(err, ErrRefusedDestination):
		return ProbeRefused, "the destination is on a network probes may not reach (loopback, private, link-local, shared, multicast, cloud metadata or this host)",
			fmt.Sprintf("probes of the %s server at %s are refused; if it is really meant to be probed, list it among the ICE servers (--ice-servers) or start pinhole with --probe-allow CIDR covering its address", kind, host)
	case errors.As(err, &dnsErr):
		return ProbeDNS, "the host name does not resolve", fmt.Sprintf("the name %s does not resolve: check its spelling and DNS record, or use the server's IP address", host)
	case errors.As(err, &tlsErr):
		return ProbeTLS, "the TLS handshake with the TURN server failed", fmt.Sprintf("check that the server at %s speaks TLS on that port and that its certificate is valid for %s and signed by a trusted authority", host, host)
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return ProbeTimeout, "no answer within the timeout", fmt.Sprintf("no answer from the %s server: check the host and port, that the server runs, and that UDP to it is not blocked by a firewall (corporate networks often block UDP; try turn: with ?transport=tcp or turns: on 443)", kind)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.ECONNRESET):
		return ProbeUnreachable, "the network refused the connection", fmt.Sprintf("the network refused the connection to the %s server: check the port, the server's listening address and the firewall, and that this host has a route to it", kind)
	}
	if code := stunCode(err); code != 0 {
		switch stun.ErrorCode(code) {
		case stun.CodeUnauthorized, stun.CodeWrongCredentials, stun.CodeForbidden, stun.CodeBadRequest:
			// coturn answers a refused authenticated Allocate with 401,
			// pion/turn with 400 after its 401 challenge; the probe only
			// sees a code from the authenticated retry, so both mean the
			// server refused the credentials.
			return ProbeAuthRefused, "the TURN server refused the credentials", "the TURN server refused the username or credential: check both, the realm, and for time-limited (REST API) credentials that the shared secret matches and the clocks agree"
		case stun.CodeAllocQuotaReached, stun.CodeInsufficientCapacity:
			return ProbeQuota, "the TURN server refused the allocation for quota or capacity", "the TURN server refused the allocation for quota or capacity: raise the per-user quota (coturn user-quota/total-quota) or free allocations"
		}
		return ProbeOther, fmt.Sprintf("the %s server answered with error code %d", kind, code), ""
	}
	return ProbeOther, "the probe failed", ""
}

// stunCode extracts a STUN error code from err, 0 if none.
func stunCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tv stun.TurnError
	if errors.As(err, &tv) {
		return int(tv.ErrorCodeAttr.Code)
	}
	return 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func sameAddr(a net.Addr, b netip.AddrPort) bool {
	u, ok := a.(*net.UDPAddr)
	return ok && u.AddrPort().Addr().Unmap() == b.Addr() && u.AddrPort().Port() == b.Port()
}

func addrPort(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

func clampTimeout(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return min(d, maxProbeTimeout)
}

// quietLoggers silences pion/turn's client: a probe reports through its
// result, and a refused allocation is not a server-side error.
func quietLoggers() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}
