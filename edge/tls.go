package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// TLSConfig is the server side of pinhole's TLS: TLS 1.2 or later (1.0
// and 1.1 are deprecated by RFC 8996 and no browser that speaks WebRTC
// needs them), ALPN offering h2 then http/1.1, and certificates from
// getCert on every handshake, so a [CertReloader] can swap them while the
// server runs. TLS 1.2 is limited to ECDHE with AEAD ciphers, the suites
// that give forward secrecy; TLS 1.3 suites are not configurable in Go and
// all of them are fine.
func TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: getCert,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// CertReloader serves the certificate and key of two PEM files
// (--tls-cert, --tls-key) and loads them again on [CertReloader.Reload].
// Handshakes already done keep the certificate they got, so a reload never
// drops a connection; new handshakes get the new pair.
type CertReloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// NewCertReloader loads the pair once; it fails when that first load does,
// since a server with no certificate cannot serve TLS at all.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads both files again. When they do not make a valid pair (a
// half-copied file, a key that does not match, a certificate already
// expired) it returns why and keeps serving the pair it had, so a botched
// renewal leaves the server as it was rather than without TLS.
func (c *CertReloader) Reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", c.certFile, c.keyFile, err)
	}
	// Go fills Leaf since 1.23; parse ourselves if it did not.
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("tls: parsing %s: %w", c.certFile, err)
		}
	}
	if now := time.Now(); now.After(pair.Leaf.NotAfter) {
		return fmt.Errorf("tls: %s expired on %s", c.certFile, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.cur.Store(&pair)
	return nil
}

// GetCertificate is for [tls.Config.GetCertificate]: the pair of the
// latest successful load.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// Leaf is the certificate currently served, for logging its names, expiry
// and [FingerprintOf].
func (c *CertReloader) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// WatchSIGHUP reloads the pair each time the process gets SIGHUP, until ctx
// ends, and hands every outcome to report (nil on success; report may be
// nil). The handler is installed before WatchSIGHUP returns, so a SIGHUP
// sent right after is not missed; while it runs SIGHUP no longer ends the
// process. The returned channel is closed once the watcher has stopped.
func (c *CertReloader) WatchSIGHUP(ctx context.Context, report func(error)) <-chan struct{} {
	// One buffered slot: signals arriving during a reload coalesce into
	// one more reload, which reads the files as they are by then.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				err := c.Reload()
				if report != nil {
					report(err)
				}
			}
		}
	}()
	return done
}

// Fingerprint names a certificate the two ways people pin one.
type Fingerprint struct {
	// SPKI is the base64 SHA-256 of the certificate's SubjectPublicKeyInfo,
	// the form Chromium's --ignore-certificate-errors-spki-list takes (and
	// HPKP's pin-sha256). It stays the same for as long as the key does.
	SPKI string
	// SHA256 is the SHA-256 of the whole certificate in colon-separated
	// upper-case hex, as browsers' certificate viewers and
	// `openssl x509 -fingerprint -sha256` show it.
	SHA256 string
}

// FingerprintOf computes both fingerprints of a certificate.
func FingerprintOf(cert *x509.Certificate) Fingerprint {
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	whole := sha256.Sum256(cert.Raw)
	hex := make([]string, len(whole))
	for i, b := range whole {
		hex[i] = fmt.Sprintf("%02X", b)
	}
	return Fingerprint{
		SPKI:   base64.StdEncoding.EncodeToString(spki[:]),
		SHA256: strings.Join(hex, ":"),
	}
}

// SelfSignedValidity is how long a --tls-self-signed certificate is valid.
// The certificate and its key are made at every start and live only in
// memory, so they need to outlast one run, not more; 30 days covers a long
// run while keeping a copied key, or a fingerprint someone pinned, useful
// for a month at most. Browsers reach such a server by an exception or by
// SPKI pinning, neither of which looks at the dates beyond this.
const SelfSignedValidity = 30 * 24 * time.Hour

// SelfSigned is a certificate made by [NewSelfSigned].
type SelfSigned struct {
	// Certificate is the pair, with Leaf filled.
	Certificate tls.Certificate
	// Fingerprint is what a client pins to trust it.
	Fingerprint Fingerprint
}

// GetCertificate is for [tls.Config.GetCertificate].
func (s *SelfSigned) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.Certificate, nil
}

// NewSelfSigned makes an ECDSA P-256 certificate (the key type every TLS
// stack accepts, and fast to make) for localhost, 127.0.0.1 and ::1 plus
// hosts: host names and IP addresses, such as the configured public IP.
// It is valid from an hour ago (a client clock a little behind must not
// see it as not yet valid) for [SelfSignedValidity].
func NewSelfSigned(hosts ...string) (*SelfSigned, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls: making a key: %w", err)
	}
	// RFC 5280 allows serials of up to 20 octets; 128 random bits make
	// two certificates of one host name tell apart.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("tls: making a serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pinhole self-signed"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h), "["), "]")
		if h == "" || seen[strings.ToLower(h)] {
			continue
		}
		seen[strings.ToLower(h)] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tls: signing the certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errors.Join(errors.New("tls: parsing the certificate just made"), err)
	}
	return &SelfSigned{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Fingerprint: FingerprintOf(leaf),
	}, nil
}
