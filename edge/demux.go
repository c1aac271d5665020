package edge

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol is what the first bytes of a TCP connection say it speaks.
type Protocol int

// The protocols [Demux] tells apart on one port.
const (
	// ProtoHTTP is plain HTTP/1.x: the request line starts with an
	// upper-case method name (GET, POST, OPTIONS, PRI for h2c...).
	ProtoHTTP Protocol = iota + 1
	// ProtoTLS is a TLS handshake record (content type 22, RFC 8446
	// section 5.1), for the TLS server in front of HTTP.
	ProtoTLS
	// ProtoICE is ICE over TCP (RFC 6544): RFC 4571 framing, a 16-bit
	// length then the packet, whose first packet is a STUN Binding request
	// (RFC 8489 section 5: two zero bits, method 0x001, magic cookie).
	ProtoICE
)

func (p Protocol) String() string {
	switch p {
	case ProtoHTTP:
		return "http"
	case ProtoTLS:
		return "tls"
	case ProtoICE:
		return "ice-tcp"
	}
	return "unknown"
}

const (
	// DefaultFirstBytesTimeout is how long a connection has to send the
	// bytes that say what it speaks: for HTTP and TLS the first byte, for
	// ICE-TCP the whole first STUN frame. Browsers, curl and ICE agents
	// write them in the first packet after the handshake, so 5 s is
	// generous on a slow link while a silent or trickling connection
	// (slowloris) loses its slot quickly.
	DefaultFirstBytesTimeout = 5 * time.Second
	// DefaultMaxPending caps connections that have not yet said what they
	// speak. Real clients leave this state within a round trip, so a few
	// hundred at once is either a flood or a scan; those beyond are closed
	// at once, and the connections already identified are unaffected.
	DefaultMaxPending = 256
	// MaxICEFirstFrame is the largest first ICE-TCP frame accepted. A
	// Binding request with USERNAME, PRIORITY, ICE-CONTROLLING,
	// USE-CANDIDATE, MESSAGE-INTEGRITY and FINGERPRINT is about 100 bytes
	// (a few more with GOOG-NETWORK-INFO); Pion's TCP mux reads the first
	// frame into 512 bytes and drops the connection beyond that.
	MaxICEFirstFrame = 512

	stunHeaderLen = 20
	stunMagic     = 0x2112A442
)

// DemuxConfig is the policy of [Demux].
type DemuxConfig struct {
	// Protocols are the protocols served; a connection speaking another
	// one (or nothing recognisable) is closed. Empty means all three.
	Protocols []Protocol
	// FirstBytesTimeout: zero means [DefaultFirstBytesTimeout].
	FirstBytesTimeout time.Duration
	// MaxPending: zero means [DefaultMaxPending].
	MaxPending int
}

// DemuxStats counts what [Demux] refused, for logs and tests.
type DemuxStats struct {
	Pending   int    // connections not yet identified, now
	OverCap   uint64 // closed on arrival: MaxPending reached
	TimedOut  uint64 // closed: no identifying bytes within FirstBytesTimeout
	Malformed uint64 // closed: unknown first byte, bad framing, not STUN
	Refused   uint64 // closed: a protocol that is not served
}

// Demuxer shares one listener between HTTP, TLS and ICE-TCP; see [Demux].
type Demuxer struct {
	ln      net.Listener
	timeout time.Duration
	max     int64
	subs    map[Protocol]*subListener

	pending                                 atomic.Int64
	overCap, timedOut, malformed, refusedPr atomic.Uint64

	// reading holds the connections being identified, so Close can end
	// their reads at once instead of waiting out the deadline.
	mu      sync.Mutex
	reading map[net.Conn]struct{}

	done      chan struct{}
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error // why Accept ended
	wg        sync.WaitGroup
}

