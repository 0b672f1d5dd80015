package sidekiq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/sidekiq/internal/rdb"
)

// SharedProcess is one Sidekiq process entry in which several Servers of this OS
// process beat as its capsules, as Sidekiq 7+ runs config.capsule(...) in
// one process (launcher.rb to_data): one identity in processes, one info
// with the union of the capsules' queues, their weights and capsules,
// concurrency the sum, one <identity>:work hash and the process's RSS once.
// A Server joins it (Options.Process) when it starts and leaves it when it
// stops, so capsules come and go at runtime and each beat writes the set
// of the moment. The Web UI's Quiet and Stop, sent to the entry, reach
// every capsule; a Server stopped on its own leaves only its capsule.
//
// Each capsule keeps an identity of its own as the owner of its in-flight
// lists (two capsules may fetch one queue): the entry's heartbeat keeps
// those alive too (rdb.Capsule), so other processes leave them alone, and a
// capsule that stops gives back its jobs only.
//
// The entry lasts while a capsule runs: the first to join starts it, the
// last to leave clears it. Once the Web UI stopped it, the next capsule
// starts a new entry.
type SharedProcess struct {
	pool *redis.Pool
	opts SharedProcessOptions
	// tids numbers the processors of every capsule, so that tids are
	// unique in the one work hash.
	tids atomic.Int64

	mu  sync.Mutex
	cur *processEntry // the entry capsules join; nil while none runs
}

// SharedProcessOptions configures a SharedProcess entry; zero values take the defaults
// of the same Options fields.
type SharedProcessOptions struct {
	Tag               string
	Labels            []string // default ["pallarel"]
	Dialect           Dialect  // heartbeat format; default Dialect8
	HeartbeatInterval time.Duration
	ProcessTTL        time.Duration
	Hostname          string
	Logger            *slog.Logger
	Now               func() time.Time
	Version           string
}

// NewSharedProcess builds a process entry that Servers join through
// Options.Process.
func NewSharedProcess(pool *redis.Pool, opts SharedProcessOptions) (*SharedProcess, error) {
	o := Options{Tag: opts.Tag, Labels: opts.Labels, Dialect: opts.Dialect, HeartbeatInterval: opts.HeartbeatInterval,
		ProcessTTL: opts.ProcessTTL, Hostname: opts.Hostname, Logger: opts.Logger, Now: opts.Now, Version: opts.Version}
	if err := o.withDefaults(); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	return &SharedProcess{pool: pool, opts: SharedProcessOptions{Tag: o.Tag, Labels: o.Labels, Dialect: o.Dialect,
		HeartbeatInterval: o.HeartbeatInterval, ProcessTTL: o.ProcessTTL, Hostname: o.Hostname,
		Logger: o.Logger, Now: o.Now, Version: o.Version}}, nil
}

// Identity is the identity of the entry capsules join now ("" while none
// runs).
func (p *SharedProcess) Identity() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return ""
	}
	return p.cur.identity
}

// processEntry is one lifetime of the process entry, from its first
// capsule to its last.
type processEntry struct {
	identity string
	started  time.Time
	// quiet: the Web UI quieted the process; a capsule that joins starts
	// quiet, as every thread of a quiet Sidekiq process is.
	quiet    bool
	capsules []*Server // in join order, the order info lists them
	hb       *heartbeat
	stop     context.CancelFunc
	done     chan struct{}
}

// tidBase reserves n processor numbers for a capsule.
func (p *SharedProcess) tidBase(n int) int64 { return p.tids.Add(int64(n)) - int64(n) }

