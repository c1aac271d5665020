package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/stdnet"
)

// portPoolConfig is the part of Config the pool needs.
type portPoolConfig struct {
	Ports        []int
	PublicPorts  []int
	PublicIPs    []string
	BindIP       string
	PeersPerPort int
	Logger       *slog.Logger
	// LoggerFactory is handed to Pion's ICE mux.
	LoggerFactory logging.LoggerFactory
	// Net lists the interface addresses a mux bound to 0.0.0.0 announces.
	// Nil: the interfaces are enumerated (netlink) on every lease.
	Net *stdnet.Net
}

// portPool owns the configured UDP port range and hands out leases. A lease binds
// one UDP socket on its port wrapped in a counting conn and Pion's ICE UDP
// mux; with PeersPerPort > 1 the socket is shared by several leases and
// closed with the last one.
type portPool struct {
	cfg   portPoolConfig
	log   *slog.Logger
	mu    sync.Mutex
	slots []*slot
	// next is where the search for a free port starts, so ports rotate and a
	// port just released is not handed out again at once (a late packet from
	// the last peer would otherwise reach the next one's mux).
	next   int
	closed bool
}

// slot is one port of the range.
type slot struct {
	local, public int
	conn          *countingConn
	mux           *ice.UDPMuxDefault
	// apis holds the Pion APIs built on mux (engine.go apiFor), replaced
	// with the mux.
	apis    *leaseAPIs
	holders map[string]PortHolder
	// totals of sockets closed earlier on this port, so the port's counters
	// survive its leases.
	packetsIn, bytesIn uint64
	unvalidated        uint64
	lastPacket         time.Time
}

// portLease is one session's hold on a port. Close releases it exactly once.
type portLease struct {
	pool      *portPool
	slot      *slot
	sessionID string
	once      sync.Once
	// Mux is the ICE UDP mux to hand to the session's SettingEngine.
	Mux ice.UDPMux
	// apis is the slot's API cache for this mux.
	apis *leaseAPIs
	// LocalPort and PublicPort are the port numbers on this host and as the
	// router forwards them.
	LocalPort, PublicPort int
	conn                  *countingConn
}

// newPortPool checks the configuration and that every port can be bound now, so
// a port in use fails at start rather than on the first session.
func newPortPool(cfg portPoolConfig) (*portPool, error) {
	if len(cfg.Ports) == 0 {
		return nil, errors.New("no UDP ports configured")
	}
	if len(cfg.PublicPorts) > 0 && len(cfg.PublicPorts) != len(cfg.Ports) {
		return nil, fmt.Errorf("public ports (%d) and local ports (%d) differ in length", len(cfg.PublicPorts), len(cfg.Ports))
	}
	if cfg.PeersPerPort < 1 {
		cfg.PeersPerPort = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LoggerFactory == nil {
		cfg.LoggerFactory = logging.NewDefaultLoggerFactory()
	}
	for _, ip := range cfg.PublicIPs {
		if addr, err := netip.ParseAddr(ip); err != nil || !addr.Is4() {
			return nil, fmt.Errorf("public IP %q is not an IPv4 address", ip)
		}
	}
	p := &portPool{cfg: cfg, log: cfg.Logger}
	seen := map[int]bool{}
	for i, port := range cfg.Ports {
		if port < 1 || port > 65535 || seen[port] {
			return nil, fmt.Errorf("bad or duplicate UDP port %d", port)
		}
		seen[port] = true
		conn, err := p.listen(port)
		if err != nil {
			return nil, fmt.Errorf("UDP port %d cannot be bound: %w", port, err)
		}
		_ = conn.Close()
		s := &slot{local: port, public: port, holders: map[string]PortHolder{}}
		if len(cfg.PublicPorts) > 0 {
			s.public = cfg.PublicPorts[i]
		}
		p.slots = append(p.slots, s)
	}
	return p, nil
}

func (p *portPool) listen(port int) (*net.UDPConn, error) {
	ip := net.IPv4zero
	if p.cfg.BindIP != "" {
		ip = net.ParseIP(p.cfg.BindIP)
		if ip == nil {
			return nil, fmt.Errorf("bad bind IP %q", p.cfg.BindIP)
		}
	}
	return net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: port})
}

