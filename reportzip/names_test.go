package reportzip

import (
	"math/rand/v2"
	"testing"
)

// TestNameSetMatchesMap checks the set against a map through many merges,
// with hashes that repeat.
func TestNameSetMatchesMap(t *testing.T) {
	t.Parallel()
	var s nameSet
	want := map[uint64]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 400_000 {
		h := r.Uint64N(1 << 21) // small range: many hashes come again
		if got := s.has(h); got != want[h] {
			t.Fatalf("step %d: has(%d) = %v, want %v", i, h, got, want[h])
		}
		if !want[h] {
			s.add(h)
			want[h] = true
		}
	}
	for h := range want {
		if !s.has(h) {
			t.Fatalf("lost %d", h)
		}
	}
	for i := 1; i < len(s.sorted); i++ {
		if s.sorted[i-1] >= s.sorted[i] {
			t.Fatalf("sorted[%d..%d] = %d, %d", i-1, i, s.sorted[i-1], s.sorted[i])
		}
	}
}
