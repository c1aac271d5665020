package main

import (
	"io"
	"strings"
	"testing"
)

// FuzzParsePorts: --udp-ports and --public-ports. No panic; an accepted
// value is a list of distinct ports 1-65535, at most maxPorts of them, in
// the order written.
func FuzzParsePorts(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		ports, err := parsePorts(v)
		if err != nil {
			if ports != nil {
				t.Fatalf("error %v with ports %v", err, ports)
			}
			return
		}
		if len(ports) > maxPorts {
			t.Fatalf("%d ports accepted, at most %d", len(ports), maxPorts)
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if p < 1 || p > 65535 || seen[p] {
				t.Fatalf("accepted port %d in %v", p, ports)
			}
			seen[p] = true
		}
	})
}

// FuzzParseConfig: the whole command line and one environment variable.
// No panic; an error is one line that names a flag or variable; an
// accepted config is one pinhole can start with.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, args, envName, envValue string) {
		if strings.Contains(args+envName, "token-file") {
			// A file name from the fuzzer could be any file; the token
			// file is covered by TestAdminTokenFlags.
			t.Skip()
		}
		argv := strings.Fields(args)
		getenv := func(k string) string {
			if k == envName {
				return envValue
			}
			return ""
		}
		cfg, err := parseConfig(argv, getenv, io.Discard)
		if err != nil {
			if err == errHelp {
				return
			}
			if msg := err.Error(); strings.Contains(msg, "\n") && !strings.Contains(args+envValue, "\n") {
				t.Fatalf("error spans lines: %q", msg)
			}
			return
		}
		if len(cfg.UDPPorts) == 0 || len(cfg.UDPPorts) > maxPorts {
			t.Fatalf("accepted %d UDP ports", len(cfg.UDPPorts))
		}
		if len(cfg.PublicPorts) != 0 && len(cfg.PublicPorts) != len(cfg.UDPPorts) {
			t.Fatalf("accepted %d public ports for %d local", len(cfg.PublicPorts), len(cfg.UDPPorts))
		}
		if cfg.PeersPerPort < 1 || cfg.SetupTimeout <= 0 || cfg.HTTPAddr == "" {
			t.Fatalf("accepted config %+v", cfg)
		}
		l := cfg.Limits
		if l.MaxSDPBytes < 1 || l.MaxCandidates < 1 || l.MaxMLines < 1 || !(l.SessionRate > 0) || l.SessionBurst < 1 {
			t.Fatalf("accepted limits %+v", l)
		}
	})
}
