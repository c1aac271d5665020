package media

import "testing"

// The window drops repeats within its reach, passes late packets once,
// forgets what is older than its size and starts over on a new SSRC.
func TestSeqWindow(t *testing.T) {
	var w seqWindow
	steps := []struct {
		ssrc uint32
		seq  uint16
		dup  bool
	}{
		{1, 65530, false}, {1, 65530, true}, // repeat
		{1, 65532, false}, {1, 65531, false}, // late, first time
		{1, 65531, true}, {1, 65532, true},
		{1, 2, false}, {1, 65535, false}, {1, 65535, true}, // across the wrap
		{1, 65530, true}, // still within reach
		{1, 70, false},   // 68 ahead: the word boundary
		{1, 2, true}, {1, 65535, true}, {1, 65531, true},
		{1, 200, false}, // 130 ahead: all forgotten
		{1, 70, false},  // 130 back: too old to know, passes
		{1, 199, false}, {1, 199, true},
		{2, 199, false}, // another stream
		{2, 199, true},
	}
	for i, s := range steps {
		if got := w.duplicate(s.ssrc, s.seq); got != s.dup {
			t.Fatalf("step %d (ssrc %d seq %d): duplicate %v, want %v", i, s.ssrc, s.seq, got, s.dup)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { w.duplicate(2, 300) }); allocs != 0 {
		t.Fatalf("duplicate allocates %v", allocs)
	}
}
