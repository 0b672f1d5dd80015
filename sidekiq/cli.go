package sidekiq

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/internal/redisurl"
)

// CLI is what the worker command line says, parsed as Sidekiq's cli.rb
// does: flags override sidekiq.yml (-C), which overrides the defaults.
type CLI struct {
	Options     Options
	Environment string
	ConfigFile  string
	Verbose     bool
	Version     bool
}

type queueFlags []QueueWeight

func (q *queueFlags) String() string { return fmt.Sprint(*q) }
func (q *queueFlags) Set(s string) error {
	qw, err := ParseQueueFlag(s)
	if err != nil {
		return err
	}
	*q = append(*q, qw)
	return nil
}

// ParseCLI parses worker arguments: -q NAME[,WEIGHT] (repeatable), -c N,
// -t SECONDS, -C sidekiq.yml, -e ENV, -g TAG, -v, -V, and Pallarel's own
// --dialect 6|7|8|8.1, --fetch reliable|basic, --prefetch N (0: none),
// --idle-timeout DURATION and --process-ttl DURATION. lookup reads the environment (for RAILS_ENV and
// ERB in sidekiq.yml). Errors say which flag is wrong.
func ParseCLI(args []string, lookup func(string) (string, bool), stderr io.Writer) (CLI, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cli        CLI
		queues     queueFlags
		conc       int
		timeout    float64
		tag        string
		dialect    string
		fetch      string
		prefetch   int
		idle       time.Duration
		processTTL time.Duration
		require    string
	)
	for _, n := range []string{"q", "queue"} {
		fs.Var(&queues, n, "queue to process, with optional weight: NAME[,WEIGHT] (repeatable)")
	}
	for _, n := range []string{"c", "concurrency"} {
		fs.IntVar(&conc, n, -1, "processor goroutines (default 5, or sidekiq.yml)")
	}
	for _, n := range []string{"t", "timeout"} {
		fs.Float64Var(&timeout, n, -1, "seconds to wait for running jobs at shutdown (default 25)")
	}
	for _, n := range []string{"C", "config"} {
		fs.StringVar(&cli.ConfigFile, n, "", "path to sidekiq.yml")
	}
	for _, n := range []string{"e", "environment"} {
		fs.StringVar(&cli.Environment, n, "", "environment section of sidekiq.yml (default $APP_ENV, $RAILS_ENV or $RACK_ENV)")
	}
	for _, n := range []string{"g", "tag"} {
		fs.StringVar(&tag, n, "", "process tag shown in the Web UI")
	}
	for _, n := range []string{"v", "verbose"} {
		fs.BoolVar(&cli.Verbose, n, false, "debug logging")
	}
	for _, n := range []string{"V", "version"} {
		fs.BoolVar(&cli.Version, n, false, "print version and exit")
	}
	for _, n := range []string{"r", "require"} {
		fs.StringVar(&require, n, "", "Ruby only: not supported (handlers are compiled into the Go worker)")
	}
	fs.StringVar(&dialect, "dialect", "", "Sidekiq job format to write: 8 (default), 8.1, 7 or 6 (env SIDEKIQ_DIALECT)")
	fs.StringVar(&fetch, "fetch", "reliable", "reliable (jobs survive SIGKILL) or basic (Sidekiq's BRPOP)")
	fs.IntVar(&prefetch, "prefetch", -1, "jobs fetched ahead of free processors, at most 1000; 0: none (default: adaptive with reliable fetch, what the processors finish in 5 ms; none with basic fetch)")
	fs.DurationVar(&idle, "idle-timeout", 0, "exit after the queues stayed empty this long (0: never)")
	fs.DurationVar(&processTTL, "process-ttl", 0, "heartbeat lifetime; a killed worker's jobs return after it (default 60s)")
	if err := fs.Parse(args); err != nil {
		return CLI{}, err
	}
	if fs.NArg() > 0 {
		return CLI{}, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	if require != "" {
		return CLI{}, errors.New("-r loads Ruby code; the Go worker runs the handlers compiled into it")
	}
	if cli.Environment == "" {
		for _, k := range []string{"APP_ENV", "RAILS_ENV", "RACK_ENV"} {
			if v, ok := lookup(k); ok && v != "" {
				cli.Environment = v
				break
			}
		}
	}
	o := &cli.Options
	if cli.ConfigFile != "" {
		fc, err := LoadFileConfig(cli.ConfigFile, cli.Environment, lookup)
		if err != nil {
			return CLI{}, fmt.Errorf("-C: %w", err)
		}
		o.Concurrency, o.Timeout, o.Queues, o.Tag, o.Labels = fc.Concurrency, fc.Timeout, fc.Queues, fc.Tag, fc.Labels
	}
	var errs []error
	if len(queues) > 0 {
		o.Queues = queues
	}
	if conc != -1 {
		if conc < 1 {
			errs = append(errs, fmt.Errorf("-c %d: want a whole number >= 1", conc))
		}
		o.Concurrency = conc
	}
	if timeout >= 0 {
		o.Timeout = time.Duration(timeout * float64(time.Second))
	} else if timeout != -1 {
		errs = append(errs, fmt.Errorf("-t %v: want seconds >= 0", timeout))
	}
	if tag != "" {
		o.Tag = tag
	}
	if dialect == "" {
		dialect, _ = lookup("SIDEKIQ_DIALECT")
	}
	d, err := ParseDialect(strings.TrimSpace(dialect))
	if err != nil {
		errs = append(errs, fmt.Errorf("--dialect: %w", err))
	}
	o.Dialect = d
	switch fetch {
	case "reliable":
	case "basic":
		o.BasicFetch = true
	default:
		errs = append(errs, fmt.Errorf("--fetch %q: want reliable or basic", fetch))
	}
	switch {
	case prefetch == 0:
		o.Prefetch = -1
	case prefetch > 0:
		o.Prefetch = prefetch
	case prefetch != -1:
		errs = append(errs, fmt.Errorf("--prefetch %d: want 0 or more", prefetch))
	}
	if idle < 0 || processTTL < 0 {
		errs = append(errs, errors.New("--idle-timeout and --process-ttl must not be negative"))
	}
	o.IdleTimeout, o.ProcessTTL = idle, processTTL
	if err := errors.Join(errs...); err != nil {
		return CLI{}, err
	}
	return cli, nil
}

// NewPool opens a redigo pool on a Redis URL as Sidekiq reads REDIS_URL:
// redis://[:password@]host[:port][/db] or rediss:// for TLS. size is the
// most idle connections kept (concurrency plus a few for the heartbeat and
// poller). NewPoolWith adds Sentinel and TLS settings.
func NewPool(url string, size int) (*redis.Pool, error) {
	return NewPoolWith(url, RedisSettings{}, size)
}

// ValidRedisURL checks a Redis URL without connecting (internal/redisurl,
// which config uses too).
func ValidRedisURL(raw string) error { return redisurl.Valid(raw) }
