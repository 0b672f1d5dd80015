package sidekiq

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// QueueWeight is one queue with its weight (0 = strict order).
type QueueWeight struct {
	Name   string
	Weight int
}

// ParseQueueFlag reads one -q value: "name" or "name,weight".
func ParseQueueFlag(s string) (QueueWeight, error) {
	name, w, hasW := strings.Cut(s, ",")
	name = strings.TrimSpace(name)
	if err := ValidQueueName(name); err != nil {
		return QueueWeight{}, fmt.Errorf("-q %q: %w", s, err)
	}
	if !hasW {
		return QueueWeight{Name: name}, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(w))
	if err != nil || n < 0 {
		return QueueWeight{}, fmt.Errorf("-q %q: weight must be a whole number >= 0", s)
	}
	return QueueWeight{Name: name, Weight: n}, nil
}

// QueueMode is how a server orders its queues before each fetch, as
// Sidekiq 7.0.3+ decides per capsule.
type QueueMode string

// The queue modes.
const (
	Strict   QueueMode = "strict"   // all weights 0: always in the configured order
	Random   QueueMode = "random"   // all weights 1: shuffled each fetch
	Weighted QueueMode = "weighted" // otherwise: shuffled in proportion to weight
)

// ModeOf decides the queue mode from the weights.
func ModeOf(qs []QueueWeight) QueueMode {
	all0, all1 := true, true
	for _, q := range qs {
		all0 = all0 && q.Weight == 0
		all1 = all1 && q.Weight == 1
	}
	switch {
	case all0:
		return Strict
	case all1:
		return Random
	}
	return Weighted
}

// queueOrder produces the fetch order of queues, recomputed before each fetch.
type queueOrder struct {
	mode   QueueMode
	unique []string // strict order, de-duplicated
	pool   []string // each queue repeated max(weight,1) times
}

func newQueueOrder(qs []QueueWeight) *queueOrder {
	o := &queueOrder{mode: ModeOf(qs)}
	seen := map[string]bool{}
	for _, q := range qs {
		if !seen[q.Name] {
			seen[q.Name] = true
			o.unique = append(o.unique, q.Name)
		}
		for range max(q.Weight, 1) {
			o.pool = append(o.pool, q.Name)
		}
	}
	return o
}

// nextIndexes is next as indexes into unique.
func (o *queueOrder) nextIndexes() []int {
	names := o.next()
	out := make([]int, len(names))
	for i, n := range names {
		for k, u := range o.unique {
			if u == n {
				out[i] = k
				break
			}
		}
	}
	return out
}

// next returns the queues in the order to try them this time: shuffle the
// weighted list and keep first occurrences, so queue q comes first with
// probability weight(q)/sum, as Sidekiq's fetch.rb does.
func (o *queueOrder) next() []string {
	if o.mode == Strict || len(o.unique) == 1 {
		return o.unique
	}
	p := append([]string(nil), o.pool...)
	rand.Shuffle(len(p), func(i, k int) { p[i], p[k] = p[k], p[i] })
	out := make([]string, 0, len(o.unique))
	seen := make(map[string]bool, len(o.unique))
	for _, q := range p {
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	return out
}

// FileConfig is what a sidekiq.yml sets. Zero values mean "not set".
type FileConfig struct {
	Concurrency int
	Timeout     time.Duration
	Queues      []QueueWeight
	Tag         string
	Labels      []string // shown on /busy; default ["pallarel"]
}

// LoadFileConfig reads a Rails app's sidekiq.yml: top-level keys with or
// without the leading colon (":concurrency:" or "concurrency:"), queues as
// names or [name, weight] pairs, and an environment section (e.g.
// "production:") that overrides the top level when env matches. ERB tags
// of the common form <%= ENV["X"] %> and <%= ENV.fetch("X", default) %>
// are expanded from the environment; any other ERB is an error.
func LoadFileConfig(path, env string, lookup func(string) (string, bool)) (FileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("read %s: %w", path, err)
	}
	fc, err := ParseFileConfig(data, env, lookup)
	if err != nil {
		return FileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return fc, nil
}

var erbTag = regexp.MustCompile(`<%=?\s*(.*?)\s*-?%>`)
var erbEnv = regexp.MustCompile(`^ENV(?:\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]|\.fetch\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*(?:,\s*(?:["']([^"']*)["']|(-?[0-9]+)))?\s*\))(?:\.to_i)?(?:\s*\|\|\s*(?:["']([^"']*)["']|(-?[0-9]+)))?$`)

func expandERB(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var firstErr error
	out := erbTag.ReplaceAllFunc(data, func(tag []byte) []byte {
		expr := string(erbTag.FindSubmatch(tag)[1])
		m := erbEnv.FindStringSubmatch(expr)
		if m == nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("ERB %q: only ENV[...] and ENV.fetch(...) are supported", expr)
			}
			return nil
		}
		name := m[1] + m[2]
		if v, ok := lookup(name); ok {
			return []byte(v)
		}
		return []byte(m[3] + m[4] + m[5] + m[6])
	})
	return out, firstErr
}

