package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/internal/testnet"
)

// wait bounds every single wait for an event (connection, first keyframe,
// server start). It is generous: the machine is shared with the clients.
const wait = 20 * time.Second

// binFlag runs the benchmarks against a pinhole binary built elsewhere
// (e.g. an older commit, to compare): go test ./bench -bench . -args -bin=/path.
var binFlag = flag.String("bin", "", "pinhole binary to benchmark (default: build this tree)")

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// pinholeBinary builds the pinhole command from this working tree once per
// test binary run. The build is lazy so `go test ./bench` without -bench
// never compiles or starts anything.
func pinholeBinary(tb testing.TB) string {
	tb.Helper()
	if *binFlag != "" {
		return *binFlag
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pinhole-bench-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pinhole")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(gobin, "build", "-o", binPath, "..")
		cmd.Stderr = os.Stderr
		buildErr = cmd.Run()
	})
	if buildErr != nil {
		tb.Fatalf("building pinhole: %v", buildErr)
	}
	return binPath
}

// serverOptions choose how the child server runs.
type serverOptions struct {
	// Ports is how many consecutive UDP ports the server leases.
	Ports int
	// PeersPerPort is passed as --peers-per-port (default 1).
	PeersPerPort int
	// Extra flags, appended last.
	Extra []string
}

// server is a pinhole child process on loopback.
type server struct {
	cmd   *exec.Cmd
	pid   int
	base  string // http://127.0.0.1:port
	ports []int
	hc    *http.Client

	mu      sync.Mutex
	liveMB  float64 // live heap after the last GC (gctrace), MB
	stackMB float64
	gcs     int
	tail    []string // last log lines, for failures
	exited  chan struct{}
	// mediamtx is set for a mediamtx child (compare_test.go): its WHIP and
	// WHEP endpoints are /{room}/whip and /{room}/whep.
	mediamtx bool
}

// whipPath and whepPath are the server's WHIP and WHEP endpoints of room.
func (s *server) whipPath(room string) string {
	if s.mediamtx {
		return "/" + room + "/whip"
	}
	return "/whip/" + room
}

func (s *server) whepPath(room string) string {
	if s.mediamtx {
		return "/" + room + "/whep"
	}
	return "/whep/" + room
}

var gcLine = regexp.MustCompile(`^gc (\d+) .* (\d+)->(\d+)->(\d+) MB, \d+ MB goal, (\d+) MB stacks`)

