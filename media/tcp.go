package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// ICE over TCP (RFC 6544) on the one forwarded TCP port, for networks
// that let no UDP out.
//
// One Pion TCP mux serves every session: it is fed by the listener in
// Config.ICETCP (edge.Demux hands it the HTTP port's connections that open
// with an RFC 4571-framed STUN Binding request) and demultiplexes by the
// ufrag in the request's USERNAME. Each answer carries one passive TCP host
// candidate at the public IP and Config.ICETCPPublicPort, below every UDP
// candidate (Pion lowers the type preference of TCP candidates by 27, and
// RFC 6544 gives passive a lower local preference), so a client uses UDP
// whenever its checks pass.
//
// Leases and limits: a session over TCP still holds its UDP lease (the
// lease is the session's place in the pool, its UDP candidate stays in the
// answer and wins if UDP starts working), so the pool's size caps TCP
// sessions as it caps UDP ones and TCP costs no port of its own. A TCP
// connection reaches the mux only once edge.Demux has read a well-formed
// first frame within its deadline (the cap on unidentified connections
// applies there) and only when its ufrag belongs to a live session; each
// session may hold maxTCPConnsPerSession connections.

// maxTCPConnsPerSession bounds the TCP connections one session's ufrag may
// hold. A browser opens one active connection per local interface to the
// one passive candidate, two or three on a laptop with VPN; more is a
// client hoarding sockets with a ufrag it was given.
const maxTCPConnsPerSession = 8

// tcpTransport is the engine's ICE-TCP side: the shared mux, the ufrags
// of live sessions, and how conns are presented to Pion.
type tcpTransport struct {
	mux        *ice.TCPMuxDefault
	ln         *tcpListener
	gatherIP   net.IP // the one local address TCP candidates are gathered on
	localPort  int    // the listener's port, as Pion puts it in candidates
	publicPort int    // the port advertised instead

	mu     sync.Mutex
	ufrags map[string]int // live local ufrag -> TCP conns it holds

	admitted, rejected atomic.Uint64
}

// newTCPTransport builds the mux on ln. The gather address is the bind IP,
// else this host's first non-loopback IPv4 address, else 127.0.0.1: one
// address so that each answer holds one TCP candidate (the public IP
// replaces it anyway).
func newTCPTransport(ln net.Listener, publicPort int, bindIP string, ifaces *stdnet.Net, lf logging.LoggerFactory, log *slog.Logger) (*tcpTransport, error) {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("ICE-TCP listener address %v is not TCP", ln.Addr())
	}
	t := &tcpTransport{gatherIP: pickGatherIP(bindIP, ifaces), localPort: addr.Port, publicPort: publicPort, ufrags: map[string]int{}}
	if t.publicPort == 0 {
		t.publicPort = addr.Port
	}
	t.ln = &tcpListener{Listener: ln, t: t, log: log}
	t.mux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener: t.ln,
		Logger:   lf.NewLogger("ice-tcp"),
		// Packets queue per connection rather than block the session's
		// writer; 1 MiB is a second of 8 Mbit/s video, enough to ride out
		// a congested TCP window without unbounded memory.
		WriteBufferSize: 1 << 20,
	})
	return t, nil
}

func pickGatherIP(bindIP string, ifaces *stdnet.Net) net.IP {
	if ip := net.ParseIP(bindIP); ip != nil && !ip.IsUnspecified() {
		return ip.To4()
	}
	if ifaces != nil {
		if list, err := ifaces.Interfaces(); err == nil {
			for _, ifi := range list {
				if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
					continue
				}
				addrs, err := ifi.Addrs()
				if err != nil {
					continue
				}
				for _, a := range addrs {
					if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
						return n.IP.To4()
					}
				}
			}
		}
	}
	return net.IPv4(127, 0, 0, 1).To4()
}

// keepGatherIP is the agent's IP filter: TCP candidates on gatherIP only.
// The UDP candidates come from the lease's mux and are not filtered.
func (t *tcpTransport) keepGatherIP(ip net.IP) bool { return ip.Equal(t.gatherIP) }

// close stops the mux and its listener; sessions are closed before.
func (t *tcpTransport) close() error { return t.mux.Close() }

