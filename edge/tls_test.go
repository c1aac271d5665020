package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/leakcheck"
)

// mustSelfSigned makes a certificate or fails the test.
func mustSelfSigned(tb testing.TB, hosts ...string) *SelfSigned {
	tb.Helper()
	ss, err := NewSelfSigned(hosts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ss
}

// mustWritePair writes ss as PEM files cert and key, the way a renewal
// tool does: into a temporary file renamed over the old one.
func mustWritePair(tb testing.TB, ss *SelfSigned, certFile, keyFile string) {
	tb.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(ss.Certificate.PrivateKey)
	if err != nil {
		tb.Fatal(err)
	}
	mustWriteFile(tb, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ss.Certificate.Certificate[0]}))
	mustWriteFile(tb, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func mustWriteFile(tb testing.TB, name string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(name+".tmp", b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		tb.Fatal(err)
	}
}

// pinned is a client config that trusts exactly the key with this SPKI
// fingerprint, as Chromium's --ignore-certificate-errors-spki-list does.
func pinned(spki string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if got := FingerprintOf(cert).SPKI; got != spki {
				return fmt.Errorf("server key %s, pinned %s", got, spki)
			}
			return nil
		},
	}
}

// mustTLSServer serves echoClient over TLS with getCert.
func mustTLSServer(tb testing.TB, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) net.Listener {
	tb.Helper()
	ln := mustListen(tb)
	mustServe(tb, tls.NewListener(LimitConns(ln, 64), TLSConfig(getCert)), echoClient(mustResolver(tb, "", XForwardedFor)))
	return ln
}

// tlsConn is a client connection kept open across a reload.
type tlsConn struct {
	c  *tls.Conn
	br *bufio.Reader
}