// startServer starts pinhole with loopback-only addresses: HTTP on a free
// 127.0.0.1 port, UDP leases bound to 127.0.0.1 and advertised as
// 127.0.0.1. GODEBUG=gctrace=1 makes the runtime print the live heap after
// every collection, which is how the memory benchmark reads the server's
// heap without any debug endpoint.
func startServer(tb testing.TB, o serverOptions) *server {
	tb.Helper()
	bin := pinholeBinary(tb)
	if o.Ports == 0 {
		o.Ports = 20
	}
	if o.PeersPerPort == 0 {
		o.PeersPerPort = 1
	}
	httpPort := freeTCPPort(tb)
	ports := freeUDPPorts(tb, o.Ports)
	args := []string{
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--udp-ports", fmt.Sprintf("%d-%d", ports[0], ports[len(ports)-1]),
		"--public-ip", "127.0.0.1",
		"--bind-ip", "127.0.0.1",
		"--peers-per-port", strconv.Itoa(o.PeersPerPort),
		// The abuse limits are sized for strangers on the internet; every
		// benchmark client is 127.0.0.1, and the crowd room holds 201.
		"--session-rate", "10000", "--session-burst", "10000",
		"--max-sessions-per-room", "1000",
	}
	args = append(args, o.Extra...)
	cmd := exec.Command(bin, args...)
	// Keep a GODEBUG the caller set (e.g. memprofilerate=1 for a heap
	// profile of a -bin build with pprof) and add gctrace to it.
	godebug := "gctrace=1"
	if v, ok := os.LookupEnv("GODEBUG"); ok && v != "" {
		godebug = v + "," + godebug
	}
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	// The server dies with the benchmark binary, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting pinhole: %v", err)
	}
	s := &server{
		cmd: cmd, pid: cmd.Process.Pid, ports: ports,
		base:   fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		hc:     &http.Client{Timeout: wait, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		exited: make(chan struct{}),
	}
	go s.readLog(stderr)
	tb.Cleanup(s.stop)
	deadline := time.Now().Add(wait)
	for {
		resp, err := s.hc.Get(s.base + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.exited:
			tb.Fatalf("pinhole exited at start:\n%s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pinhole not healthy after %s:\n%s", wait, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) readLog(r io.Reader) {
	defer close(s.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		if m := gcLine.FindStringSubmatch(line); m != nil {
			s.gcs, _ = strconv.Atoi(m[1])
			s.liveMB, _ = strconv.ParseFloat(m[4], 64)
			s.stackMB, _ = strconv.ParseFloat(m[5], 64)
		} else {
			s.tail = append(s.tail, line)
			if len(s.tail) > 40 {
				s.tail = s.tail[len(s.tail)-40:]
			}
		}
		s.mu.Unlock()
	}
}

func (s *server) logTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// stop interrupts the server (graceful shutdown closes every session) and
// kills it if it has not exited in time. Only this child is signalled.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	_ = s.cmd.Wait()
}

// clockTick is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; it
// is 100 on every Linux this runs on (glibc's sysconf(_SC_CLK_TCK)).
const clockTick = 10 * time.Millisecond

// cpu returns the server's user+system CPU time so far (all threads).
func (s *server) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line (1-based).
	rest := b[bytes.LastIndexByte(b, ')')+2:]
	f := strings.Fields(string(rest))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// rssKB returns the server's resident set size in KiB.
func (s *server) rssKB(tb testing.TB) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// liveHeapAfterGC waits for a garbage collection that starts after now and
// returns the live heap it found, in MB (gctrace's resolution), plus stacks.
func (s *server) liveHeapAfterGC(tb testing.TB) (heapMB, stackMB float64) {
	tb.Helper()
	s.mu.Lock()
	start := s.gcs
	s.mu.Unlock()
	deadline := time.Now().Add(3 * wait)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n, h, st := s.gcs, s.liveMB, s.stackMB
		s.mu.Unlock()
		// Two collections later the first one's floating garbage is gone.
		if n >= start+2 {
			return h, st
		}
		// An idle server may not collect for minutes: make it allocate
		// (the OpenAPI document is ~100 kB per answer) until it does.
		for i := 0; i < 20; i++ {
			if resp, err := s.hc.Get(s.base + "/openapi.json"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("no garbage collection in the server")
	return 0, 0
}

// leasedPorts asks the server how many ports are leased now.
func (s *server) leasedPorts(tb testing.TB) int {
	tb.Helper()
	resp, err := s.hc.Get(s.base + "/api/v1/ports")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body api.PortList
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.Fatalf("GET /api/v1/ports: %v", err)
	}
	return body.Leased
}

// waitLeases waits until at most n ports are leased and returns the count.
func (s *server) waitLeases(tb testing.TB, n int, within time.Duration) int {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.leasedPorts(tb)
		if got <= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeTCPPort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeUDPPorts finds n consecutive free UDP ports in the benchmarks' range.
func freeUDPPorts(tb testing.TB, n int) []int {
	tb.Helper()
	return testnet.FreeUDPPorts(tb, n, testnet.BenchLo, testnet.BenchHi)
}

// resource is a WHIP/WHEP session created by post.
type resource struct {
	url    string
	answer string
}

// post sends an SDP offer to a WHIP/WHEP endpoint and returns the session
// and how long the 201 took, measured from just before the request is
// written to the end of the answer body.
func (s *server) post(ctx context.Context, path, offer string) (*resource, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, strings.NewReader(offer))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	t0 := time.Now()
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	d := time.Since(t0)
	_ = resp.Body.Close()
	if err != nil {
		return nil, d, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, d, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, d, fmt.Errorf("POST %s: 201 without Location", path)
	}
	return &resource{url: s.base + loc, answer: string(body)}, d, nil
}

// del ends a session with DELETE on its resource URL.
func (s *server) del(ctx context.Context, r *resource) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.url, nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE %s: %d", r.url, resp.StatusCode)
	}
	return nil
}
