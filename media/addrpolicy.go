package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// addrRange names the kind of a special-purpose address: the ranges a
// diagnostics probe or a client's ICE candidate must not make pinhole send
// to uninvited. "" is an ordinary public unicast address.
type addrRange string

const (
	rangePublic      addrRange = ""
	rangeUnspecified addrRange = "unspecified"
	rangeLoopback    addrRange = "loopback"
	rangePrivate     addrRange = "private"
	rangeLinkLocal   addrRange = "link-local"
	rangeCGNAT       addrRange = "shared (CGNAT)"
	rangeMulticast   addrRange = "multicast"
	rangeBroadcast   addrRange = "broadcast"
	rangeMetadata    addrRange = "cloud metadata"
	rangeThisHost    addrRange = "this host's own"
)

var (
	// Cloud instance metadata services (AWS, GCP and Azure on the IPv4
	// link-local one, AWS's IPv6 one, Alibaba's): the address an SSRF is
	// after, refused even when a wider Allow prefix covers its range.
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("fd00:ec2::254"),
		netip.MustParseAddr("100.100.100.200"),
	}
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")     // RFC 791 "this network": Linux treats 0.x as local
	sharedCGNAT  = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
	siteLocal6   = netip.MustParsePrefix("fec0::/10")     // deprecated, still routed inside some sites
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")  // RFC 6052: the IPv4 address it embeds is what gets reached
	limitedBcast = netip.MustParseAddr("255.255.255.255")
)

// classifyAddr says which special-purpose range a holds.
func classifyAddr(a netip.Addr) addrRange {
	a = a.Unmap()
	if a.Is6() && nat64Prefix.Contains(a) {
		b := a.As16()
		if r := classifyAddr(netip.AddrFrom4([4]byte(b[12:]))); r != rangePublic {
			return r
		}
	}
	switch {
	case !a.IsValid():
		return rangeUnspecified
	case slices.Contains(metadataAddrs, a):
		return rangeMetadata
	case a.IsUnspecified(), a.Is4() && thisNetwork.Contains(a):
		return rangeUnspecified
	case a.IsLoopback():
		return rangeLoopback
	case a == limitedBcast:
		return rangeBroadcast
	case a.IsMulticast():
		return rangeMulticast
	case a.IsLinkLocalUnicast():
		return rangeLinkLocal
	case a.IsPrivate(), siteLocal6.Contains(a):
		return rangePrivate
	case sharedCGNAT.Contains(a):
		return rangeCGNAT
	}
	return rangePublic
}

// ErrRefusedDestination means a diagnostics probe was not sent because its
// destination is loopback, private, link-local, shared, multicast,
// broadcast, a cloud metadata service or this host itself, and no Allow
// prefix covers it. Probes answer it as ProbeRefused.
var ErrRefusedDestination = errors.New("probe destination refused")

// RefusedError is ErrRefusedDestination with the address and its range, for
// the log only: the probe's answer does not name them, so the API is no
// oracle for what an internal name resolves to.
type RefusedError struct {
	Addr  netip.AddrPort
	Range string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("probe destination %s refused: %s address", e.Addr, e.Range)
}

// Unwrap makes errors.Is(err, ErrRefusedDestination) true.
func (e *RefusedError) Unwrap() error { return ErrRefusedDestination }

// AddrPolicy decides where the diagnostics probes may send packets. The
// probes are reachable by anonymous clients, so without a policy they would
// be a port scanner of the server's own networks. Every socket a probe uses
// is checked against the policy when it sends or connects, with the address
// actually used, so a name that resolves to a public address for one lookup
// and to loopback for the next (DNS rebinding) gains nothing.
//
// The zero value (and a nil *AddrPolicy) refuses every special-purpose
// range and allows the rest.
type AddrPolicy struct {
	// Allow lists prefixes probes may reach although they fall in a refused
	// range (--probe-allow), e.g. 10.0.0.0/8 for a TURN server on the LAN.
	// A cloud metadata address is allowed only by a prefix that is exactly
	// that one address (a /32 or /128): allowing 169.254.0.0/16 for a
	// link-local STUN server must not open the metadata service too.
	Allow []netip.Prefix
	// AlwaysAllowHosts are the configured ICE servers as host:port (host
	// alone: any port), compared with the probed URI's host and port.
	// The operator chose them, so a probe of one of them reaches whatever
	// address its name resolves to, loopback and private included.
	AlwaysAllowHosts []string
	// HostAddrs are more addresses of this host to refuse, beyond its
	// interface addresses (always refused): the --public-ip addresses,
	// which reach this host through the router.
	HostAddrs []netip.Addr

	// trusted is set by For on a copy for a configured ICE server.
	trusted bool
	// interfaceAddrs lists this host's addresses; nil: net.InterfaceAddrs.
	interfaceAddrs func() ([]netip.Addr, error)
	// sendGuard, set by tests only, runs before Check on every datagram
	// and connect: a test of refusals then sends nothing beyond loopback
	// even if Check is broken.
	sendGuard func(netip.AddrPort) error
}