// Demux reads the first bytes of every connection ln accepts and hands the
// connection, those bytes replayed, to the listener of its protocol
// ([Demuxer.Listener]): RFC 4571-framed STUN to Pion's ICE TCP mux, TLS to
// the TLS server, plain HTTP to the HTTP server. One forwarded TCP port
// then serves the API, the web app and media for clients whose network
// lets no UDP out.
//
// The first bytes are read on a goroutine of the connection's own, never
// in Accept, under [DemuxConfig.FirstBytesTimeout], and at most
// [DemuxConfig.MaxPending] connections may be reading them at once.
// Garbage, a bad frame, a silent or trickling connection are closed and
// leave nothing behind.
//
// Demux goes after [LimitConns] and [ProxyProtocol] (the PROXY header comes
// first on the wire, and its read is bounded by its own timeout inside the
// first-bytes deadline) and before tls.NewListener on the TLS listener:
//
//	ln = edge.LimitConns(ln, maxConns)
//	ln, _ = edge.ProxyProtocol(ln, edge.ProxyConfig{})
//	d := edge.Demux(ln, edge.DemuxConfig{})
//	go httpSrv.Serve(d.Listener(edge.ProtoHTTP))
//	go httpSrv.Serve(tls.NewListener(d.Listener(edge.ProtoTLS), tlsConfig))
//	media.Config{ICETCP: d.Listener(edge.ProtoICE)}
//
// Closing every served listener, or the Demuxer, closes ln.
func Demux(ln net.Listener, cfg DemuxConfig) *Demuxer {
	d := &Demuxer{
		ln: ln, timeout: cfg.FirstBytesTimeout, max: int64(cfg.MaxPending),
		subs: map[Protocol]*subListener{}, done: make(chan struct{}), reading: map[net.Conn]struct{}{},
	}
	if d.timeout <= 0 {
		d.timeout = DefaultFirstBytesTimeout
	}
	if d.max <= 0 {
		d.max = DefaultMaxPending
	}
	protos := cfg.Protocols
	if len(protos) == 0 {
		protos = []Protocol{ProtoHTTP, ProtoTLS, ProtoICE}
	}
	for _, p := range protos {
		// Unbuffered: a connection counts as pending until its server has
		// taken it, so a server that stops accepting cannot hoard them.
		d.subs[p] = &subListener{d: d, proto: p, ch: make(chan net.Conn), closed: make(chan struct{})}
	}
	d.wg.Add(1)
	go d.acceptLoop()
	return d
}

// Listener returns the listener of one protocol, or nil when it is not
// among [DemuxConfig.Protocols].
func (d *Demuxer) Listener(p Protocol) net.Listener {
	if s := d.subs[p]; s != nil {
		return s
	}
	return nil
}

// Stats returns the counters.
func (d *Demuxer) Stats() DemuxStats {
	return DemuxStats{Pending: int(d.pending.Load()), OverCap: d.overCap.Load(), TimedOut: d.timedOut.Load(),
		Malformed: d.malformed.Load(), Refused: d.refusedPr.Load()}
}

// Addr is the shared listener's address.
func (d *Demuxer) Addr() net.Addr { return d.ln.Addr() }

// Close closes the shared listener and every protocol listener, closes the
// connections still being identified and waits for their goroutines.
// Connections already handed over belong to their servers. Idempotent.
func (d *Demuxer) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.setErr(net.ErrClosed)
		close(d.done)
		err = d.ln.Close()
	})
	d.mu.Lock()
	for c := range d.reading {
		_ = c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
	return err
}

func (d *Demuxer) setErr(err error) {
	d.errMu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.errMu.Unlock()
}

func (d *Demuxer) acceptErr() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

func (d *Demuxer) acceptLoop() {
	defer d.wg.Done()
	var backoff time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			// Out of file descriptors and the like pass: wait and retry,
			// as net/http does, rather than stop serving for good.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-d.done:
					return
				}
			}
			d.setErr(err)
			d.closeOnce.Do(func() { close(d.done) })
			return
		}
		backoff = 0
		if d.pending.Add(1) > d.max {
			d.pending.Add(-1)
			d.overCap.Add(1)
			abort(c)
			continue
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.pending.Add(-1)
			d.route(c)
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// abort closes c with a reset: no TIME_WAIT left behind for a connection
// that was never served.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// route identifies c and hands it to its protocol's listener, or closes it.
func (d *Demuxer) route(c net.Conn) {
	deadline := time.Now().Add(d.timeout)
	if err := c.SetReadDeadline(deadline); err != nil {
		abort(c)
		return
	}
	d.mu.Lock()
	select {
	case <-d.done:
		d.mu.Unlock()
		abort(c)
		return
	default:
	}
	d.reading[c] = struct{}{}
	d.mu.Unlock()
	p, buf, err := identify(c)
	d.mu.Lock()
	delete(d.reading, c)
	d.mu.Unlock()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			d.timedOut.Add(1)
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			d.malformed.Add(1)
		}
		abort(c)
		return
	}
	sub := d.subs[p]
	if sub == nil {
		d.refusedPr.Add(1)
		abort(c)
		return
	}
	// The server sets its own deadlines from here on.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		abort(c)
		return
	}
	dc := &demuxConn{Conn: c, replay: buf, first: buf, proto: p}
	// The handover shares the first-bytes deadline: a server that does not
	// take the connection in time has it closed.
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case sub.ch <- dc:
	case <-sub.closed:
		abort(c)
	case <-d.done:
		abort(c)
	case <-t.C:
		d.timedOut.Add(1)
		abort(c)
	}
}

