package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// streamHub bounds the status streams and shares their database reads:
// every stream of one token is fed by one poll, so 3,000 open tabs on a
// run cost one query per EventInterval, not 3,000. Streams are capped in
// total and per client address (429 beyond).
type streamHub struct {
	s         *Server
	mu        sync.Mutex
	total     int
	perClient map[string]int
	polls     map[string]*runPoll
}

func newStreamHub(s *Server) *streamHub {
	return &streamHub{s: s, perClient: map[string]int{}, polls: map[string]*runPoll{}}
}

// streamSlot holds one stream slot for the request's lifetime.
func (s *Server) streamSlot() gin.HandlerFunc {
	return func(c *gin.Context) {
		client := c.ClientIP()
		if !s.streams.acquire(client) {
			s.log.Warn("event stream refused: too many open", "client", client)
			c.Header("Retry-After", strconv.Itoa(5))
			s.fail(c, userErr(http.StatusTooManyRequests, "err_too_many_streams", ""))
			return
		}
		defer s.streams.release(client)
		c.Next()
	}
}

func (h *streamHub) acquire(client string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total >= h.s.d.MaxEventStreams || h.perClient[client] >= h.s.d.StreamsPerClient {
		return false
	}
	h.total++
	h.perClient[client]++
	return true
}

func (h *streamHub) release(client string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total--
	if h.perClient[client]--; h.perClient[client] <= 0 {
		delete(h.perClient, client)
	}
}

// open reports the streams open now (tests, metrics).
func (h *streamHub) open() (streams, polls int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total, len(h.polls)
}

// runUpdate is one poll result: the run, or why it could not be read.
type runUpdate struct {
	v   runView
	err error
}

// runPoll reads one token's run every EventInterval for all its watchers.
type runPoll struct {
	subs   map[chan runUpdate]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// watch subscribes to token's shared poll, starting it for the first
// watcher. The channel holds the latest update only (a slow client skips
// stale ones) and is closed once the run has finished or could not be
// read. stop unsubscribes; the last one out stops the poll and waits for it.
func (h *streamHub) watch(token string) (<-chan runUpdate, func()) {
	ch := make(chan runUpdate, 1)
	h.mu.Lock()
	p := h.polls[token]
	if p == nil {
		ctx, cancel := context.WithCancel(context.Background())
		p = &runPoll{subs: map[chan runUpdate]struct{}{}, cancel: cancel, done: make(chan struct{})}
		h.polls[token] = p
		go h.run(ctx, token, p)
	}
	p.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(p.subs, ch)
		last := len(p.subs) == 0 && h.polls[token] == p
		if last {
			delete(h.polls, token)
		}
		h.mu.Unlock()
		if last {
			p.cancel()
			<-p.done
		}
	}
}

func (h *streamHub) run(ctx context.Context, token string, p *runPoll) {
	defer close(p.done)
	tick := time.NewTicker(h.s.d.EventInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v, err := h.s.loadRun(ctx, token)
		if ctx.Err() != nil {
			return
		}
		u := runUpdate{v: v, err: err}
		end := err != nil || v.Finished()
		h.mu.Lock()
		for ch := range p.subs {
			select { // keep only the newest update
			case <-ch:
			default:
			}
			ch <- u
			if end {
				close(ch)
			}
		}
		if end {
			p.subs = map[chan runUpdate]struct{}{}
			if h.polls[token] == p {
				delete(h.polls, token)
			}
		}
		h.mu.Unlock()
		if end {
			return
		}
	}
}