// GetConnByUfrag is called by a session's agent while gathering: the
// session's ufrag becomes one the listener admits. A second call for the
// same ufrag (several public IPs rewriting one local address) is refused:
// two candidates sharing one packet conn would compete for its reads, so
// only the first public IP gets a TCP candidate.
func (t *tcpTransport) GetConnByUfrag(ufrag string, isIPv6 bool, _ net.IP) (net.PacketConn, error) {
	t.mu.Lock()
	if _, dup := t.ufrags[ufrag]; dup {
		t.mu.Unlock()
		return nil, errors.New("one ICE-TCP candidate per session")
	}
	t.ufrags[ufrag] = 0
	t.mu.Unlock()
	c, err := t.mux.GetConnByUfrag(ufrag, false, t.gatherIP)
	if err != nil {
		t.mu.Lock()
		delete(t.ufrags, ufrag)
		t.mu.Unlock()
	}
	return c, err
}

// RemoveConnByUfrag is called when a session's agent closes.
func (t *tcpTransport) RemoveConnByUfrag(ufrag string) {
	t.mu.Lock()
	delete(t.ufrags, ufrag)
	t.mu.Unlock()
	t.mux.RemoveConnByUfrag(ufrag)
}

// Close is the mux's, for the ice.TCPMux interface; the engine closes it
// itself once, after its sessions.
func (t *tcpTransport) Close() error { return nil }

// LocalAddr lets the agent know the mux listens on all addresses (it then
// gathers on every address the IP filter keeps).
func (t *tcpTransport) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4zero, Port: t.localPort}
}

// admit checks a new connection's first STUN message names a live
// session with room for another connection, and takes the slot.
func (t *tcpTransport) admit(frame []byte) (ufrag string, why string) {
	if len(frame) < 2 {
		return "", "no first frame"
	}
	n := int(binary.BigEndian.Uint16(frame))
	if len(frame) < 2+n {
		return "", "short first frame"
	}
	m := &stun.Message{Raw: append([]byte(nil), frame[2:2+n]...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return "", "not a STUN Binding request"
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return "", "no USERNAME"
	}
	ufrag, _, _ = strings.Cut(user.String(), ":")
	t.mu.Lock()
	defer t.mu.Unlock()
	held, live := t.ufrags[ufrag]
	switch {
	case !live:
		return "", "ufrag of no live session"
	case held >= maxTCPConnsPerSession:
		return "", fmt.Sprintf("session already holds %d TCP connections", held)
	}
	t.ufrags[ufrag] = held + 1
	return ufrag, ""
}

func (t *tcpTransport) release(ufrag string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.ufrags[ufrag]; ok && n > 0 {
		t.ufrags[ufrag] = n - 1
	}
}

// rewritePort puts the public TCP port into the answer's TCP candidates.
func (t *tcpTransport) rewritePort(sdpText string) string {
	if t.localPort == t.publicPort {
		return sdpText
	}
	lp, pp := strconv.Itoa(t.localPort), strconv.Itoa(t.publicPort)
	lines := strings.SplitAfter(sdpText, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		body := strings.TrimRight(line, "\r\n")
		f := strings.Fields(body)
		if len(f) >= 6 && strings.EqualFold(f[2], "tcp") && f[5] == lp {
			f[5] = pp
			lines[i] = strings.Join(f, " ") + line[len(body):]
		}
	}
	return strings.Join(lines, "")
}

// tcpListener is what the Pion mux accepts from: conns whose first frame
// admit accepts, with a local address the mux files them under.
type tcpListener struct {
	net.Listener
	t   *tcpTransport
	log *slog.Logger
}

// peeker is edge.Demux's connection: the bytes it read to identify it.
type peeker interface{ Peeked() []byte }

func (l *tcpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		p, ok := c.(peeker)
		if !ok {
			// Only edge.Demux's connections have been read within a
			// deadline; anything else would make the mux block on it.
			l.t.rejected.Add(1)
			_ = c.Close()
			continue
		}
		ufrag, why := l.t.admit(p.Peeked())
		if why != "" {
			l.t.rejected.Add(1)
			l.log.Debug("ice-tcp connection refused", "remote", c.RemoteAddr().String(), "reason", why)
			_ = c.Close()
			continue
		}
		l.t.admitted.Add(1)
		return &tcpConn{Conn: c, t: l.t, ufrag: ufrag,
			local: &net.TCPAddr{IP: l.t.gatherIP, Port: l.t.localPort}}, nil
	}
}

// tcpConn presents an admitted connection to the mux. Its local address is
// the gather address whatever the socket says (127.0.0.1 behind frpc, the
// tunnel's public address with the PROXY protocol), since the mux files
// connections under (ufrag, local IP) and the agent asks with gatherIP.
// Close gives the session's connection slot back, once.
type tcpConn struct {
	net.Conn
	t     *tcpTransport
	ufrag string
	local net.Addr
	once  sync.Once
}

