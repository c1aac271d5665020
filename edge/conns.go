package edge

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimiter is a listener that holds at most a fixed number of accepted
// connections open at once and closes any connection beyond that as soon
// as it is accepted (--max-conns).
//
// It refuses rather than blocks, unlike x/net/netutil.LimitListener: a
// blocked Accept leaves new connections in the kernel's backlog, where they
// wait silently, fill it, and then time out on the client side, while a
// flood holding every slot decides when anyone else gets in. Closing at
// once (with a reset, which frees the socket without TIME_WAIT) tells the
// client straight away and keeps the backlog draining.
type ConnLimiter struct {
	net.Listener
	max     int64
	active  atomic.Int64
	refused atomic.Uint64
}

// LimitConns caps ln at max concurrent connections; max below 1 means 1.
func LimitConns(ln net.Listener, max int) *ConnLimiter {
	if max < 1 {
		max = 1
	}
	return &ConnLimiter{Listener: ln, max: int64(max)}
}

// Accept returns the next connection within the cap; connections over it
// are closed and counted, and Accept waits for the next one.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) <= l.max {
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.active.Add(-1)
		l.refused.Add(1)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// Active is the number of connections open now.
func (l *ConnLimiter) Active() int { return int(l.active.Load()) }

// Refused is the number of connections closed for being over the cap.
func (l *ConnLimiter) Refused() uint64 { return l.refused.Load() }

// limitedConn gives its slot back when closed, once however often it is.
type limitedConn struct {
	net.Conn
	l    *ConnLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.active.Add(-1) })
	return err
}

// Server timeouts set by [ApplyTimeouts].
const (
	// ReadHeaderTimeout: a real client sends its request headers within a
	// round trip or two; 10 s covers a poor mobile link and stops a client
	// that trickles headers to hold a connection (slowloris).
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included. The
	// largest body pinhole takes is an SDP offer or JSON of some 100 KiB;
	// 30 s is that at a few KiB/s.
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds writing a response. Answers are small, so 30 s
	// only ever ends a client that stopped reading. A long-lived stream
	// (text/event-stream) moves its own deadlines: see [KeepStreaming].
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes a kept-alive connection with no request for two
	// minutes: enough for a page polling the API, short enough that idle
	// browsers do not pile up against --max-conns.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes: pinhole's requests carry a bearer token and the usual
	// browser headers, a few KiB; 64 KiB instead of Go's 1 MiB default keeps
	// a header flood cheap.
	MaxHeaderBytes = 64 << 10
)

// ApplyTimeouts sets srv's timeouts and header cap to the values above.
func ApplyTimeouts(srv *http.Server) {
	srv.ReadHeaderTimeout = ReadHeaderTimeout
	srv.ReadTimeout = ReadTimeout
	srv.WriteTimeout = WriteTimeout
	srv.IdleTimeout = IdleTimeout
	srv.MaxHeaderBytes = MaxHeaderBytes
}

// KeepStreaming lets a handler outlive the server's ReadTimeout and
// WriteTimeout, for a text/event-stream response. Call it when the stream
// starts and before each event: it lifts the read deadline (once it
// passes, net/http's background read fails and cancels the request's
// context, ending the stream) and sets the write deadline idle from now, so
// the stream lives as long as it keeps writing and a client that stops
// reading is still cut off after idle.
func KeepStreaming(w http.ResponseWriter, idle time.Duration) error {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	return rc.SetWriteDeadline(time.Now().Add(idle))
}
