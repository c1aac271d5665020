// Package leakcheck counts what a leak shows in, goroutines and open file
// descriptors, so that soak and shutdown tests can check the process is
// back where it started once every session has ended. It is for tests only.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// Snapshot is the process's goroutine and open-fd counts at one moment.
type Snapshot struct {
	Goroutines, FDs int
}

func (s Snapshot) String() string {
	return fmt.Sprintf("%d goroutines, %d fds", s.Goroutines, s.FDs)
}

// Take counts goroutines and the entries of /proc/self/fd.
func Take(tb testing.TB) Snapshot {
	tb.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatalf("leakcheck: counting fds: %v", err)
	}
	return Snapshot{Goroutines: runtime.NumGoroutine(), FDs: len(fds)}
}

// Settle polls until both counts are back to base or below, and returns
// them; past within it fails the test with every goroutine's stack. Pion
// ends its goroutines asynchronously after Close, hence the polling.
func Settle(tb testing.TB, base Snapshot, within time.Duration) Snapshot {
	tb.Helper()
	end := time.Now().Add(within)
	for {
		now := Take(tb)
		if now.Goroutines <= base.Goroutines && now.FDs <= base.FDs {
			return now
		}
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			tb.Fatalf("leakcheck: not back to baseline after %s: now %s, baseline %s\n%s",
				within, now, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