func (c *tcpConn) LocalAddr() net.Addr { return c.local }

func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.t.release(c.ufrag) })
	return err
}

// ICETCPStats counts ICE-TCP connections the engine admitted to and
// refused from the mux.
type ICETCPStats struct {
	Admitted, Refused uint64
	// PublicPort is the TCP port answers advertise; zero when off.
	PublicPort int
}

// ServeICETCP turns ICE-TCP on: ln is edge.Demux's ICE listener on the
// HTTP port (connections of any other listener are refused, since only the
// demux has read their first frame within a deadline), publicPort the TCP
// port the router or tunnel forwards to ln's port (--public-http-port; zero:
// the same number). From then on every answer also carries a passive TCP
// host candidate. Call it once, before serving: sessions already answered
// keep UDP only. The engine owns ln from here: Close closes it.
func (e *Engine) ServeICETCP(ln net.Listener, publicPort int) error {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if e.tcp.Load() != nil {
		return errors.New("ICE-TCP is already served")
	}
	t, err := newTCPTransport(ln, publicPort, e.cfg.BindIP, e.ifaces, e.loggers, e.log)
	if err != nil {
		return err
	}
	if !e.tcp.CompareAndSwap(nil, t) {
		_ = t.close()
		return errors.New("ICE-TCP is already served")
	}
	return nil
}

// ICETCP reports the ICE-TCP counters; all zero when ICE-TCP is off.
func (e *Engine) ICETCP() ICETCPStats {
	t := e.tcp.Load()
	if t == nil {
		return ICETCPStats{}
	}
	return ICETCPStats{Admitted: t.admitted.Load(), Refused: t.rejected.Load(), PublicPort: t.publicPort}
}

// setTransport records on the session's port holder which transport ICE
// selected ("udp" or "tcp"), for /api/v1/ports.
func (p *portPool) setTransport(l *portLease, transport string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := l.slot.holders[l.sessionID]; ok {
		h.Transport = transport
		l.slot.holders[l.sessionID] = h
	}
}

// tcpPairNote is what a selected pair over TCP adds to its description:
// the transport, and the public port the client reached (Pion's local
// candidate names the listener's own port).
func (s *session) tcpPairNote(p *webrtc.ICECandidatePair) string {
	if p.Local == nil || p.Local.Protocol != webrtc.ICEProtocolTCP {
		return ""
	}
	if t := s.e.tcp.Load(); t != nil {
		return fmt.Sprintf(" over tcp (ICE-TCP on the HTTP port, public %s)", net.JoinHostPort(p.Local.Address, strconv.Itoa(t.publicPort)))
	}
	return " over tcp"
}

// noteTransport reports which transport the selected pair runs over: a
// "transport" timeline event with detail "udp" or "tcp" (the metrics count
// sessions by it), the port holder's Transport, and for TCP why: whether
// any UDP packet ever reached the lease.
func (s *session) noteTransport(p *webrtc.ICECandidatePair) {
	if p == nil || p.Local == nil {
		return
	}
	tr := "udp"
	if p.Local.Protocol == webrtc.ICEProtocolTCP {
		tr = "tcp"
	}
	if old := s.transport.Swap(&tr); old != nil && *old == tr {
		return
	}
	if s.lease != nil {
		s.e.pool.setTransport(s.lease, tr)
	}
	s.emitTimeline("transport", tr)
	if tr != "tcp" || s.lease == nil {
		return
	}
	via := net.JoinHostPort(p.Local.Address, strconv.Itoa(int(p.Local.Port)))
	if t := s.e.tcp.Load(); t != nil {
		via = net.JoinHostPort(p.Local.Address, strconv.Itoa(t.publicPort))
	}
	remote := ""
	if p.Remote != nil {
		remote = " from " + net.JoinHostPort(p.Remote.Address, strconv.Itoa(int(p.Remote.Port)))
	}
	why := fmt.Sprintf("media over TCP: no UDP packet ever reached local UDP %d (no UDP check arrived: the client's network blocks UDP, or the UDP forward is missing); ICE-TCP on the HTTP port, public %s%s",
		s.lease.LocalPort, via, remote)
	if n := s.lease.PacketsIn(); n > 0 {
		why = fmt.Sprintf("media over TCP: %d UDP packets reached local UDP %d but the client's ICE chose its TCP pair; ICE-TCP on the HTTP port, public %s%s",
			n, s.lease.LocalPort, via, remote)
	}
	s.emitTimeline("tcp-fallback", why)
}
