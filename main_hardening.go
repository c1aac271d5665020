package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/handlers"
)

// hardeningFlags are the admin token and the limits (issue 5). Each limit's
// upper bound is the cap pinhole enforces anyway (api's body caps, media's
// offer checks, the API's field validation): a flag can tighten a limit,
// not lift it past what the code below it accepts.
var hardeningFlags = []flagSpec{
	{"admin-token", "", "bearer token required by the management API (create/delete rooms, end sessions, diagnostics probes); empty: open", func(c *Config, v string) error {
		// Never echoed in an error: parseConfig prints the offending value.
		c.AdminToken = strings.TrimSpace(v)
		return nil
	}},
	{"admin-token-file", "", "file holding the admin token (first line), instead of --admin-token", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if c.AdminToken != "" {
			return errors.New("set --admin-token or --admin-token-file, not both")
		}
		f, err := os.Open(v)
		if err != nil {
			return fmt.Errorf("cannot read the token file: %v", errors.Unwrap(err))
		}
		defer f.Close()
		// A token is a line; 4 KiB is plenty and stops a mistaken path
		// (a log, /dev/zero) from being read whole.
		b, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return fmt.Errorf("cannot read the token file: %v", errors.Unwrap(err))
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if c.AdminToken = strings.TrimSpace(line); c.AdminToken == "" {
			return errors.New("the token file's first line is empty")
		}
		return nil
	}},
	intFlag("max-sdp-bytes", api.MaxSDPBody, 1024, api.MaxSDPBody, "largest SDP offer or trickle-ICE fragment, bytes",
		func(c *Config, n int) { c.Limits.MaxSDPBytes = int64(n) }),
	intFlag("max-json-bytes", api.MaxJSONBody, 1024, api.MaxJSONBody, "largest JSON body, bytes",
		func(c *Config, n int) { c.Limits.MaxJSONBytes = int64(n) }),
	intFlag("max-m-lines", 16, 1, 16, "most m= sections in an offer", func(c *Config, n int) { c.Limits.MaxMLines = n }),
	intFlag("max-candidates", 64, 1, 64, "most a=candidate lines in an offer or a trickle-ICE fragment",
		func(c *Config, n int) { c.Limits.MaxCandidates = n }),
	intFlag("max-id-len", 64, 8, 64, "longest room name or publisher id", func(c *Config, n int) { c.Limits.MaxIDLen = n }),
	intFlag("max-user-id-len", 128, 1, 128, "longest user_id", func(c *Config, n int) { c.Limits.MaxUserIDLen = n }),
	intFlag("max-metadata-entries", 32, 1, 32, "most metadata entries of a room or session",
		func(c *Config, n int) { c.Limits.MaxMetadataEntries = n }),
	intFlag("max-metadata-len", 1024, 1, 1024, "longest metadata value, bytes", func(c *Config, n int) { c.Limits.MaxMetadataLen = n }),
	intFlag("max-rooms", 100, 1, 1_000_000, "most rooms, counting those WHIP/WHEP create on the fly", func(c *Config, n int) { c.Limits.MaxRooms = n }),
	intFlag("max-sessions-per-room", 100, 1, 1_000_000, "most live sessions in one room", func(c *Config, n int) { c.Limits.MaxSessionsPerRoom = n }),
	{"session-rate", "5", "sessions one client address may create per second (429 with Retry-After beyond)", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		// Written so NaN fails too.
		if err != nil || !(f >= 0.01 && f <= 10000) {
			return errors.New("must be a number from 0.01 to 10000")
		}
		c.Limits.SessionRate = f
		return nil
	}},
	intFlag("session-burst", 10, 1, 10000, "sessions one client address may create at once before --session-rate applies",
		func(c *Config, n int) { c.Limits.SessionBurst = n }),
}

// intFlag is a flag holding an integer from lo to hi.
func intFlag(name string, def, lo, hi int, usage string, set func(*Config, int)) flagSpec {
	return flagSpec{name, strconv.Itoa(def), usage, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
		}
		set(c, n)
		return nil
	}}
}

// announceAuth says in one line at start whether the management API is
// open, so that running without a token is a choice, not an accident.
func announceAuth(log *slog.Logger, cfg Config) {
	if cfg.AdminToken == "" {
		log.Warn("pinhole is open: no --admin-token, anyone who reaches the HTTP port can create and delete rooms, end sessions and run probes")
		return
	}
	if len(cfg.AdminToken) < 16 {
		log.Warn("the admin token is shorter than 16 characters: easy to guess")
	}
	log.Info("management API requires the admin token")
}

// handlersAuth is the part of handlers.Config this file fills.
func handlersAuth(cfg Config, hc handlers.Config) handlers.Config {
	hc.AdminToken = cfg.AdminToken
	hc.Limits = cfg.Limits
	return hc
}
