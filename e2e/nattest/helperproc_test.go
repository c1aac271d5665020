package nattest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// helperProc is one helper process of this test binary: commands go to its
// stdin, protocol lines (protoPrefix) come back on its stdout, and its log
// is kept from stderr. It ends when its stdin closes, at the test's
// cleanup, or when grace has passed after that, by cancel.
type helperProc struct {
	name   string
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr bytes.Buffer
	lw     *lockedWriter // writes stderr; logText reads it under the same lock
}

// startHelper starts cmd (made with ctx, which cancel ends) and wires it.
func startHelper(t *testing.T, name string, cmd *exec.Cmd, cancel context.CancelFunc, grace time.Duration) *helperProc {
	t.Helper()
	h := &helperProc{name: name}
	h.lw = &lockedWriter{w: &h.stderr}
	cmd.Stderr = h.lw
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.in, h.out = in, bufio.NewScanner(out)
	h.out.Buffer(make([]byte, 1<<20), 1<<20)
	t.Cleanup(func() {
		_ = h.in.Close() // the helper exits when its stdin ends
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, lastLines([]byte(h.logText()), 40))
		}
	})
	return h
}

// read decodes the next protocol line into v.
func (h *helperProc) read(v any) error {
	for h.out.Scan() {
		if line, ok := strings.CutPrefix(h.out.Text(), protoPrefix); ok {
			return json.Unmarshal([]byte(line), v)
		}
	}
	if err := h.out.Err(); err != nil {
		return err
	}
	return io.EOF
}

// logText is what the helper wrote to stderr so far; the process may still
// be writing, so it is read under the writer's lock.
func (h *helperProc) logText() string {
	h.lw.mu.Lock()
	defer h.lw.mu.Unlock()
	return h.stderr.String()
}

// namespaceTest is the start of every test of this package: it skips in a
// helper process (the helpers run this binary again), checks that this
// machine can build namespaces and a NAT (see requireNamespaces), and
// returns the firewall dialect and this binary, to start helpers with.
func namespaceTest(t *testing.T) (firewall, string) {
	t.Helper()
	if *role != "" || *starveRole != "" {
		t.Skip("helper process")
	}
	fw := requireNamespaces(t)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fw, bin
}

// addNamespaces makes network namespaces with lo up, deleted when the test
// ends.
func addNamespaces(t *testing.T, names ...string) {
	t.Helper()
	for _, ns := range names {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		runIn(t, ns, "ip", "link", "set", "lo", "up")
	}
}
