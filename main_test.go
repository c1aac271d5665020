package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/internal/testnet"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     func(string) string
		wantErr string // substring; "" = no error
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.HTTPAddr != ":8080" || len(c.UDPPorts) != 5 || c.UDPPorts[0] != 10111 || c.UDPPorts[4] != 10115 ||
				c.PeersPerPort != 1 || !c.AutoCreateRooms || c.SetupTimeout != 30*time.Second ||
				c.LogFormat != "text" || c.LogLevel != slog.LevelInfo || len(c.CORSOrigins) != 1 || c.CORSOrigins[0] != "*" ||
				len(c.PublicIPs) != 0 || len(c.PublicPorts) != 0 {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "frp example", args: []string{"--public-ip", "51.161.209.200", "--udp-ports", "10111-10115", "--public-ports", "20111-20115"}, check: func(t *testing.T, c Config) {
			if c.PublicIPs[0] != "51.161.209.200" || c.PublicPorts[0] != 20111 || c.PublicPorts[4] != 20115 {
				t.Errorf("%+v", c)
			}
		}},
		{name: "env twin", env: env("PINHOLE_HTTP_ADDR", "127.0.0.1:9000", "PINHOLE_AUTO_CREATE_ROOMS", "false", "PINHOLE_LOG_LEVEL", "debug"), check: func(t *testing.T, c Config) {
			if c.HTTPAddr != "127.0.0.1:9000" || c.AutoCreateRooms || c.LogLevel != slog.LevelDebug {
				t.Errorf("%+v", c)
			}
		}},
		{name: "flag beats env", args: []string{"--http-addr=:7000"}, env: env("PINHOLE_HTTP_ADDR", ":9000"), check: func(t *testing.T, c Config) {
			if c.HTTPAddr != ":7000" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "port list", args: []string{"--udp-ports", "10111, 10113-10114"}, check: func(t *testing.T, c Config) {
			if len(c.UDPPorts) != 3 || c.UDPPorts[1] != 10113 {
				t.Errorf("%v", c.UDPPorts)
			}
		}},
		{name: "several public ips", args: []string{"--public-ip", "198.51.100.7,203.0.113.9"}, check: func(t *testing.T, c Config) {
			if len(c.PublicIPs) != 2 {
				t.Errorf("%v", c.PublicIPs)
			}
		}},
		{name: "ice servers", args: []string{"--ice-servers", "stun:stun.example.org,turn:u:p@turn.example.org:3478"}, check: func(t *testing.T, c Config) {
			if len(c.ICEServers) != 2 || c.ICEServers[1].Username != "u" || c.ICEServers[1].URL != "turn:turn.example.org:3478" {
				t.Errorf("%+v", c.ICEServers)
			}
		}},
		{name: "reversed range", args: []string{"--udp-ports", "10115-10111"}, wantErr: "--udp-ports"},
		{name: "port out of range", args: []string{"--udp-ports", "70000"}, wantErr: "--udp-ports"},
		{name: "not a port", args: []string{"--udp-ports", "abc"}, wantErr: "--udp-ports"},
		{name: "duplicate port", args: []string{"--udp-ports", "10111,10111"}, wantErr: "twice"},
		{name: "length mismatch", args: []string{"--public-ports", "20111-20112"}, wantErr: "--public-ports has 2 ports but --udp-ports has 5"},
		{name: "bad public ip", args: []string{"--public-ip", "example.org"}, wantErr: "--public-ip"},
		{name: "ipv6 public ip", args: []string{"--public-ip", "2001:db8::1"}, wantErr: "IPv4"},
		{name: "bad env names the variable", env: env("PINHOLE_PEERS_PER_PORT", "zero"), wantErr: "PINHOLE_PEERS_PER_PORT"},
		{name: "peers per port zero", args: []string{"--peers-per-port", "0"}, wantErr: "--peers-per-port"},
		{name: "bad duration", args: []string{"--setup-timeout", "soon"}, wantErr: "--setup-timeout"},
		{name: "tiny duration", args: []string{"--idle-timeout", "1ms"}, wantErr: "--idle-timeout"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "bad bool", args: []string{"--auto-create-rooms", "maybe"}, wantErr: "--auto-create-rooms"},
		{name: "bad http addr", args: []string{"--http-addr", "8080"}, wantErr: "--http-addr"},
		{name: "bad cors origin", args: []string{"--cors-origins", "example.org"}, wantErr: "--cors-origins"},
		{name: "bad ice server", args: []string{"--ice-servers", "http://x"}, wantErr: "--ice-servers"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "nope"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "serve"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := tc.env
			if getenv == nil {
				getenv = env()
			}
			c, err := parseConfig(tc.args, getenv, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	_, err := parseConfig([]string{"--help"}, env(), &out)
	if !errors.Is(err, errHelp) {
		t.Fatalf("err %v", err)
	}
	for _, f := range flagSpecs {
		if !strings.Contains(out.String(), "--"+f.name) || !strings.Contains(out.String(), envName(f.name)) {
			t.Errorf("--help lacks %s / %s", f.name, envName(f.name))
		}
	}
}

func testConfig(t *testing.T) Config {
	t.Helper()
	ports := freeUDPPorts(t, 3)
	cfg, err := parseConfig([]string{
		"--http-addr", "127.0.0.1:0",
		"--udp-ports", strconv.Itoa(ports[0]) + "-" + strconv.Itoa(ports[2]),
		"--public-ip", "127.0.0.1", "--bind-ip", "127.0.0.1",
	}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRunServesAndShutsDown starts the real wiring, checks /healthz and
// /docs, then cancels (as SIGTERM does) and expects run to return.
func TestRunServesAndShutsDown(t *testing.T) {
	cfg := testConfig(t)
	addr, stop := startRun(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, path := range []string{"/healthz", "/readyz", "/docs", "/openapi.json"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/docs", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("HEAD /docs: %v %v", resp, err)
	}
	// A session holds a port while we shut down; shutdown must free it.
	offer, err := os.ReadFile("handlers/testdata/offers/obs-whip.sdp")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/whip/studio", "application/sdp", bytes.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("WHIP: %d", resp.StatusCode)
	}
	stop()
	for _, p := range cfg.UDPPorts {
		c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d still bound after shutdown: %v", p, err)
			continue
		}
		c.Close()
	}
}

// TestRunPortInUse: a port of the range already bound fails at start with
// an error naming --udp-ports.
func TestRunPortInUse(t *testing.T) {
	cfg := testConfig(t)
	busy, err := net.ListenPacket("udp4", ":"+strconv.Itoa(cfg.UDPPorts[1]))
	if err != nil {
		t.Skipf("cannot occupy a port: %v", err)
	}
	defer busy.Close()
	err = run(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || !strings.Contains(err.Error(), "--udp-ports") || !strings.Contains(err.Error(), strconv.Itoa(cfg.UDPPorts[1])) {
		t.Fatalf("err %v, want one naming --udp-ports and port %d", err, cfg.UDPPorts[1])
	}
}

// TestReadmeFlagTable keeps the README's flag table in step with the flags.
func TestReadmeFlagTable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flagSpecs {
		row := "| `--" + f.name + "` | `" + envName(f.name) + "` |"
		i := strings.Index(string(b), row)
		if i < 0 {
			t.Errorf("README lacks the row of --%s", f.name)
			continue
		}
		line, _, _ := strings.Cut(string(b[i:]), "\n")
		if f.def != "" && !strings.Contains(line, "`"+f.def+"`") {
			t.Errorf("README row of --%s does not show the default %q: %s", f.name, f.def, line)
		}
	}
}

// freeUDPPorts returns n consecutive free UDP ports in main's test range.
func freeUDPPorts(t *testing.T, n int) []int {
	t.Helper()
	return testnet.FreeUDPPorts(t, n, testnet.MainLo, testnet.MainHi)
}

// startRun runs pinhole with cfg and returns its address once it listens,
// and stop, which ends the run and checks it returned cleanly (also done
// when the test ends, if not before).
func startRun(t *testing.T, cfg Config, log *slog.Logger) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, cfg, log, func(a string) { addrc <- a }) }()
	var once sync.Once
	stop = func() { once.Do(func() { stopRun(t, cancel, errc) }) }
	t.Cleanup(stop)
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not start")
	}
	return addr, stop
}

// stopRun cancels a run started by a test and waits for it to return
// without error.
func stopRun(t *testing.T, cancel context.CancelFunc, errc <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