// Acquire leases a port for sessionID. With every port full it returns a
// *PoolFullError.
func (p *portPool) Acquire(sessionID, room string, role Role, onPacket func(port int, from netip.AddrPort, first bool)) (*portLease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	n := len(p.slots)
	// Candidates in order: with sharing on, ports already open and not full
	// (fills sockets before opening new ones); then empty ports from next.
	var order []int
	if p.cfg.PeersPerPort > 1 {
		for i := 0; i < n; i++ {
			j := (p.next + i) % n
			if h := len(p.slots[j].holders); h > 0 && h < p.cfg.PeersPerPort {
				order = append(order, j)
			}
		}
	}
	for i := 0; i < n; i++ {
		if j := (p.next + i) % n; len(p.slots[j].holders) == 0 {
			order = append(order, j)
		}
	}
	var s *slot
	for _, j := range order {
		c := p.slots[j]
		if c.mux == nil {
			conn, err := p.listen(c.local)
			if err != nil {
				// Another program took the port since start: skip it, and
				// let diagnostics report it (every port bindable or leased).
				p.log.Error("leased port cannot be bound", "port", c.local, "err", err)
				continue
			}
			c.conn = newCountingConn(conn, c.local, p.dispatchPacket)
			c.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{
				UDPConn: c.conn,
				Logger:  p.cfg.LoggerFactory.NewLogger("ice-mux"),
				Net:     p.muxNet(),
			})
			c.apis = &leaseAPIs{}
		}
		s = c
		break
	}
	if s == nil {
		return nil, p.fullErrorLocked()
	}
	pick := slices.Index(p.slots, s)
	if len(s.holders) == 0 {
		p.next = (pick + 1) % n
	}
	s.holders[sessionID] = PortHolder{SessionID: sessionID, Room: room, Role: role, Since: time.Now()}
	if onPacket != nil {
		s.conn.addListener(sessionID, onPacket)
	}
	return &portLease{pool: p, slot: s, sessionID: sessionID, Mux: s.mux, apis: s.apis, LocalPort: s.local, PublicPort: s.public, conn: s.conn}, nil
}

// muxNet is the transport.Net the mux uses to list interface addresses
// when bound to 0.0.0.0.
func (p *portPool) muxNet() *stdnet.Net {
	if p.cfg.Net != nil {
		return p.cfg.Net
	}
	n, err := stdnet.NewNet()
	if err != nil {
		p.log.Warn("listing interfaces", "err", err)
		return nil
	}
	return n
}

func (p *portPool) dispatchPacket(c *countingConn, from netip.AddrPort, first bool) {
	for _, fn := range c.listenersSnapshot() {
		fn(c.port, from, first)
	}
}

func (p *portPool) fullErrorLocked() *PoolFullError {
	// The engine replaces RetryAfter with when a port can come back
	// (Engine.lease); the pool alone knows no clocks.
	e := &PoolFullError{Total: len(p.slots), RetryAfter: retryAfterBusy}
	for _, s := range p.slots {
		if len(s.holders) > 0 {
			e.Leased++
			e.Sessions += len(s.holders)
		}
	}
	return e
}

// Close releases the lease: the session leaves the port and, when it was the
// last one, the mux and socket are closed. Safe to call more than once.
func (l *portLease) Close() error {
	var err error
	l.once.Do(func() { err = l.pool.release(l) })
	return err
}

// PacketsIn returns how many packets the lease's socket has received.
func (l *portLease) PacketsIn() uint64 { return l.conn.packets.Load() }

func (p *portPool) release(l *portLease) error {
	p.mu.Lock()
	s := l.slot
	delete(s.holders, l.sessionID)
	s.conn.removeListener(l.sessionID)
	s.conn.forgetValidated(l.sessionID)
	defer p.mu.Unlock()
	if len(s.holders) > 0 || s.mux == nil {
		return nil
	}
	s.packetsIn += s.conn.packets.Load()
	s.bytesIn += s.conn.bytes.Load()
	s.unvalidated += s.conn.unvalidated.Load()
	if t := s.conn.lastPacket(); t.After(s.lastPacket) {
		s.lastPacket = t
	}
	// Closed under the lock (closing a socket does not block): the port is
	// bindable again before any Acquire can pick this slot.
	err := s.mux.Close()
	s.mux, s.conn, s.apis = nil, nil, nil
	return err
}

// Status lists every port of the range.
func (p *portPool) Status() []PortStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PortStatus, 0, len(p.slots))
	for _, s := range p.slots {
		st := PortStatus{
			LocalPort:   s.local,
			PublicPort:  s.public,
			PublicAddrs: p.publicAddrs(s.public),
			Leased:      len(s.holders) > 0,
			PacketsIn:   s.packetsIn,
			BytesIn:     s.bytesIn,
			LastPacket:  s.lastPacket,

			UnvalidatedPackets: s.unvalidated,
		}
		if s.conn != nil {
			st.PacketsIn += s.conn.packets.Load()
			st.BytesIn += s.conn.bytes.Load()
			st.UnvalidatedPackets += s.conn.unvalidated.Load()
			if t := s.conn.lastPacket(); t.After(st.LastPacket) {
				st.LastPacket = t
			}
		}
		for _, h := range s.holders {
			st.Holders = append(st.Holders, h)
		}
		slices.SortFunc(st.Holders, func(a, b PortHolder) int { return a.Since.Compare(b.Since) })
		out = append(out, st)
	}
	return out
}

