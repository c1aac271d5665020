package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/pinhole-rtc/pinhole/edge"
)

// listen opens the HTTP port with its edge, outermost first: the
// connection cap (a silent connection counts too), the PROXY protocol
// (FRP's header comes before any TLS byte), then TLS. It returns the
// listener and the scheme clients use.
func listen(ctx context.Context, cfg Config, log *slog.Logger) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, "", fmt.Errorf("--http-addr: %w", err)
	}
	ln = edge.LimitConns(ln, cfg.MaxConns)
	if cfg.ProxyProtocol {
		if ln, err = edge.ProxyProtocol(ln, edge.ProxyConfig{Upstreams: cfg.ProxyUpstreams}); err != nil {
			return nil, "", fmt.Errorf("--proxy-protocol: %w", err)
		}
	}
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	switch {
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, "", fmt.Errorf("--tls-cert and --tls-key go together")
		}
		rl, err := edge.NewCertReloader(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, "", fmt.Errorf("--tls-cert: %w", err)
		}
		// SIGHUP reloads the pair (after a renewal) for new connections;
		// open ones keep theirs, and a bad pair keeps the old one.
		rl.WatchSIGHUP(ctx, func(err error) {
			if err != nil {
				log.Error("TLS certificate not reloaded; keeping the old one", "err", err)
				return
			}
			log.Info("TLS certificate reloaded", "not_after", rl.Leaf().NotAfter)
		})
		getCert = rl.GetCertificate
	case cfg.TLSSelfSigned:
		ss, err := edge.NewSelfSigned(cfg.PublicIPs...)
		if err != nil {
			return nil, "", fmt.Errorf("--tls-self-signed: %w", err)
		}
		log.Info("serving HTTPS with a self-signed certificate: check its fingerprint in the browser, or trust it with chromium --ignore-certificate-errors-spki-list",
			"sha256", ss.Fingerprint.SHA256, "spki_sha256", ss.Fingerprint.SPKI)
		getCert = ss.GetCertificate
	default:
		return ln, "http", nil
	}
	return tls.NewListener(ln, edge.TLSConfig(getCert)), "https", nil
}

// edgeHandler wraps h in the checks that come before any route: the Host
// check against DNS rebinding (--allowed-hosts).
func edgeHandler(cfg Config, h http.Handler) (http.Handler, error) {
	hosts, err := edge.AllowHosts(cfg.AllowedHosts, "--allowed-hosts")
	if err != nil {
		return nil, fmt.Errorf("--allowed-hosts: %w", err)
	}
	return hosts(h), nil
}
