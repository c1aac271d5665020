// Package bench holds pinhole's end-to-end benchmarks (see BENCHMARKS.md at
// the repository root). It has no code of its own outside tests: the
// benchmarks build the pinhole binary once, run it as a child process bound
// to loopback, and drive it over HTTP (WHIP, WHEP, REST) with real Pion
// clients from the same test binary. The server runs in its own process so
// its CPU time and memory can be read from /proc/<pid> apart from the
// clients' (which, in one process, would be indistinguishable).
//
// Run them with `make bench`; `go test ./bench` (no -bench) runs nothing.
package bench