// checkSend is Check behind the test guard, for the sockets.
func (p *AddrPolicy) checkSend(ap netip.AddrPort) error {
	if p != nil && p.sendGuard != nil {
		if err := p.sendGuard(ap); err != nil {
			return err
		}
	}
	return p.Check(ap)
}

// For returns the policy for a probe of host:port: the policy itself, or,
// when host:port is one of AlwaysAllowHosts, one that allows every
// destination.
func (p *AddrPolicy) For(host string, port int) *AddrPolicy {
	q := AddrPolicy{}
	if p != nil {
		q = *p
	}
	for _, h := range q.AlwaysAllowHosts {
		hh, hp, err := net.SplitHostPort(h)
		if err != nil {
			hh, hp = strings.Trim(h, "[]"), ""
		}
		if strings.EqualFold(strings.TrimSuffix(hh, "."), strings.TrimSuffix(host, ".")) && (hp == "" || hp == strconv.Itoa(port)) {
			q.trusted = true
			break
		}
	}
	return &q
}

// Check returns nil when a probe may send to ap, a *RefusedError if not.
func (p *AddrPolicy) Check(ap netip.AddrPort) error {
	if p != nil && p.trusted {
		return nil
	}
	a := ap.Addr().Unmap()
	r := classifyAddr(a)
	if r == rangePublic && p.isHostAddr(a) {
		r = rangeThisHost
	}
	if r == rangePublic {
		return nil
	}
	if p != nil {
		for _, pre := range p.Allow {
			pre = netip.PrefixFrom(pre.Addr().Unmap(), pre.Bits()-unmapBits(pre)).Masked()
			if pre.IsValid() && pre.Contains(a) && (r != rangeMetadata || pre.IsSingleIP()) {
				return nil
			}
		}
	}
	return &RefusedError{Addr: netip.AddrPortFrom(a, ap.Port()), Range: string(r)}
}

// unmapBits is what an IPv4-mapped prefix (::ffff:10.0.0.0/104) loses in
// length when unmapped.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func (p *AddrPolicy) isHostAddr(a netip.Addr) bool {
	if p != nil && slices.ContainsFunc(p.HostAddrs, func(h netip.Addr) bool { return h.Unmap() == a }) {
		return true
	}
	list := interfaceAddrs
	if p != nil && p.interfaceAddrs != nil {
		list = p.interfaceAddrs
	}
	addrs, err := list()
	if err != nil {
		// Unknown interfaces: every public address might be ours. Probes
		// are rare; failing closed is the cheaper mistake.
		return true
	}
	return slices.Contains(addrs, a)
}

// interfaceAddrs lists this host's interface addresses. Probes are rare, so
// it is read at each check: an address that appears later is refused too.
func interfaceAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ifAddrs))
	for _, ia := range ifAddrs {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, nil
}

// Control checks the destination of a connect, for net.Dialer.Control:
// address is the resolved ip:port the socket is about to connect to. Note
// that for net.ListenConfig.Control the address is the local one, so an
// unconnected UDP socket is checked per datagram instead (see PacketConn).
func (p *AddrPolicy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Not an ip:port: nothing to check it against, so no connect.
		return &RefusedError{Range: "unparsable (" + network + ")"}
	}
	return p.checkSend(ap)
}

// Dialer returns a net.Dialer whose connects pass Control.
func (p *AddrPolicy) Dialer() *net.Dialer {
	return &net.Dialer{Control: p.Control}
}

// PacketConn wraps an unconnected socket so that every datagram written
// with WriteTo is checked first; a refused one is not sent and WriteTo
// returns the *RefusedError. It is the socket handed to pion/stun-style
// transactions and to the pion/turn client.
func (p *AddrPolicy) PacketConn(pc net.PacketConn) net.PacketConn {
	return &policyPacketConn{PacketConn: pc, policy: p}
}

type policyPacketConn struct {
	net.PacketConn
	policy *AddrPolicy
}

func (c *policyPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	var ap netip.AddrPort
	switch a := to.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		parsed, err := netip.ParseAddrPort(to.String())
		if err != nil {
			return 0, &RefusedError{Range: "unparsable"}
		}
		ap = parsed
	}
	if err := c.policy.checkSend(ap); err != nil {
		return 0, err
	}
	return c.PacketConn.WriteTo(b, to)
}

// ParseProbeAllow reads a --probe-allow value: comma-separated CIDR
// prefixes or single addresses.
func ParseProbeAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if pre, err := netip.ParsePrefix(f); err == nil {
			out = append(out, pre.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
