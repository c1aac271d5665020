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
// (FRP's header comes before any other byte), the demux that hands
// ICE-TCP to the media engine (--ice-tcp), then TLS. It returns the HTTP
// listener, the ICE-TCP one (nil without --ice-tcp) and the scheme clients
// use.
func listen(ctx context.Context, cfg Config, log *slog.Logger) (httpLn, iceLn net.Listener, scheme string, err error) {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, nil, "", fmt.Errorf("--http-addr: %w", err)
	}
	ln = edge.LimitConns(ln, cfg.MaxConns)
	if cfg.ProxyProtocol {
		if ln, err = edge.ProxyProtocol(ln, edge.ProxyConfig{Upstreams: cfg.ProxyUpstreams}); err != nil {
			return nil, nil, "", fmt.Errorf("--proxy-protocol: %w", err)
		}
	}
	getCert, err := certificates(ctx, cfg, log)
	if err != nil {
		return nil, nil, "", err
	}
	web := edge.ProtoHTTP
	if getCert != nil {
		web = edge.ProtoTLS
	}
	if cfg.ICETCP {
		// One port for the API, the web app and media over TCP: the demux
		// hands RFC 4571-framed STUN to the engine's ICE-TCP mux and the
		// rest (HTTP, or TLS when it is on) to the web server.
		d := edge.Demux(ln, edge.DemuxConfig{Protocols: []edge.Protocol{web, edge.ProtoICE}})
		ln, iceLn = d.Listener(web), d.Listener(edge.ProtoICE)
	}
	if getCert == nil {
		return ln, iceLn, "http", nil
	}
	return tls.NewListener(ln, edge.TLSConfig(getCert)), iceLn, "https", nil
}

// certificates is the TLS certificate source the flags ask for, or nil
// for plain HTTP.
func certificates(ctx context.Context, cfg Config, log *slog.Logger) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	switch {
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, fmt.Errorf("--tls-cert and --tls-key go together")
		}
		rl, err := edge.NewCertReloader(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
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
		return rl.GetCertificate, nil
	case cfg.TLSSelfSigned:
		ss, err := edge.NewSelfSigned(cfg.PublicIPs...)
		if err != nil {
			return nil, fmt.Errorf("--tls-self-signed: %w", err)
		}
		log.Info("serving HTTPS with a self-signed certificate: check its fingerprint in the browser, or trust it with chromium --ignore-certificate-errors-spki-list",
			"sha256", ss.Fingerprint.SHA256, "spki_sha256", ss.Fingerprint.SPKI)
		return ss.GetCertificate, nil
	}
	return nil, nil
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
