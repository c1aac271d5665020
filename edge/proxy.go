package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// DefaultProxyHeaderTimeout is how long an upstream may take to send its
// PROXY header. FRP and HAProxy write it in the same packet as the
// connection's first bytes, so a second is already generous; 5 s leaves
// room for a loaded box while a silent connection (slowloris) still loses
// its slot quickly.
const DefaultProxyHeaderTimeout = 5 * time.Second

// Loopback is 127.0.0.0/8 and ::1: where frpc or a local HAProxy connects
// from, and the default PROXY upstream.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ProxyConfig is the PROXY protocol policy of a listener (--proxy-protocol,
// --proxy-upstreams).
type ProxyConfig struct {
	// Upstreams are the peers that must open each connection with a PROXY
	// header (v1 or v2); empty means [Loopback].
	Upstreams []netip.Prefix
	// HeaderTimeout is how long an upstream has to send its header before
	// the connection is closed; zero means [DefaultProxyHeaderTimeout].
	HeaderTimeout time.Duration
}

// ProxyProtocol wraps ln so that connections from cfg.Upstreams must start
// with a PROXY header (v1 or v2, FRP's transport.proxyProtocolVersion) and
// report the client it names as RemoteAddr. The header is read by the first
// Read, on the connection's own goroutine, never in Accept, so a slow
// upstream cannot stall the accept loop.
//
// The policy, per peer address on the socket:
//   - an upstream that sends a valid header naming a TCP client: that
//     client becomes RemoteAddr;
//   - an upstream that sends no header within HeaderTimeout, garbage, or a
//     header without a client address (LOCAL, UNKNOWN, unix sockets): the
//     connection fails its first read and the server closes it. pinhole
//     needs the client for its limits, and a proxy's own health check is
//     the only legitimate sender of those;
//   - any other peer is served as an ordinary connection with its own
//     address, so a LAN client reaching the box directly keeps working;
//     if it opens with a PROXY header anyway the header is not believed and
//     the connection is closed, since only a forger would send one.
func ProxyProtocol(ln net.Listener, cfg ProxyConfig) (net.Listener, error) {
	ups := cfg.Upstreams
	if len(ups) == 0 {
		ups = Loopback
	}
	for _, p := range ups {
		if !p.IsValid() {
			return nil, fmt.Errorf("proxy protocol: invalid upstream prefix %v", p)
		}
	}
	timeout := cfg.HeaderTimeout
	if timeout <= 0 {
		timeout = DefaultProxyHeaderTimeout
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: timeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if inPrefixes(addrOf(o.Upstream), ups) {
				return proxyproto.REQUIRE, nil
			}
			return proxyproto.REJECT, nil
		},
		ValidateHeader: validateProxyHeader,
	}, nil
}

// errNoClient refuses a PROXY header that names no TCP client.
var errNoClient = errors.New("proxy protocol: header names no TCP client")

func validateProxyHeader(h *proxyproto.Header) error {
	if !h.Command.IsProxy() || !h.TransportProtocol.IsStream() ||
		!(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return errNoClient
	}
	if !addrOf(h.SourceAddr).IsValid() {
		return errNoClient
	}
	return nil
}

// addrOf is the IP of a net.Addr, IPv4-mapped IPv6 unmapped and zone
// dropped; the zero Addr when it has none.
func addrOf(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone("")
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
