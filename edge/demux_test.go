package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
)

// bindingFrame is an RFC 4571 frame holding a STUN Binding request with a
// USERNAME attribute, as an ICE-TCP active agent sends first.
func bindingFrame(user string) []byte {
	attr := make([]byte, 4, 4+len(user)+3)
	binary.BigEndian.PutUint16(attr, 0x0006) // USERNAME
	binary.BigEndian.PutUint16(attr[2:], uint16(len(user)))
	attr = append(attr, user...)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	msg := make([]byte, 20, 20+len(attr))
	binary.BigEndian.PutUint16(msg, 0x0001)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(attr)))
	binary.BigEndian.PutUint32(msg[4:], stunMagic)
	copy(msg[8:20], "transactid12")
	msg = append(msg, attr...)
	frame := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(frame, uint16(len(msg)))
	return append(frame, msg...)
}

func TestIdentify(t *testing.T) {
	frame := bindingFrame("srv:cli")
	notBinding := append([]byte(nil), frame...)
	notBinding[3] = 0x11 // a Binding success response
	badLen := append([]byte(nil), frame...)
	badLen[1]++ // the frame is one byte longer than the STUN message
	for _, tc := range []struct {
		name string
		in   []byte
		want Protocol
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ProtoHTTP},
		{"h2c preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ProtoHTTP},
		{"tls", []byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5}, ProtoTLS},
		{"ice-tcp", frame, ProtoICE},
		{"ice-tcp, byte by byte", frame, ProtoICE},
		{"ice-tcp, more frames behind", append(append([]byte(nil), frame...), frame...), ProtoICE},
		{"garbage", []byte("\xff\xfe junk"), 0},
		{"lower case", []byte("get / HTTP/1.1\r\n"), 0},
		{"frame too long", []byte{0x02, 0x01}, 0},
		{"frame too short", []byte{0x00, 0x04, 0, 1, 0, 0}, 0},
		{"not a binding request", notBinding, 0},
		{"frame and STUN length differ", append(badLen, 0), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go func() {
				if tc.name == "ice-tcp, byte by byte" {
					for i := range tc.in {
						if _, err := b.Write(tc.in[i : i+1]); err != nil {
							return
						}
					}
				} else {
					_, _ = b.Write(tc.in)
				}
				// The pipe stays open until the test ends, so identify
				// sees no EOF.
			}()
			_ = a.SetReadDeadline(time.Now().Add(testDeadline))
			p, buf, err := identify(a)
			if tc.want == 0 {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("got %v %v, want errMalformed", p, err)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("got %v %v, want %v", p, err, tc.want)
			}
			if !bytes.HasPrefix(tc.in, buf) || len(buf) == 0 {
				t.Fatalf("peeked %q is not a prefix of the input", buf)
			}
			if p == ProtoICE && len(buf) < len(frame) {
				t.Fatalf("peeked %d bytes, less than the first frame (%d)", len(buf), len(frame))
			}
		})
	}
}

// One port: plain HTTP, HTTPS and ICE-TCP each reach their own listener,
// with every byte the client sent; the HTTP server sees the client address.
func TestDemuxRoutes(t *testing.T) {
	base := leakcheck.Take(t)
	func() {
		ln := mustListen(t)
		d := Demux(ln, DemuxConfig{})
		defer d.Close()
		res := mustResolver(t, "", XForwardedFor)
		cert, err := NewSelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		plain := mustServe(t, d.Listener(ProtoHTTP), echoClient(res))
		secure := mustServe(t, tls.NewListener(d.Listener(ProtoTLS), TLSConfig(cert.GetCertificate)), echoClient(res))
		defer plain.Close()
		defer secure.Close()

		pool := x509.NewCertPool()
		pool.AddCert(cert.Certificate.Leaf)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: testDeadline}
		for _, scheme := range []string{"http", "https"} {
			resp, err := c.Get(scheme + "://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatalf("%s: %v", scheme, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.HasPrefix(b, []byte("127.0.0.1 socket")) {
				t.Fatalf("%s: client %q, want 127.0.0.1 via socket", scheme, b)
			}
		}

		frame := bindingFrame("srv:cli")
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := d.Listener(ProtoICE).Accept()
			if err == nil {
				accepted <- c
			}
		}()
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		tail := []byte("after the first frame")
		if _, err := cc.Write(append(append([]byte(nil), frame...), tail...)); err != nil {
			t.Fatal(err)
		}
		var sc net.Conn
		select {
		case sc = <-accepted:
		case <-time.After(testDeadline):
			t.Fatal("ICE-TCP connection not handed over")
		}
		defer sc.Close()
		p, ok := sc.(interface{ Peeked() []byte })
		if !ok || !bytes.HasPrefix(p.Peeked(), frame) {
			t.Fatalf("Peeked does not hold the first frame")
		}
		got := make([]byte, len(frame)+len(tail))
		_ = sc.SetReadDeadline(time.Now().Add(testDeadline))
		if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got[:len(frame)], frame) || !bytes.Equal(got[len(frame):], tail) {
			t.Fatalf("replayed stream %q, %v", got, err)
		}
	}()
	leakcheck.Settle(t, base, testDeadline)
}

