package edge

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"
)

// testDeadline bounds every network wait in these tests; it is generous
// because the machine is shared, and no test asserts speed against it.
const testDeadline = 10 * time.Second

// mustListen listens on a free loopback port.
func mustListen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// mustServe serves h on ln the way main will (ConnContext installed) until
// the test ends.
func mustServe(tb testing.TB, ln net.Listener, h http.Handler) *http.Server {
	tb.Helper()
	srv := &http.Server{
		Handler:           h,
		ConnContext:       ConnContext,
		ReadHeaderTimeout: testDeadline,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return srv
}

// echoClient answers with the resolved client: "addr via peer".
func echoClient(res *Resolver) http.Handler {
	return res.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ClientOf(r)
		fmt.Fprintf(w, "%s %s %s %v", c.Addr, c.Via, c.Peer, ClientIsLoopback(r))
	}))
}

// mustResolver builds a resolver or fails the test.
func mustResolver(tb testing.TB, trusted string, h ForwardHeader) *Resolver {
	tb.Helper()
	res, err := NewResolver(mustPrefixes(tb, trusted), h)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// rawGet writes preface then a GET on c, and returns the response body;
// an error means the server closed the connection or sent no response.
func rawGet(c net.Conn, preface []byte, extra string) (int, string, error) {
	_ = c.SetDeadline(time.Now().Add(testDeadline))
	req := append(append([]byte(nil), preface...), "GET / HTTP/1.1\r\nHost: localhost\r\n"+extra+"\r\n"...)
	if _, err := c.Write(req); err != nil {
		return 0, "", err
	}
	return readResponse(bufio.NewReader(c))
}

func readResponse(br *bufio.Reader) (int, string, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustDial connects to ln over TCP.
func mustDial(tb testing.TB, ln net.Listener) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), testDeadline)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or testDeadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	end := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(end) {
			tb.Fatalf("still waiting for %s after %s", what, testDeadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// warmNetpoll makes the runtime open its poller fds before a leak
// baseline is taken, so they are not counted as a leak.
func warmNetpoll(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ln.Close()
}