// join adds s to the current entry (starting one if none runs) and beats
// once, so s's capsule is alive and listed before it fetches.
func (p *SharedProcess) join(ctx context.Context, s *Server) error {
	p.mu.Lock()
	e := p.cur
	if e == nil {
		e = p.newEntry()
		p.cur = e
	}
	e.capsules = append(e.capsules, s)
	quiet := e.quiet
	p.mu.Unlock()
	s.entry.Store(e)
	if quiet {
		s.Quiet()
	}
	if err := e.hb.runOnce(ctx); err != nil {
		// Its leaving's own failure is said too: the entry may still list it.
		return errors.Join(fmt.Errorf("first heartbeat of %s: %w", e.identity, err),
			p.leave(context.WithoutCancel(ctx), s, false))
	}
	return nil
}

// leave removes s from its entry once it has stopped: the last capsule
// clears the entry, the others beat at once without it. released says
// that s gave back its in-flight jobs; if not, its liveness key is left to
// expire, and other processes' recoverers take them after that.
func (p *SharedProcess) leave(ctx context.Context, s *Server, released bool) error {
	e := s.entry.Load()
	if e == nil {
		return nil
	}
	p.mu.Lock()
	e.capsules = slices.DeleteFunc(e.capsules, func(x *Server) bool { return x == s })
	last := len(e.capsules) == 0
	if last && p.cur == e {
		p.cur = nil
	}
	p.mu.Unlock()
	var err error
	if last {
		e.stop()
		<-e.done
		runningHere.remove(e.identity)
		err = e.hb.end(func() error {
			return p.do(ctx, func(c redis.Conn) error { return rdb.ClearProcess(c, e.identity) })
		})
	} else {
		err = e.hb.runOnce(ctx)
	}
	if released {
		if cerr := p.do(ctx, func(c redis.Conn) error { return rdb.ClearCapsule(c, s.identity) }); err == nil {
			err = cerr
		}
	}
	return err
}

// newEntry starts a new entry's heartbeat loop; the caller holds mu.
func (p *SharedProcess) newEntry() *processEntry {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	e := &processEntry{
		identity: fmt.Sprintf("%s:%d:%s", p.opts.Hostname, os.Getpid(), hex.EncodeToString(nonce[:])),
		started:  p.opts.Now(),
		done:     make(chan struct{}),
	}
	log := p.opts.Logger.With("identity", e.identity)
	e.hb = newHeartbeat(heartbeatParams{
		pool:        p.pool,
		log:         log,
		identity:    e.identity,
		interval:    p.opts.HeartbeatInterval,
		ttl:         max(1, int((p.opts.ProcessTTL+time.Second-1)/time.Second)),
		concurrency: func() int { return concurrencyOf(p.capsulesOf(e)) },
		legacyWork:  p.opts.Dialect == Dialect6,
		capsules:    func() []capsuleBeat { return capsuleBeats(p.capsulesOf(e)) },
		now:         p.opts.Now,
		info:        func() ([]byte, error) { return p.info(e) },
		running:     func() (map[string][]byte, int) { return workOf(p.capsulesOf(e)) },
		quiet:       func() bool { return p.quietOf(e) },
		rss: func() int64 {
			if !runningHere.reportsMemory(e.identity) {
				return 0
			}
			return rssKB()
		},
		flushStats: func(ctx context.Context) {
			for _, s := range p.capsulesOf(e) {
				s.flushStats(ctx)
			}
		},
		onQuiet: func() { p.quietAll(e) },
		onStop:  func() { p.stopAll(e) },
		onDump: func() {
			for _, s := range p.capsulesOf(e) {
				s.DumpWork()
			}
		},
		onBeat: func(at time.Time, err error) {
			for _, s := range p.capsulesOf(e) {
				if s.opts.OnBeat != nil {
					s.opts.OnBeat(at, err)
				}
			}
		},
	})
	runningHere.add(e.identity, true)
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	go func() {
		defer close(e.done)
		e.hb.run(ctx)
	}()
	log.Info("process entry started", "pid", os.Getpid())
	return e
}

func (p *SharedProcess) capsulesOf(e *processEntry) []*Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(e.capsules)
}

