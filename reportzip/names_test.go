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

// TestNameSetReserve checks a reserved set never moves its slice while
// the names said come, and still takes more.
func TestNameSetReserve(t *testing.T) {
	t.Parallel()
	const n = 200_000
	var s nameSet
	s.reserve(n)
	first := &s.sorted[:1][0]
	for i := range uint64(n) {
		s.add(i * 0x9E3779B97F4A7C15)
	}
	s.merge()
	if &s.sorted[0] != first || len(s.sorted) != n {
		t.Fatalf("the slice moved or lost names: len %d", len(s.sorted))
	}
	s.add(7)
	if three := uint64(3); !s.has(7) || !s.has(three*0x9E3779B97F4A7C15) {
		t.Error("a name is missing")
	}
}
