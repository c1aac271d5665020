package media

import (
	"sync"
	"testing"
)

// Connecting and being claimed as unproven (preemption, setup timeout)
// exclude each other: whichever comes first wins, once, even when they race.
func TestConnectedOrClaimed(t *testing.T) {
	var s session
	if !s.markConnected() || s.markConnected() {
		t.Fatal("markConnected must succeed once")
	}
	if s.claimUnproven() {
		t.Fatal("a connected session was claimed as unproven")
	}
	var c session
	if !c.claimUnproven() || c.claimUnproven() {
		t.Fatal("claimUnproven must succeed once")
	}
	if c.markConnected() {
		t.Fatal("a claimed session was marked connected")
	}
	for i := 0; i < 200; i++ {
		var r session
		var wg sync.WaitGroup
		var conn, claim bool
		wg.Add(2)
		go func() { defer wg.Done(); conn = r.markConnected() }()
		go func() { defer wg.Done(); claim = r.claimUnproven() }()
		wg.Wait()
		if conn == claim {
			t.Fatalf("race %d: connected %v, claimed %v; want exactly one", i, conn, claim)
		}
	}
}