// quietOf: the entry is quiet once the Web UI quieted it or every capsule
// is quiet (stopping) on its own.
func (p *SharedProcess) quietOf(e *processEntry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.quiet {
		return true
	}
	for _, s := range e.capsules {
		if !s.quiet.Load() {
			return false
		}
	}
	return len(e.capsules) > 0
}

// quietAll is the Web UI's Quiet (TSTP): every capsule stops fetching, and
// those that join later start quiet.
func (p *SharedProcess) quietAll(e *processEntry) {
	p.mu.Lock()
	e.quiet = true
	caps := slices.Clone(e.capsules)
	p.mu.Unlock()
	for _, s := range caps {
		s.Quiet()
	}
}

// stopAll is the Web UI's Stop (TERM): every capsule stops, and capsules
// that start later join a new entry, as a new Sidekiq process would.
func (p *SharedProcess) stopAll(e *processEntry) {
	p.mu.Lock()
	e.quiet = true
	if p.cur == e {
		p.cur = nil
	}
	caps := slices.Clone(e.capsules)
	p.mu.Unlock()
	for _, s := range caps {
		s.Stop()
	}
}

// info is the entry's info JSON, as launcher.rb to_data writes a process of
// several capsules: queues of every capsule in order, de-duplicated, one
// weights hash per capsule, concurrency the sum. A capsule that is
// stopping on its own (quiet while the process is not) is no longer listed
// as serving its queues, so a supervisor looking for consumers of a queue
// does not count it; its running jobs stay in the work hash until it leaves.
func (p *SharedProcess) info(e *processEntry) ([]byte, error) {
	caps := p.capsulesOf(e)
	quiet := p.quietOf(e)
	var queues []string
	var weights []queueWeights
	capsules := map[string]capsuleInfo{}
	for _, s := range caps {
		if !quiet && s.quiet.Load() {
			continue
		}
		for _, q := range s.order.unique {
			if !slices.Contains(queues, q) {
				queues = append(queues, q)
			}
		}
		w := newQueueWeights(s.opts.Queues)
		weights = append(weights, w)
		name := s.opts.Capsule
		for i := 2; ; i++ {
			if _, taken := capsules[name]; !taken {
				break
			}
			name = s.opts.Capsule + "#" + strconv.Itoa(i)
		}
		capsules[name] = capsuleInfo{Concurrency: s.opts.Concurrency, Mode: s.order.mode, Weights: w}
	}
	if queues == nil {
		queues = []string{} // the 6.4 Web UI joins it: never null
	}
	if weights == nil {
		weights = []queueWeights{}
	}
	return encodeJSON(processInfo{
		Hostname:    p.opts.Hostname,
		StartedAt:   json.Number(floatSeconds(e.started)),
		PID:         os.Getpid(),
		Tag:         p.opts.Tag,
		Concurrency: concurrencyOf(caps),
		Queues:      queues,
		Weights:     weights,
		Capsules:    capsules,
		Labels:      p.opts.Labels,
		Identity:    e.identity,
		Version:     p.opts.Version,
	})
}

func (p *SharedProcess) do(ctx context.Context, f func(redis.Conn) error) error {
	c, err := p.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

func concurrencyOf(caps []*Server) int {
	n := 0
	for _, s := range caps {
		n += s.opts.Concurrency
	}
	return n
}

func capsuleBeats(caps []*Server) []capsuleBeat {
	out := make([]capsuleBeat, 0, len(caps))
	for _, s := range caps {
		cb := capsuleBeat{identity: s.identity}
		if s.fetcher.Reliable() {
			cb.inflightQueues = s.order.unique
		}
		out = append(out, cb)
	}
	return out
}

// workOf is the one work hash of every capsule's running jobs.
func workOf(caps []*Server) (map[string][]byte, int) {
	out := map[string][]byte{}
	busy := 0
	for _, s := range caps {
		w, n := s.workSnapshot()
		for tid, b := range w {
			out[tid] = b
		}
		busy += n
	}
	return out, busy
}