func mustTLSDial(tb testing.TB, ln net.Listener, cfg *tls.Config) *tlsConn {
	tb.Helper()
	d := &net.Dialer{Timeout: testDeadline}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), cfg)
	if err != nil {
		tb.Fatalf("tls dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return &tlsConn{c: c, br: bufio.NewReader(c)}
}

// get sends one keep-alive request on the connection.
func (tc *tlsConn) get(tb testing.TB) string {
	tb.Helper()
	_ = tc.c.SetDeadline(time.Now().Add(testDeadline))
	if _, err := io.WriteString(tc.c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		tb.Fatalf("write: %v", err)
	}
	code, body, err := readResponse(tc.br)
	if err != nil || code != 200 {
		tb.Fatalf("got %d %q %v", code, body, err)
	}
	return body
}

// served is the certificate a new connection sees.
func served(tb testing.TB, ln net.Listener) *x509.Certificate {
	tb.Helper()
	tc := mustTLSDial(tb, ln, &tls.Config{InsecureSkipVerify: true})
	defer tc.c.Close()
	return tc.c.ConnectionState().PeerCertificates[0]
}

func TestSelfSigned(t *testing.T) {
	ss := mustSelfSigned(t, "203.0.113.5", "media.example.org", "[2001:db8::5]", "localhost")
	leaf := ss.Certificate.Leaf
	if got, want := fmt.Sprint(leaf.DNSNames), "[localhost media.example.org]"; got != want {
		t.Errorf("DNS names %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(leaf.IPAddresses), "[127.0.0.1 ::1 203.0.113.5 2001:db8::5]"; got != want {
		t.Errorf("IPs %s, want %s", got, want)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > SelfSignedValidity+time.Hour {
		t.Errorf("valid for %s, want at most %s", life, SelfSignedValidity+time.Hour)
	}
	if leaf.IsCA {
		t.Error("a server certificate must not be a CA")
	}

	// The certificate verifies against itself for every name it carries.
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "203.0.113.5", "media.example.org"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}

	// Both fingerprints match what openssl computes, when it is installed.
	if _, err := exec.LookPath("openssl"); err == nil {
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
		cmd := exec.Command("sh", "-c",
			"openssl x509 -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64")
		cmd.Stdin = bytes.NewReader(certPEM)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v %s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != ss.Fingerprint.SPKI {
			t.Errorf("SPKI %s, openssl says %s", ss.Fingerprint.SPKI, got)
		}
		cmd = exec.Command("openssl", "x509", "-noout", "-fingerprint", "-sha256")
		cmd.Stdin = bytes.NewReader(certPEM)
		if out, err = cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl: %v %s", err, out)
		}
		_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
		if fp != ss.Fingerprint.SHA256 {
			t.Errorf("SHA-256 %s, openssl says %s", ss.Fingerprint.SHA256, fp)
		}
	}

	// A handshake pinned on the SPKI fingerprint succeeds, with h2, and
	// one pinned on another key fails.
	ln := mustTLSServer(t, ss.GetCertificate)
	cfg := pinned(ss.Fingerprint.SPKI)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: testDeadline}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("got %s (ALPN %q), want HTTP/2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	// Over h2 too the resolver finds the socket through ConnContext.
	if want := "127.0.0.1 socket 127.0.0.1 true"; string(body) != want {
		t.Errorf("client %q, want %q", body, want)
	}
	other := mustSelfSigned(t)
	if c, err := tls.Dial("tcp", ln.Addr().String(), pinned(other.Fingerprint.SPKI)); err == nil {
		c.Close()
		t.Error("handshake pinned on another key succeeded")
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
}

func TestCertReloader(t *testing.T) {
	warmNetpoll(t)
	// os/signal starts its one receiving goroutine, for good, on the
	// first Notify: start it before the baseline.
	warm := make(chan os.Signal, 1)
	signal.Notify(warm, syscall.SIGHUP)
	signal.Stop(warm)
	base := leakcheck.Take(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first, second := mustSelfSigned(t, "first.example"), mustSelfSigned(t, "second.example")

	if _, err := NewCertReloader(certFile, keyFile); err == nil {
		t.Fatal("NewCertReloader succeeded without files")
	}
	mustWritePair(t, first, certFile, keyFile)
	certs, err := NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !certs.Leaf().Equal(first.Certificate.Leaf) {
		t.Fatal("Leaf is not the loaded certificate")
	}

	t.Run("reload", func(t *testing.T) {
		ln := mustTLSServer(t, certs.GetCertificate)
		open := mustTLSDial(t, ln, pinned(first.Fingerprint.SPKI))
		open.get(t)

		mustWritePair(t, second, certFile, keyFile)
		if err := certs.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := served(t, ln); !got.Equal(second.Certificate.Leaf) {
			t.Fatalf("new connection got %v, want the reloaded certificate", got.DNSNames)
		}
		// The connection made before the reload is still served.
		open.get(t)

		// A bad new pair leaves the good one in place.
		for name, write := range map[string]func(){
			"garbage cert": func() { mustWriteFile(t, certFile, []byte("not a certificate")) },
			"key mismatch": func() {
				mustWritePair(t, first, certFile, filepath.Join(dir, "unused"))
				mustWritePair(t, second, filepath.Join(dir, "unused"), keyFile)
			},
			"missing files": func() { os.Remove(certFile); os.Remove(keyFile) },
		} {
			write()
			if err := certs.Reload(); err == nil {
				t.Errorf("%s: Reload succeeded", name)
			}
			if got := served(t, ln); !got.Equal(second.Certificate.Leaf) {
				t.Fatalf("%s: new connection got %v, want the last good certificate", name, got.DNSNames)
			}
		}
		open.get(t)
	})

	t.Run("SIGHUP", func(t *testing.T) {
		ln := mustTLSServer(t, certs.GetCertificate)
		ctx, cancel := context.WithCancel(context.Background())
		reports := make(chan error, 4)
		done := certs.WatchSIGHUP(ctx, func(err error) { reports <- err })
		defer func() { cancel(); <-done }()

		open := mustTLSDial(t, ln, pinned(second.Fingerprint.SPKI))
		open.get(t)
		mustWritePair(t, first, certFile, keyFile)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-reports:
			if err != nil {
				t.Fatalf("reload on SIGHUP: %v", err)
			}
		case <-time.After(testDeadline):
			t.Fatal("no reload after SIGHUP")
		}
		if got := served(t, ln); !got.Equal(first.Certificate.Leaf) {
			t.Fatalf("new connection got %v after SIGHUP, want the new certificate", got.DNSNames)
		}
		open.get(t)
	})

	t.Run("expired pair refused", func(t *testing.T) {
		// A pair whose certificate has expired: same key, dates in the past.
		old := *first.Certificate.Leaf
		old.NotBefore, old.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
		der, err := x509.CreateCertificate(nil, &old, &old, old.PublicKey, first.Certificate.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		expired := &SelfSigned{Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: first.Certificate.PrivateKey}}
		mustWritePair(t, expired, certFile, keyFile)
		if err := certs.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("Reload of an expired pair: %v", err)
		}
		if !certs.Leaf().Equal(first.Certificate.Leaf) {
			t.Fatal("the expired pair replaced the good one")
		}
	})
	leakcheck.Settle(t, base, testDeadline)
}
