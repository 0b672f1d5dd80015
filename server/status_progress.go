package server

import (
	"math"
	"sync"
	"time"

	"github.com/pallarel/pallarel/models"
)

// splitEstimate is the run's row count estimated from the split's
// progress: the rows it has read, scaled by the bytes of the upload still
// to read (the feeder records the bytes its parsed rows came from, so the
// mean row length is right from the first batch). ok is false before the
// split recorded any progress.
func splitEstimate(st *models.CsvProcessingStatus) (int, bool) {
	if st.SplitRows <= 0 || st.SplitBytesRead <= 0 || st.SplitBytesTotal <= 0 {
		return 0, false
	}
	read := min(st.SplitBytesRead, st.SplitBytesTotal)
	est := int(math.Round(float64(st.SplitRows) * float64(st.SplitBytesTotal) / float64(read)))
	return max(est, st.SplitRows), true
}

// shownMemo keeps the highest percentage shown of each run, so the JSON,
// the events stream, the page's bar and the CLI (which all read makeView)
// never go backwards, even when the real total replaces a low estimate or
// a cancel ends a run below what its estimate showed. A replica behind a
// load balancer keeps its own. A completed run (100 %) is forgotten at
// once, so a retry that reopens it starts from its real figures; others
// once nobody asked for shownForget.
type shownMemo struct {
	mu    sync.Mutex
	m     map[string]shownEntry
	swept time.Time
}

type shownEntry struct {
	p  float64
	at time.Time
}

const shownForget = 10 * time.Minute

// atLeast returns max(p, the highest p shown for token) and remembers it.
func (s *shownMemo) atLeast(token string, p float64, completed bool, now time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]shownEntry{}
	}
	if completed {
		delete(s.m, token)
		return p
	}
	p = max(p, s.m[token].p)
	s.m[token] = shownEntry{p, now}
	if now.Sub(s.swept) > shownForget {
		s.swept = now
		for t, e := range s.m {
			if now.Sub(e.at) > shownForget {
				delete(s.m, t)
			}
		}
	}
	return p
}