// Garbage, a silent connection, a first frame that stops half way, a
// protocol that is not served: each is closed within the first-bytes
// deadline, counted, and nothing stays behind. Over the cap, connections
// are closed at once while identified ones are untouched.
func TestDemuxRefuses(t *testing.T) {
	base := leakcheck.Take(t)
	func() {
		const timeout = 300 * time.Millisecond
		ln := mustListen(t)
		d := Demux(ln, DemuxConfig{FirstBytesTimeout: timeout, MaxPending: 4, Protocols: []Protocol{ProtoHTTP, ProtoICE}})
		defer d.Close()
		dial := func(t *testing.T) net.Conn {
			t.Helper()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		// closed waits for the server to close c (EOF or reset), within
		// a generous bound that is no assertion of speed.
		closed := func(t *testing.T, c net.Conn) {
			t.Helper()
			_ = c.SetReadDeadline(time.Now().Add(testDeadline))
			if _, err := io.Copy(io.Discard, c); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("connection still open")
				}
			}
		}
		frame := bindingFrame("srv:cli")
		for _, tc := range []struct {
			name string
			send []byte
		}{
			{"garbage", []byte("\x7f\x00garbage")},
			{"silent", nil},
			{"slow first byte", nil},
			{"half-open frame", frame[:len(frame)/2]},
			{"header only", frame[:2]},
			{"tls not served", []byte{0x16, 0x03, 0x01}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dial(t)
				if len(tc.send) > 0 {
					if _, err := c.Write(tc.send); err != nil {
						t.Fatal(err)
					}
				}
				if tc.name == "slow first byte" {
					// One byte after the deadline: already closed.
					time.Sleep(2 * timeout)
					_, _ = c.Write([]byte("G"))
				}
				closed(t, c)
			})
		}
		st := d.Stats()
		if st.Malformed < 1 || st.TimedOut < 4 || st.Refused < 1 {
			t.Fatalf("stats %+v", st)
		}

		t.Run("over the cap", func(t *testing.T) {
			// The refused connections above leave pending just after
			// their client sees the close.
			for end := time.Now().Add(testDeadline); d.Stats().Pending > 0; {
				if time.Now().After(end) {
					t.Fatalf("pending %d", d.Stats().Pending)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var silent []net.Conn
			for i := 0; i < 4; i++ {
				silent = append(silent, dial(t))
			}
			// Wait until the four hold every pending slot.
			for end := time.Now().Add(testDeadline); d.Stats().Pending < 4; {
				if time.Now().After(end) {
					t.Fatalf("pending %d", d.Stats().Pending)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The kernel completes the handshake before Accept, so the
			// reset comes on the first read, or already on connect.
			if extra, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				closed(t, extra)
				extra.Close()
			} else if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatal(err)
			}
			if d.Stats().OverCap < 1 {
				t.Fatalf("stats %+v", d.Stats())
			}
			for _, c := range silent {
				closed(t, c)
			}
		})
	}()
	leakcheck.Settle(t, base, testDeadline)
}

// Closing the Demuxer ends connections still being identified at once, and
// every listener's Accept returns net.ErrClosed.
func TestDemuxClose(t *testing.T) {
	base := leakcheck.Take(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := Demux(ln, DemuxConfig{FirstBytesTimeout: time.Minute})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for end := time.Now().Add(testDeadline); d.Stats().Pending < 1; {
		if time.Now().After(end) {
			t.Fatal("not pending")
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { _, err := d.Listener(ProtoICE).Accept(); done <- err }()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(testDeadline))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("pending connection not closed")
	}
	c.Close()
	leakcheck.Settle(t, base, testDeadline)
}