// ParseFileConfig parses sidekiq.yml content; see LoadFileConfig.
func ParseFileConfig(data []byte, env string, lookup func(string) (string, bool)) (FileConfig, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	data, err := expandERB(data, lookup)
	if err != nil {
		return FileConfig{}, err
	}
	var root map[string]yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return FileConfig{}, fmt.Errorf("parse yaml: %w", err)
	}
	var fc FileConfig
	if err := applySection(&fc, root, true); err != nil {
		return FileConfig{}, err
	}
	if env != "" {
		for k, n := range root {
			if strings.TrimPrefix(k, ":") != env {
				continue
			}
			var sec map[string]yaml.Node
			if err := n.Decode(&sec); err != nil {
				return FileConfig{}, fmt.Errorf("section %s: %w", env, err)
			}
			if err := applySection(&fc, sec, false); err != nil {
				return FileConfig{}, fmt.Errorf("section %s: %w", env, err)
			}
		}
	}
	return fc, nil
}

func applySection(fc *FileConfig, sec map[string]yaml.Node, top bool) error {
	var errs []error
	for k, n := range sec {
		key := strings.TrimPrefix(k, ":")
		switch key {
		case "concurrency":
			if err := n.Decode(&fc.Concurrency); err != nil || fc.Concurrency < 1 {
				errs = append(errs, fmt.Errorf("concurrency: want a whole number >= 1, got %q", n.Value))
			}
		case "timeout":
			var s float64
			if err := n.Decode(&s); err != nil || s < 0 {
				errs = append(errs, fmt.Errorf("timeout: want seconds >= 0, got %q", n.Value))
			}
			fc.Timeout = time.Duration(s * float64(time.Second))
		case "tag":
			_ = n.Decode(&fc.Tag)
		case "labels":
			if err := n.Decode(&fc.Labels); err != nil {
				errs = append(errs, fmt.Errorf("labels: want a list of strings: %v", err))
			}
		case "queues":
			qs, err := decodeQueues(n)
			if err != nil {
				errs = append(errs, err)
			}
			fc.Queues = qs
		case "verbose", "pidfile", "logfile", "require", "environment", "strict", "max_retries",
			"dead_max_jobs", "dead_timeout_in_seconds", "poll_interval_average",
			"average_scheduled_poll_interval", "scheduler", "capsules", "lifecycle_events", "error_handlers":
			// Accepted for compatibility; the Go worker either has no
			// equivalent or takes it from flags.
		default:
			// Environment sections (development:, production:...) sit at the
			// top level as maps; anything else is unknown but harmless, as in
			// Sidekiq, which ignores unknown keys.
			if top && n.Kind == yaml.MappingNode {
				continue
			}
		}
	}
	return errors.Join(errs...)
}

