package media

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/stdnet"
)

// DefaultMaxCandidates is how many remote candidates a session accepts
// across its offer and all its trickle fragments. A browser offers a
// handful (host, srflx and relay per interface, times one or two
// components); every candidate makes pinhole send STUN checks from its
// leased port to an address the client chose, so without a cap a client
// could turn the port into a UDP reflector.
const DefaultMaxCandidates = 32

// hostAddrs are this host's addresses, read once at engine start: a remote
// candidate naming one of them (or a directed broadcast of one of its
// subnets) would make pinhole send its connectivity checks to itself.
type hostAddrs struct {
	own   map[netip.Addr]struct{}
	bcast map[netip.Addr]struct{}
}

// newHostAddrs lists the interface addresses of n (the engine's shared
// stdnet, so interfaces are enumerated once) and adds the public IPs,
// which reach this host through the router.
func newHostAddrs(n *stdnet.Net, publicIPs []string) *hostAddrs {
	h := &hostAddrs{own: map[netip.Addr]struct{}{}, bcast: map[netip.Addr]struct{}{}}
	for _, s := range publicIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			h.own[a.Unmap()] = struct{}{}
		}
	}
	if n == nil {
		return h
	}
	ifaces, _ := n.Interfaces()
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, ia := range addrs {
			ipn, ok := ia.(*net.IPNet)
			if !ok {
				continue
			}
			a, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			h.own[a] = struct{}{}
			ones, bits := ipn.Mask.Size()
			if a.Is4() && bits == 32 && ones < 31 {
				b := a.As4()
				m := net.IP(ipn.Mask).To4()
				for i := range b {
					b[i] |= ^m[i]
				}
				h.bcast[netip.AddrFrom4(b)] = struct{}{}
			}
		}
	}
	return h
}

// dropReason says why pinhole will not check a remote candidate, "" to
// keep it. trustLocal keeps loopback and this host's own addresses: set
// for a client that is itself on this host.
//
// mDNS names (".local", RFC 8828 "host candidate obfuscation") are dropped:
// pinhole runs with mDNS off, so they could never be resolved, and a
// browser that hides its host address also offers its srflx candidate, or
// its checks arrive as peer-reflexive ones.
func (h *hostAddrs) dropReason(cand string, trustLocal bool) string {
	c, err := ice.UnmarshalCandidate(cand)
	if err != nil {
		return "malformed"
	}
	a, err := netip.ParseAddr(c.Address())
	if err != nil {
		return "mDNS name"
	}
	if c.Port() <= 0 || c.Port() > 65535 {
		return "port 0"
	}
	a = a.Unmap()
	switch r := classifyAddr(a); r {
	case rangeUnspecified, rangeLinkLocal, rangeMulticast, rangeBroadcast, rangeMetadata:
		return string(r)
	case rangeLoopback:
		if !trustLocal {
			return string(r)
		}
	}
	if h == nil {
		return ""
	}
	if _, ok := h.bcast[a]; ok {
		return string(rangeBroadcast)
	}
	if _, ok := h.own[a]; ok && !trustLocal {
		return string(rangeThisHost)
	}
	return ""
}

// candidateAddr is a candidate's address:port for notes, or the
// candidate itself shortened when it does not parse.
func candidateAddr(cand string) string {
	f := strings.Fields(strings.TrimPrefix(cand, "candidate:"))
	if len(f) >= 6 {
		if _, err := strconv.Atoi(f[5]); err == nil {
			return net.JoinHostPort(f[4], f[5])
		}
	}
	return truncate(cand, 40)
}

// filterOfferCandidates removes from an SDP the candidate lines to drop. It
// returns the SDP, the candidate lines kept and notes on the dropped ones.
func (h *hostAddrs) filterOfferCandidates(sdpText string, trustLocal bool) (string, []string, []string) {
	lines := strings.Split(sdpText, "\n")
	out := lines[:0]
	var kept, dropped []string
	for _, raw := range lines {
		line := strings.TrimRight(raw, "\r")
		c, ok := strings.CutPrefix(line, "a=candidate:")
		if !ok {
			out = append(out, raw)
			continue
		}
		c = "candidate:" + c
		if why := h.dropReason(c, trustLocal); why != "" {
			dropped = append(dropped, fmt.Sprintf("%s (%s)", candidateAddr(c), why))
			continue
		}
		kept = append(kept, c)
		out = append(out, raw)
	}
	return strings.Join(out, "\n"), kept, dropped
}

// droppedNote is the one timeline detail for the candidates of an offer or
// fragment that pinhole will not check.
func droppedNote(where string, total int, dropped []string) string {
	return fmt.Sprintf("%s: %d of %d candidates dropped, pinhole sends no checks to them: %s",
		where, len(dropped), total, strings.Join(dropped, "; "))
}
