// Package testnet finds free UDP ports for tests and benchmarks. Each
// package's tests take ports from a range of their own, below Linux's
// ephemeral range (32768-60999, where Pion clients' sockets land at random),
// so packages tested in parallel never lease each other's ports.
package testnet

import (
	"net"
	"testing"
	"time"
)

// Port ranges, one per package whose tests lease ports.
const (
	BenchLo, BenchHi       = 12000, 15000
	HandlersLo, HandlersHi = 15000, 18000
	MainLo, MainHi         = 18000, 19000
	MediaLo, MediaHi       = 20000, 32768
)

// FreeUDPPorts returns n consecutive UDP ports in [lo, hi) that can all be
// bound on every IPv4 address now, or fails the test. The search starts at a
// time-derived offset so repeated runs spread over the range.
func FreeUDPPorts(tb testing.TB, n, lo, hi int) []int {
	tb.Helper()
	span := hi - lo - n
	if span <= 0 {
		tb.Fatalf("testnet: range %d-%d cannot hold %d ports", lo, hi, n)
	}
	start := int(time.Now().UnixNano() % int64(span))
	// Visit every start position once, stepping past a failed block.
	for tried := 0; tried < span; tried += n + 3 {
		base := lo + (start+tried)%span
		if bindable(base, n) {
			ports := make([]int, n)
			for i := range ports {
				ports[i] = base + i
			}
			return ports
		}
	}
	tb.Fatalf("testnet: no %d free consecutive UDP ports in %d-%d", n, lo, hi)
	return nil
}

func bindable(base, n int) bool {
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: p})
		if err != nil {
			return false
		}
		conns = append(conns, c)
	}
	return true
}
