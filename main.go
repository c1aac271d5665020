// Command pinhole is a WebRTC server for a media box behind NAT: WHIP
// publishers and WHEP viewers meet in rooms, and every peer connection is
// bound to one UDP port leased from a small range that a router or FRP
// tunnel forwards, with the public address advertised in the SDP answer. No
// STUN or TURN server is needed.
//
//	@title						pinhole
//	@version					1.0
//	@description				WHIP/WHEP WebRTC server with rooms and leased, mapped UDP ports. Errors are application/problem+json (RFC 9457).
//	@license.name				MIT
//	@BasePath					/
//	@securityDefinitions.apikey	BearerToken
//	@in							header
//	@name						Authorization
//	@description				"Bearer <room token>" for protected rooms.
//	@securityDefinitions.apikey	AdminToken
//	@in							header
//	@name						Authorization
//	@description				"Bearer <admin token>" (--admin-token, or the one pinhole makes and keeps under --state-dir) for the admin routes: session listings, rooms, ending sessions, the server report, probes, self-test, /metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/pinhole-rtc/pinhole/diagnostics"
	"github.com/pinhole-rtc/pinhole/edge"
	"github.com/pinhole-rtc/pinhole/handlers"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/server"
	"github.com/pinhole-rtc/pinhole/web"
)

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stdout)
	if errors.Is(err, errHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		os.Exit(2)
	}
	log := newLogger(cfg, os.Stderr)
	file, err := ensureAdminToken(&cfg, cfg.StateDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		os.Exit(2)
	}
	if file != "" {
		log.Info("admin token kept in "+file+" (readable by this user only); the web app takes it from the link", "file", file,
			"link", fmt.Sprintf("%s://localhost%s/#admin-token=%s", schemeOf(cfg), portOf(cfg.HTTPAddr), cfg.AdminToken))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, nil); err != nil {
		fmt.Fprintln(os.Stderr, "pinhole:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down: stop accepting HTTP, close
// every peer (freeing leases), record the last events. ready, when set,
// receives the HTTP address once listening (tests use it).
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	srv, err := server.New(serverConfig(cfg, log))
	if err != nil {
		return err
	}
	closed := false
	closeServer := func() {
		if !closed {
			closed = true
			if err := srv.Close(); err != nil {
				log.Warn("closing", "err", err)
			}
		}
	}
	defer closeServer()
	handler, err := edgeHandler(cfg, srv.Handler)
	if err != nil {
		return err
	}
	ln, iceLn, scheme, err := listen(ctx, cfg, log)
	if err != nil {
		return err
	}
	if iceLn != nil {
		if err := srv.Engine.ServeICETCP(iceLn, cfg.PublicHTTPPort); err != nil {
			_ = ln.Close()
			return fmt.Errorf("--ice-tcp: %w", err)
		}
		log.Info("ice-tcp on the http port", "public_port", srv.Engine.ICETCP().PublicPort)
	}
	hs := &http.Server{
		Handler:     handler,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext: edge.ConnContext,
	}
	// Header, body and write deadlines, idle keep-alives and the header
	// cap (edge/conns.go says why each): a stranger cannot hold a
	// goroutine or memory by sending or reading slowly.
	edge.ApplyTimeouts(hs)
	log.Info("pinhole listening", scheme, ln.Addr().String(), "udp_ports", media.FormatPorts(cfg.UDPPorts),
		"public_ips", cfg.PublicIPs, "public_ports", media.FormatPorts(cfg.PublicPorts), "peers_per_port", cfg.PeersPerPort)
	announceAuth(log, cfg)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Stop accepting and let in-flight requests finish, then end every peer
	// connection (the engine frees every lease) and record the last events.
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = hs.Close()
	}
	closeServer()
	log.Info("stopped")
	return nil
}

// schemeOf is how clients reach pinhole with cfg: https when it serves TLS.
func schemeOf(cfg Config) string {
	if cfg.TLSCert != "" || cfg.TLSSelfSigned {
		return "https"
	}
	return "http"
}

// portOf is the ":port" of a listen address, for the link printed at start.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return ":" + port
}

// serverConfig maps the flags onto the parts of pinhole.
func serverConfig(cfg Config, log *slog.Logger) server.Config {
	return server.Config{
		Logger:          log,
		Web:             web.Handler(),
		RoomIdleTimeout: cfg.RoomIdleTimeout,
		Media: media.Config{
			Ports:                  cfg.UDPPorts,
			PublicPorts:            cfg.PublicPorts,
			PublicIPs:              cfg.PublicIPs,
			BindIP:                 cfg.BindIP,
			PeersPerPort:           cfg.PeersPerPort,
			SetupTimeout:           cfg.SetupTimeout,
			ICEDisconnectedTimeout: cfg.ICEDisconnectedTimeout,
			ICEFailedTimeout:       cfg.ICEFailedTimeout,
			ICEKeepalive:           cfg.ICEKeepalive,
			IdleTimeout:            cfg.IdleTimeout,
			UnprovenGrace:          cfg.UnprovenGrace,
			NoPublisherTimeout:     cfg.NoPublisherTimeout,
		},
		HTTP: handlers.Config{
			ICEServers:          cfg.ICEServers,
			CORSOrigins:         cfg.CORSOrigins,
			AutoCreateRooms:     cfg.AutoCreateRooms,
			PeersPerPort:        cfg.PeersPerPort,
			AdminToken:          cfg.AdminToken,
			OpenAPI:             cfg.OpenAPI,
			Limits:              cfg.Limits,
			TrustedProxies:      cfg.TrustedProxies,
			ForwardedHeader:     cfg.ForwardedHeader,
			TURNSecret:          cfg.TURNSecret,
			TURNTTL:             cfg.TURNTTL,
			ShareICECredentials: cfg.ShareICECredentials,
		},
		Diagnostics: diagnostics.Config{
			PublicIPs: cfg.PublicIPs, UDPPorts: cfg.UDPPorts, PublicPorts: cfg.PublicPorts, BindIP: cfg.BindIP,
			ICEServers: cfg.ICEServers, ProbeAllow: cfg.ProbeAllow,
		},
	}
}
