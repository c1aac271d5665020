package media

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// slogLoggerFactory routes Pion's logs into pinhole's slog logger, with the
// Pion scope attached. Pion's info and debug chatter goes to debug.
type slogLoggerFactory struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f *slogLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &slogLeveled{log: f.log.With("scope", scope)}
}

type slogLeveled struct{ log *slog.Logger }

func (l *slogLeveled) at(level slog.Level, msg string) {
	// Binding the mux to 0.0.0.0 is deliberate (one socket serves every
	// interface address); Pion warns about it on every lease.
	if strings.Contains(msg, "should not listening on unspecified address") {
		return
	}
	l.log.Log(context.Background(), level, msg)
}

func (l *slogLeveled) Trace(msg string) { l.at(slog.LevelDebug-4, msg) }
func (l *slogLeveled) Tracef(format string, args ...any) {
	l.at(slog.LevelDebug-4, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Debug(msg string) { l.at(slog.LevelDebug, msg) }
func (l *slogLeveled) Debugf(format string, args ...any) {
	l.at(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Info(msg string) { l.at(slog.LevelDebug, msg) }
func (l *slogLeveled) Infof(format string, args ...any) {
	l.at(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Warn(msg string) { l.at(slog.LevelWarn, msg) }
func (l *slogLeveled) Warnf(format string, args ...any) {
	l.at(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (l *slogLeveled) Error(msg string) { l.at(slog.LevelError, msg) }
func (l *slogLeveled) Errorf(format string, args ...any) {
	l.at(slog.LevelError, fmt.Sprintf(format, args...))
}
