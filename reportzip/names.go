package reportzip

import (
	"slices"
)

// nameSet holds the 8-byte hash of every name used, in about 8 bytes an
// entry: a sorted slice searched by halves, and the hashes added since its
// last merge in a small map. A Go map of them took some 21 bytes an entry
// (72 MB of a 3.4-million-row finalizer's heap, issue 19 item 7).
type nameSet struct {
	sorted  []uint64
	pending map[uint64]struct{}
}

// pendingMin is the least the map holds before it is merged: merges stay
// few (each moves the sorted slice) and the map small.
const pendingMin = 1 << 16

// reserve makes room for n hashes at once: grown by copying instead, the
// slice's old and new arrays are both live at each growth (62 MB at the
// end of 3.4 M names, where the hashes take 27).
func (s *nameSet) reserve(n int) {
	if n > cap(s.sorted) {
		s.sorted = slices.Grow(s.sorted, n-len(s.sorted))
	}
}

func (s *nameSet) has(h uint64) bool {
	if _, ok := s.pending[h]; ok {
		return true
	}
	_, ok := slices.BinarySearch(s.sorted, h)
	return ok
}

func (s *nameSet) add(h uint64) {
	if s.pending == nil {
		s.pending = make(map[uint64]struct{})
	}
	s.pending[h] = struct{}{}
	if len(s.pending) >= max(pendingMin, len(s.sorted)/32) {
		s.merge()
	}
}

// merge moves the map's hashes into the sorted slice, merging from the
// back in place once the slice has room.
func (s *nameSet) merge() {
	add := make([]uint64, 0, len(s.pending))
	for h := range s.pending {
		add = append(add, h)
	}
	slices.Sort(add)
	n := len(s.sorted)
	s.sorted = slices.Grow(s.sorted, len(add))[:n+len(add)]
	i, j := n-1, len(add)-1
	for k := len(s.sorted) - 1; j >= 0; k-- {
		if i >= 0 && s.sorted[i] > add[j] {
			s.sorted[k] = s.sorted[i]
			i--
		} else {
			s.sorted[k] = add[j]
			j--
		}
	}
	clear(s.pending)
}