func (p *portPool) publicAddrs(port int) []string {
	out := make([]string, 0, len(p.cfg.PublicIPs))
	for _, ip := range p.cfg.PublicIPs {
		out = append(out, net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	return out
}

// Capacity returns how many more sessions can be leased now, and the most
// there can be.
func (p *portPool) Capacity() (free, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	total = len(p.slots) * p.cfg.PeersPerPort
	used := 0
	for _, s := range p.slots {
		used += len(s.holders)
	}
	return total - used, total
}

// Bindable tries to bind every free port and returns those that fail, with
// the error; leased ports are reported fine (their socket is pinhole's).
func (p *portPool) Bindable() map[int]error {
	p.mu.Lock()
	var free []int
	for _, s := range p.slots {
		if len(s.holders) == 0 {
			free = append(free, s.local)
		}
	}
	p.mu.Unlock()
	bad := map[int]error{}
	for _, port := range free {
		c, err := p.listen(port)
		if err != nil {
			bad[port] = err
			continue
		}
		_ = c.Close()
	}
	return bad
}

// close marks the pool closed; leases are released by their sessions.
func (p *portPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// countingConn wraps the leased UDP socket: it counts what arrives and tells
// listeners about the first packet and each new source address. That is the
// single most useful fact when a port mapping is broken.
type countingConn struct {
	*net.UDPConn
	port            int
	packets, bytes  atomic.Uint64
	lastNano        atomic.Int64
	onPacket        func(c *countingConn, from netip.AddrPort, first bool)
	mu              sync.Mutex
	listeners       map[string]func(port int, from netip.AddrPort, first bool)
	listenerSnap    atomic.Pointer[[]func(port int, from netip.AddrPort, first bool)]
	seen            map[netip.AddrPort]struct{} // read goroutine only
	lastFrom        netip.AddrPort              // read goroutine only
	maxTrackedAddrs int
	validatedAddrs  // sources ICE validated; see validated.go
}

func newCountingConn(c *net.UDPConn, port int, onPacket func(*countingConn, netip.AddrPort, bool)) *countingConn {
	return &countingConn{
		UDPConn: c, port: port, onPacket: onPacket,
		listeners: map[string]func(int, netip.AddrPort, bool){},
		seen:      map[netip.AddrPort]struct{}{},
		// A handful of addresses per port is normal (host, srflx, relay of one
		// client); more is noise not worth memory.
		maxTrackedAddrs: 32,
	}
}

func (c *countingConn) addListener(id string, fn func(int, netip.AddrPort, bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners[id] = fn
	c.snapLocked()
}

func (c *countingConn) removeListener(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.listeners, id)
	c.snapLocked()
}

func (c *countingConn) snapLocked() {
	s := make([]func(int, netip.AddrPort, bool), 0, len(c.listeners))
	for _, fn := range c.listeners {
		s = append(s, fn)
	}
	c.listenerSnap.Store(&s)
}

func (c *countingConn) listenersSnapshot() []func(int, netip.AddrPort, bool) {
	if p := c.listenerSnap.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *countingConn) lastPacket() time.Time {
	n := c.lastNano.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// observe runs on the mux's single read goroutine.
func (c *countingConn) observe(n int, from netip.AddrPort) {
	first := c.packets.Add(1) == 1
	c.bytes.Add(uint64(n))
	c.lastNano.Store(time.Now().UnixNano())
	c.countValidated(from)
	if from == c.lastFrom && !first {
		return
	}
	c.lastFrom = from
	if _, ok := c.seen[from]; ok {
		return
	}
	if len(c.seen) >= c.maxTrackedAddrs {
		return
	}
	c.seen[from] = struct{}{}
	c.onPacket(c, from, first)
}

// ReadFromAddrPort is the allocation-free read Pion's mux prefers.
func (c *countingConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
	if err == nil {
		c.observe(n, from)
	}
	return n, from, err
}

// WriteToAddrPort is the allocation-free write Pion's mux prefers.
func (c *countingConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}

// ReadFrom counts like ReadFromAddrPort for callers using net.PacketConn.
func (c *countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	c.observe(n, from)
	return n, net.UDPAddrFromAddrPort(from), nil
}