func decodeQueues(n yaml.Node) ([]QueueWeight, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("queues: want a list")
	}
	var out []QueueWeight
	for _, item := range n.Content {
		switch item.Kind {
		case yaml.ScalarNode:
			q, err := ParseQueueFlag(item.Value)
			if err != nil {
				return nil, fmt.Errorf("queues: %w", err)
			}
			out = append(out, q)
		case yaml.SequenceNode:
			if len(item.Content) == 0 || len(item.Content) > 2 {
				return nil, fmt.Errorf("queues: want [name, weight], got %d items", len(item.Content))
			}
			q := QueueWeight{Name: item.Content[0].Value}
			if err := ValidQueueName(q.Name); err != nil {
				return nil, fmt.Errorf("queues: %w", err)
			}
			if len(item.Content) == 2 {
				w, err := strconv.Atoi(item.Content[1].Value)
				if err != nil || w < 0 {
					return nil, fmt.Errorf("queues: weight of %s must be a whole number >= 0", q.Name)
				}
				q.Weight = w
			}
			out = append(out, q)
		default:
			return nil, errors.New("queues: each entry is a name or [name, weight]")
		}
	}
	return out, nil
}

// Options configures a Server. Zero values take Sidekiq's defaults.
type Options struct {
	Queues      []QueueWeight // default [{default 0}]
	Concurrency int           // processors; default 5 as Sidekiq 7+
	Timeout     time.Duration // shutdown grace for running jobs; default 25s
	Tag         string
	Labels      []string // shown on /busy; default ["pallarel"]
	Dialect     Dialect  // job and heartbeat format; default Dialect8

	// BasicFetch selects Sidekiq's BRPOP fetch, which loses the jobs a
	// killed process held. The default is Pallarel's reliable fetch.
	BasicFetch bool
	// Prefetch is how many jobs the server fetches ahead of its free
	// processors: the next jobs are in memory when a processor frees up
	// instead of one Redis round trip away. Prefetched jobs are held like
	// running ones (on the in-flight list with reliable fetch, so a killed
	// process loses none), are not busy on /busy, and go back to their
	// queue at once, in order, on quiet or stop. Default (0) with reliable
	// fetch: adaptive, as many jobs as the processors finish in 5 ms,
	// measured as they run (at most MaxPrefetch; it starts at
	// Concurrency): short jobs come hundreds per round trip, and a job of
	// 10 ms or more is not prefetched, so it waits in Redis where any
	// process can take it, as with Sidekiq. Default with BasicFetch: none
	// (a killed process would lose its prefetched jobs too). Positive:
	// that many, at most MaxPrefetch. Negative: none (the CLI's
	// --prefetch 0).
	Prefetch int

	MaxRetries        int           // for retry: true; default 25
	DeadMaxJobs       int           // default 10 000
	DeadTimeout       time.Duration // default 180 days
	PollAverage       time.Duration // scheduled poll average; default 5s × process count
	HeartbeatInterval time.Duration // default 5s (readable by Sidekiq 6.4 through 8.x)
	// ProcessTTL is the lifetime of the heartbeat hash, Sidekiq's 60 s by
	// default. A dead process's in-flight jobs are recovered once it
	// expires, so tests and impatient deployments may shorten it.
	ProcessTTL time.Duration
	// OnBeat, when set, is called after every heartbeat attempt with its
	// error (nil when the beat reached Redis), from the heartbeat's own
	// goroutine: a container health check can read the loop's liveness
	// without asking Redis (worker -healthcheck).
	OnBeat func(at time.Time, err error)
	// PrivateRedis says that Redis serves this host only (the all-in-one
	// server's embedded Redis, on loopback): then a process registered
	// from this host whose pid is gone is dead at once, and its in-flight
	// jobs come back without waiting ProcessTTL for its heartbeat to
	// expire. Leave it off on a shared Redis, where another host may have
	// the same name.
	PrivateRedis bool
	// Process, when set, makes the server a capsule of that process entry
	// (Sidekiq 7+'s config.capsule): it beats in the entry's heartbeat
	// instead of an entry of its own, so several servers of one OS process
	// show as one process on /busy. The entry's Tag, Labels, Version,
	// Dialect and heartbeat timing apply; Hostname defaults to its.
	Process *SharedProcess
	// Capsule names the server's capsule in its Process entry's info;
	// default "default".
	Capsule string
	// IdleTimeout stops the server when all its queues have stayed empty and
	// nothing ran for this long; 0 never stops.
	IdleTimeout time.Duration

	ServerMiddleware []ServerMiddleware
	// DeathHandlers run when a job has failed for good: sent to the dead
	// set, or dropped because retry or dead is false (Sidekiq's
	// death_handlers). They run after the dead set write.
	DeathHandlers    []DeathHandler
	ClientMiddleware []ClientMiddleware // for jobs the server re-pushes

	Hostname string // default os.Hostname (or $DYNO, as Sidekiq)
	Logger   *slog.Logger
	Now      func() time.Time
	// Version is the process's Sidekiq version for the Web UI, whose /busy
	// page flags any process whose version differs from its own
	// Sidekiq::VERSION. Default: the version the dialect mirrors, 8.0.6,
	// 7.3.2 or 6.4.1; set it to the Rails app's exact Sidekiq version.
	// Go processes are told apart by their "pallarel" label.
	Version string

	prefetch prefetchPlan // Prefetch resolved by withDefaults
}