// errMalformed is a first byte or first frame no served protocol starts with.
var errMalformed = errors.New("demux: unrecognised first bytes")

// identify reads what tells c's protocol and returns it with the bytes read.
func identify(c net.Conn) (Protocol, []byte, error) {
	buf := make([]byte, 2+MaxICEFirstFrame)
	n, err := io.ReadAtLeast(c, buf, 1)
	if err != nil {
		return 0, nil, err
	}
	switch b := buf[0]; {
	case b == 0x16:
		return ProtoTLS, buf[:n], nil
	case b >= 'A' && b <= 'Z':
		return ProtoHTTP, buf[:n], nil
	case b > MaxICEFirstFrame>>8:
		// The high byte of an RFC 4571 length: a first frame longer than
		// MaxICEFirstFrame, or not a frame at all.
		return 0, nil, errMalformed
	}
	if n < 2 {
		m, err := io.ReadAtLeast(c, buf[n:], 2-n)
		if err != nil {
			return 0, nil, err
		}
		n += m
	}
	size := int(binary.BigEndian.Uint16(buf))
	if size < stunHeaderLen || size > MaxICEFirstFrame {
		return 0, nil, errMalformed
	}
	if n < 2+size {
		m, err := io.ReadFull(c, buf[n:2+size])
		if err != nil {
			return 0, nil, err
		}
		n += m
	}
	if !isBindingRequest(buf[2 : 2+size]) {
		return 0, nil, errMalformed
	}
	return ProtoICE, buf[:n], nil
}

// isBindingRequest checks a STUN header (RFC 8489 section 5): a Binding
// request (0x0001), the magic cookie, a body length that fills the frame
// exactly and is a multiple of 4.
func isBindingRequest(m []byte) bool {
	if len(m) < stunHeaderLen {
		return false
	}
	length := int(binary.BigEndian.Uint16(m[2:4]))
	return binary.BigEndian.Uint16(m[0:2]) == 0x0001 &&
		binary.BigEndian.Uint32(m[4:8]) == stunMagic &&
		length%4 == 0 && stunHeaderLen+length == len(m)
}

// subListener is the listener of one protocol.
type subListener struct {
	d      *Demuxer
	proto  Protocol
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// Accept returns the next connection of the protocol.
func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.d.done:
		return nil, s.d.acceptErr()
	}
}

// Close stops this protocol: its connections are refused from now on.
// When every protocol listener is closed the shared listener is closed too.
func (s *subListener) Close() error {
	s.once.Do(func() { close(s.closed) })
	for _, o := range s.d.subs {
		select {
		case <-o.closed:
		default:
			return nil
		}
	}
	// Not Demuxer.Close: it waits for route goroutines, and a server may
	// close its listener from anywhere.
	var err error
	s.d.closeOnce.Do(func() {
		s.d.setErr(net.ErrClosed)
		close(s.d.done)
		err = s.d.ln.Close()
	})
	return err
}

// Addr is the shared listener's address.
func (s *subListener) Addr() net.Addr { return s.d.ln.Addr() }

// demuxConn is a connection with the bytes read to identify it replayed
// before the rest of the stream.
type demuxConn struct {
	net.Conn
	replay []byte
	first  []byte
	proto  Protocol
}

func (c *demuxConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Peeked returns the bytes that identified the connection: for ICE-TCP
// the whole first RFC 4571 frame (length included) and possibly more. The
// media engine reads the STUN USERNAME there to admit only connections
// for a live session, without a read of its own.
func (c *demuxConn) Peeked() []byte { return c.first }

// NetConn returns the underlying connection, as tls.Conn does.
func (c *demuxConn) NetConn() net.Conn { return c.Conn }
