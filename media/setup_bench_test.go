package media_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-rtc/pinhole/media"
)

// offerFixture reads one of the real client offers kept beside the handler
// tests (handlers/testdata/offers, see its README.md), with the CRLF line
// ends clients send (RFC 8866 §5).
func offerFixture(tb testing.TB, name string) string {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "handlers", "testdata", "offers", name))
	if err != nil {
		tb.Fatal(err)
	}
	return strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n")
}

// BenchmarkSessionSetup is issue 11: the time from an offer to a complete
// answer (lease, peer connection, SetRemoteDescription, CreateAnswer,
// gathering), one session at a time so the figure is per session and not a
// measure of how the shared cores are scheduled. Chrome's offers carry ~40
// payload types, the case that made SetRemoteDescription quadratic.
//
//	go test -run '^$' -bench BenchmarkSessionSetup -benchmem -cpuprofile cpu.out ./media/
func BenchmarkSessionSetup(b *testing.B) {
	for _, c := range []struct{ name, file string }{
		{"chrome-watch", "chrome-watch.sdp"},
		{"chrome-publish", "chrome-publish.sdp"},
		{"firefox-publish", "firefox-publish.sdp"},
	} {
		b.Run(c.name, func(b *testing.B) {
			offer := offerFixture(b, c.file)
			f := newEngine(b, 2, func(cfg *media.Config) {
				cfg.SetupTimeout = time.Minute
				cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			})
			open := f.e.Publish
			if strings.Contains(c.name, "watch") {
				open = f.e.Watch
			}
			b.ReportAllocs()
			b.ResetTimer()
			var answering time.Duration
			for i := 0; i < b.N; i++ {
				id := newID()
				start := time.Now()
				if _, err := open(ctxT(b), media.SessionRequest{ID: id, Room: "bench", Offer: offer}); err != nil {
					b.Fatal(err)
				}
				answering += time.Since(start)
				b.StopTimer()
				if err := f.e.CloseSession(id, "bench"); err != nil {
					b.Fatal(err)
				}
				f.rec.waitFor(b, "closed", closedEvent(id))
				b.StartTimer()
			}
			b.ReportMetric(float64(answering.Microseconds())/float64(b.N), "µs/answer")
		})
	}
}
