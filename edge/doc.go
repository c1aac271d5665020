// Package edge is what stands between pinhole's HTTP API and the internet:
// TLS (certificate files reloaded on SIGHUP, or a self-signed certificate
// made at start), the PROXY protocol of a tunnel such as FRP, the client
// address of a request, per-client rate limits, a cap on concurrent
// connections, server timeouts and a Host check against DNS rebinding.
//
// It imports nothing of pinhole's; main builds the pieces from flags and
// stacks them in this order, outermost first:
//
//	ln, _ := net.Listen("tcp", addr)
//	ln = edge.LimitConns(ln, maxConns)               // count every socket, even a silent one
//	ln, _ = edge.ProxyProtocol(ln, edge.ProxyConfig{}) // only with --proxy-protocol
//	ln = tls.NewListener(ln, edge.TLSConfig(certs.GetCertificate))
//
//	res, _ := edge.NewResolver(trustedProxies, edge.XForwardedFor)
//	hosts, _ := edge.AllowHosts(allowedHosts, "--allowed-hosts")
//	srv := &http.Server{Handler: hosts(res.Middleware(router)), ConnContext: edge.ConnContext}
//	edge.ApplyTimeouts(srv)
//	srv.Serve(ln)
//
// The cap comes first so that a connection holding a slot while it sends
// no PROXY header or TLS hello still counts; PROXY comes before TLS because
// the tunnel writes its header in clear ahead of the client's bytes.
//
// A client address is only as good as the path it came over. Behind a
// forwarder that does not announce the client (FRP's TCP proxy without
// proxyProtocolVersion, ssh -R, a reverse proxy not listed as trusted)
// every internet client arrives from 127.0.0.1; [Client.Via] says how an
// address was learned, and nothing in this package treats loopback as a
// privilege.
package edge
