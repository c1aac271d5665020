package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminTokenFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  file-token-0123456789  \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(env map[string]string) func(string) string { return func(k string) string { return env[k] } }

	c, err := parseConfig([]string{"--admin-token-file", file}, getenv(nil), nil)
	if err != nil || c.AdminToken != "file-token-0123456789" {
		t.Fatalf("token file: %q, %v", c.AdminToken, err)
	}
	c, err = parseConfig(nil, getenv(map[string]string{"PINHOLE_ADMIN_TOKEN": "env-token-0123456789"}), nil)
	if err != nil || c.AdminToken != "env-token-0123456789" {
		t.Fatalf("token from env: %q, %v", c.AdminToken, err)
	}
	_, err = parseConfig([]string{"--admin-token", "flag-token-0123456789", "--admin-token-file", file}, getenv(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("both: %v", err)
	}
	if strings.Contains(err.Error(), "flag-token") {
		t.Fatalf("the error shows the token: %v", err)
	}
	_, err = parseConfig([]string{"--admin-token-file", filepath.Join(dir, "missing")}, getenv(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "--admin-token-file") {
		t.Fatalf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err = parseConfig([]string{"--admin-token-file", empty}, getenv(nil), nil); err == nil {
		t.Fatal("empty token file accepted")
	}
}

func TestLimitFlags(t *testing.T) {
	none := func(string) string { return "" }
	c, err := parseConfig(nil, none, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxSDPBytes != 65536 || c.Limits.MaxCandidates != 64 || c.Limits.MaxRooms != 100 || c.Limits.SessionRate != 5 || c.Limits.SessionBurst != 10 {
		t.Fatalf("defaults: %+v", c.Limits)
	}
	c, err = parseConfig([]string{"--max-candidates", "8", "--session-rate", "0.5", "--max-rooms", "3"}, none, nil)
	if err != nil || c.Limits.MaxCandidates != 8 || c.Limits.SessionRate != 0.5 || c.Limits.MaxRooms != 3 {
		t.Fatalf("set: %+v %v", c.Limits, err)
	}
	for _, bad := range [][]string{
		{"--max-sdp-bytes", "1000000"}, // above the cap the API enforces anyway
		{"--max-m-lines", "0"},
		{"--max-candidates", "x"},
		{"--session-rate", "-1"},
		{"--session-rate", "NaN"},
		{"--session-burst", "0"},
	} {
		if _, err := parseConfig(bad, none, nil); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming the flag", bad, err)
		}
	}
}

// Without a token pinhole says, in one line at start, that it is open.
func TestAnnounceAuth(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	announceAuth(log, Config{})
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), "pinhole is open") {
		t.Fatalf("open announcement: %q", buf.String())
	}
	buf.Reset()
	announceAuth(log, Config{AdminToken: "a-long-enough-admin-token"})
	if strings.Contains(buf.String(), "open") || strings.Contains(buf.String(), "a-long-enough-admin-token") {
		t.Fatalf("announcement with a token: %q", buf.String())
	}
}