func (o *Options) withDefaults() error {
	if len(o.Queues) == 0 {
		o.Queues = []QueueWeight{{Name: "default"}}
	}
	for _, q := range o.Queues {
		if err := ValidQueueName(q.Name); err != nil {
			return err
		}
	}
	if o.Concurrency == 0 {
		o.Concurrency = 5
	}
	if o.Concurrency < 1 || o.Concurrency > 10000 {
		return fmt.Errorf("concurrency %d: want 1..10000", o.Concurrency)
	}
	switch {
	case o.Prefetch > MaxPrefetch:
		return fmt.Errorf("prefetch %d: want at most %d", o.Prefetch, MaxPrefetch)
	case o.Prefetch > 0:
		o.prefetch = prefetchPlan{depth: o.Prefetch, most: o.Prefetch}
	case o.Prefetch == 0 && !o.BasicFetch:
		o.prefetch = prefetchPlan{depth: min(o.Concurrency, MaxPrefetch), most: MaxPrefetch, auto: true}
	default:
		o.prefetch = prefetchPlan{}
	}
	if o.Timeout == 0 {
		o.Timeout = 25 * time.Second
	}
	if o.Dialect == 0 {
		o.Dialect = Dialect8
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 25
	}
	if o.DeadMaxJobs == 0 {
		o.DeadMaxJobs = 10000
	}
	if o.DeadTimeout == 0 {
		o.DeadTimeout = 180 * 24 * time.Hour
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 5 * time.Second
		// A short process TTL (--process-ttl) needs beats often enough to
		// keep the heartbeat hash alive.
		if o.ProcessTTL > 0 {
			o.HeartbeatInterval = min(o.HeartbeatInterval, o.ProcessTTL/3)
		}
	}
	if o.ProcessTTL == 0 {
		o.ProcessTTL = 60 * time.Second
	}
	if o.ProcessTTL < 2*o.HeartbeatInterval {
		return fmt.Errorf("process TTL %s must be at least twice the heartbeat interval %s", o.ProcessTTL, o.HeartbeatInterval)
	}
	if o.Hostname == "" {
		if d := os.Getenv("DYNO"); d != "" {
			o.Hostname = d
		} else if h, err := os.Hostname(); err == nil {
			o.Hostname = h
		} else {
			o.Hostname = "localhost"
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Labels == nil {
		o.Labels = []string{"pallarel"}
	}
	if o.Version == "" {
		o.Version = o.Dialect.SidekiqVersion()
	}
	return nil
}
