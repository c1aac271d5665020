package media

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pion/logging"
)

// Sampling of Pion's warnings and errors. Pion logs some per packet (a
// stray STUN message on a leased port: "No Username attribute in STUN
// message from ..."), so anyone able to send UDP to the port could fill the
// log. Each (scope, message) gets logBurst lines, then at most one per
// logEvery carrying how many were suppressed: a real problem still shows
// within seconds, a flood costs a handful of lines.
const (
	logBurst = 5
	logEvery = 10 * time.Second
	// logMaxKeys bounds the sampler's memory; beyond it all further
	// messages of a level share one bucket.
	logMaxKeys = 1024
)

// slogLoggerFactory routes Pion's logs into pinhole's slog logger, with the
// Pion scope attached. Pion's info and debug chatter goes to debug; its
// warnings and errors are sampled. The zero value (plus log) is ready.
type slogLoggerFactory struct {
	log *slog.Logger

	mu      sync.Mutex
	buckets map[sampleKey]*sampleBucket
	now     func() time.Time // nil: time.Now
}

type sampleKey struct {
	scope, msg string
	level      slog.Level
}

type sampleBucket struct {
	n          int // lines passed in the burst
	last       time.Time
	suppressed int
}

// NewLogger implements logging.LoggerFactory.
func (f *slogLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &slogLeveled{log: f.log.With("scope", scope), scope: scope, f: f}
}

// admit says whether a line keyed by (scope, msg, level) is logged, and how
// many were suppressed before it.
func (f *slogLoggerFactory) admit(k sampleKey) (bool, int) {
	now := time.Now
	if f.now != nil {
		now = f.now
	}
	t := now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets == nil {
		f.buckets = map[sampleKey]*sampleBucket{}
	}
	b := f.buckets[k]
	if b == nil {
		if len(f.buckets) >= logMaxKeys {
			k = sampleKey{scope: "*", msg: "*", level: k.level}
			b = f.buckets[k]
		}
		if b == nil {
			b = &sampleBucket{}
			f.buckets[k] = b
		}
	}
	if b.n < logBurst {
		b.n++
		b.last = t
		return true, 0
	}
	if t.Sub(b.last) < logEvery {
		b.suppressed++
		return false, 0
	}
	n := b.suppressed
	b.suppressed, b.last = 0, t
	return true, n
}

type slogLeveled struct {
	log   *slog.Logger
	scope string
	f     *slogLoggerFactory
}

// at logs msg; key is what sampling groups it by (the format string, so
// lines differing only in an address count as one message).
func (l *slogLeveled) at(level slog.Level, key, msg string) {
	// Binding the mux to 0.0.0.0 is deliberate (one socket serves every
	// interface address); Pion warns about it on every lease.
	if strings.Contains(msg, "should not listening on unspecified address") {
		return
	}
	ctx := context.Background()
	if level < slog.LevelWarn {
		l.log.Log(ctx, level, msg)
		return
	}
	if !l.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := l.f.admit(sampleKey{scope: l.scope, msg: key, level: level})
	if !ok {
		return
	}
	if suppressed > 0 {
		l.log.Log(ctx, level, msg, "suppressed", suppressed)
		return
	}
	l.log.Log(ctx, level, msg)
}

func (l *slogLeveled) Trace(msg string) { l.at(slog.LevelDebug-4, msg, msg) }
func (l *slogLeveled) Tracef(format string, args ...any) {
	l.at(slog.LevelDebug-4, format, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Debug(msg string) { l.at(slog.LevelDebug, msg, msg) }
func (l *slogLeveled) Debugf(format string, args ...any) {
	l.at(slog.LevelDebug, format, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Info(msg string) { l.at(slog.LevelDebug, msg, msg) }
func (l *slogLeveled) Infof(format string, args ...any) {
	l.at(slog.LevelDebug, format, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Warn(msg string) { l.at(slog.LevelWarn, msg, msg) }
func (l *slogLeveled) Warnf(format string, args ...any) {
	l.at(slog.LevelWarn, format, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Error(msg string) { l.at(slog.LevelError, msg, msg) }
func (l *slogLeveled) Errorf(format string, args ...any) {
	l.at(slog.LevelError, format, fmt.Sprintf(format, args...))
}
