package server

import (
	"sync"
	"time"
)

// Rates are measured over a recent window of samples of each run's ended
// rows, not since the run began: a run that slowed down or stopped shows
// it at once instead of an average that keeps promising the old speed.
const (
	rateWindow    = 30 * time.Second // the rate is over at most this much history
	rateMinSpan   = 2 * time.Second  // and at least this much
	rateSampleGap = 500 * time.Millisecond
	rateForget    = 2 * time.Minute // a run nobody watched this long is dropped
)

type rateSample struct {
	at    time.Time
	ended int
}

// rateMeter keeps a few samples per watched run, in memory: each status
// request (the page's events stream sends one a second) adds one. A
// replica behind a load balancer measures from the requests it serves.
type rateMeter struct {
	mu    sync.Mutex
	runs  map[string][]rateSample
	swept time.Time
}

// observe records that token had ended rows at now and returns the rows
// per second over the recent window, ok false while the window is too
// short to tell.
func (m *rateMeter) observe(token string, now time.Time, ended int) (rate float64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[string][]rateSample{}
	}
	ss := m.runs[token]
	if n := len(ss); n > 0 && ended < ss[n-1].ended {
		ss = nil // counts went back (a retry reopened the run): start again
	}
	if n := len(ss); n == 0 || now.Sub(ss[n-1].at) >= rateSampleGap {
		ss = append(ss, rateSample{now, ended})
	}
	cut := 0
	for cut < len(ss)-1 && now.Sub(ss[cut].at) > rateWindow {
		cut++
	}
	ss = ss[cut:]
	m.runs[token] = ss
	if now.Sub(m.swept) > rateForget {
		m.swept = now
		for t, s := range m.runs {
			if now.Sub(s[len(s)-1].at) > rateForget {
				delete(m.runs, t)
			}
		}
	}
	first := ss[0]
	span := now.Sub(first.at)
	if span < rateMinSpan {
		return 0, false
	}
	return float64(ended-first.ended) / span.Seconds(), true
}

// forget drops a run that has ended.
func (m *rateMeter) forget(token string) {
	m.mu.Lock()
	delete(m.runs, token)
	m.mu.Unlock()
}
