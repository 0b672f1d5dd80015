package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/ledger"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/sidekiq"
)

// Who keeps a run's books: whose records tell which of its rows have ended.
// Go records every row it ends in its row ledger. The Rails app's row job
// records nothing in Redis: it only adds one to done_count, so a row Ruby
// finished is neither recorded nor in Redis, which is what a lost row looks
// like to Go's run supervisor. A run whose rows Ruby works is therefore
// Ruby's to account for: its done_count counts the rows, and Go never
// pushes one of its rows again.
const (
	BooksGo   = "go"
	BooksRuby = "ruby"
)

// booksKey remembers that Ruby keeps a run's books (it stays Ruby's once a
// Ruby worker ran its rows: they are known only as a count).
func booksKey(token string) string { return contract.BooksKey(token) }

// trackedKey is the set of tokens with Go state in Redis whose end Go may
// not see: the app's finalizer deletes the status row of a run it
// finalizes, and then the supervisor drops the token's keys (dropOrphans).
const trackedKey = contract.TrackedKey

// runBooks decides who keeps token's books from what Redis and the
// database show, and remembers a Ruby decision. Ruby keeps them when
//   - a live process without Go's "pallarel" label (a Ruby Sidekiq)
//     serves the token's queue: the rows it runs and has run leave no
//     trace Go can read, but for the count;
//   - or the database counts more ended rows than Go's ledger holds, while
//     Go's split records are there (after Redis lost its data the counts
//     are rebuilt instead) and no retry of failed rows is rebuilding the
//     ledger: rows ended that only Ruby can have ended.
//
// Go keeps them otherwise. why says what decided.
func (p *Pipeline) runBooks(ctx context.Context, st models.CsvProcessingStatus, queue string, recorded int) (books, why string, err error) {
	token := st.Token
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.Send("GET", booksKey(token))
	_ = c.Send("EXISTS", contract.SplitKey(token))
	_ = c.Send("EXISTS", contract.RetryLockKey(token))
	vals, err := redis.Values(c.Do(""))
	if err != nil || len(vals) != 3 {
		return "", "", fmt.Errorf("books of %s: %v", token, err)
	}
	if kept, _ := redis.String(vals[0], nil); kept == BooksRuby {
		return BooksRuby, "a Ruby worker ran rows of this run", nil
	}
	split, _ := redis.Bool(vals[1], nil)
	retrying, _ := redis.Bool(vals[2], nil)

	procs, err := p.liveProcesses(ctx)
	if err != nil {
		return "", "", err
	}
	for _, pr := range procs {
		if slices.Contains(pr.Queues, queue) && !slices.Contains(pr.Labels, "pallarel") {
			why = "Ruby Sidekiq " + pr.Identity + " serves " + queue
			break
		}
	}
	if ended := st.DoneCount + st.FailedCount; why == "" && split && !retrying && ended > recorded {
		why = fmt.Sprintf("the database counts %d ended rows, Go's ledger %d", ended, recorded)
	}
	if why == "" {
		return BooksGo, "only Go workers ran this run's rows", nil
	}
	if err := p.keepRubyBooks(ctx, token, why); err != nil {
		return "", "", err
	}
	return BooksRuby, why, nil
}

// keepRubyBooks records that Ruby keeps token's books, and tracks the run
// so that its keys go when the app's finalizer ends it.
func (p *Pipeline) keepRubyBooks(ctx context.Context, token, why string) error {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("books of %s: %w", token, err)
	}
	defer c.Close()
	_ = c.Send("SET", booksKey(token), BooksRuby)
	_ = c.Send("SADD", trackedKey, token)
	if _, err := c.Do(""); err != nil {
		return fmt.Errorf("books of %s: %w", token, err)
	}
	p.log.Info("run books: Ruby keeps them; Go pushes none of its rows again", "token", token, "why", why)
	return nil
}

// procsCache holds the live processes for one supervisor pass: runBooks
// asks for every unfinished run.
type procsCache struct {
	mu    sync.Mutex
	at    time.Time
	procs []sidekiq.Process
}

// liveProcesses lists the live processes, read at most once a second.
func (p *Pipeline) liveProcesses(ctx context.Context) ([]sidekiq.Process, error) {
	c := &p.procs
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < time.Second {
		return c.procs, nil
	}
	procs, err := p.d.API.Processes(ctx)
	if err != nil {
		return nil, err
	}
	c.procs, c.at = procs, time.Now()
	return procs, nil
}

// Books says who keeps token's books as last decided (BooksGo when the
// supervisor never found Ruby at work on it), for the run's page.
func (p *Pipeline) Books(ctx context.Context, token string) (string, error) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	v, err := redis.String(c.Do("GET", booksKey(token)))
	if errors.Is(err, redis.ErrNil) {
		return BooksGo, nil
	}
	return v, err
}

// track adds token to the runs whose keys dropOrphans watches.
func (p *Pipeline) track(ctx context.Context, token string) {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		p.warnIf(err, "track run")
		return
	}
	defer c.Close()
	_, err = c.Do("SADD", trackedKey, token)
	p.warnIf(err, "track run")
}

// dropOrphans deletes the Redis state and row files of tracked runs whose status row is
// gone and that Go did not finalize (its cleanup puts a TTL on the ledger):
// the app's finalizer ended them and deleted the row. A run Go ended
// leaves the set at its cleanup.
func (p *Pipeline) dropOrphans(ctx context.Context) error {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	tokens, err := redis.Strings(c.Do("SMEMBERS", trackedKey))
	c.Close()
	if err != nil {
		return fmt.Errorf("tracked runs: %w", err)
	}
	for _, token := range tokens {
		_, err := p.d.DB.StatusByToken(ctx, token)
		if err == nil {
			continue
		}
		if !errors.Is(err, models.ErrNotFound) {
			return err
		}
		// Rows Go ran before Ruby took the run over: the app's ZIP has
		// their copies (APP_REPORTS_DIR) or lacks them; nothing will read
		// them now.
		p.packer.Release(token)
		p.removeAppDir(token)
		if err := p.d.Store.DeletePrefix(ctx, contract.RowKeyPrefix(token)); err != nil {
			return fmt.Errorf("drop row files of %s: %w", token, err)
		}
		if err := p.dropRunKeys(ctx, token); err != nil {
			return err
		}
		p.log.Info("run supervisor: the run's status row is gone (finalized by the Rails app): its Redis state dropped", "token", token)
	}
	return nil
}

// dropRunKeys deletes every pallarel key of token and untracks it.
func (p *Pipeline) dropRunKeys(ctx context.Context, token string) error {
	c, err := p.d.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	keys := append(ledger.Keys(token), contract.FeederKey(token), contract.RetryLockKey(token), contract.WebhookSentKey(token))
	_ = c.Send("MULTI")
	_ = c.Send("DEL", redis.Args{}.AddFlat(keys)...)
	_ = c.Send("SREM", trackedKey, token)
	if _, err := c.Do("EXEC"); err != nil {
		return fmt.Errorf("drop keys of %s: %w", token, err)
	}
	return nil
}

// rubyRanTheRest reports whether a run Go's ledger has not seen end
// (ended of its rows recorded) has ended anyway: Ruby keeps its books and
// the database counts every row ended.
func (p *Pipeline) rubyRanTheRest(ctx context.Context, st models.CsvProcessingStatus, ended int) bool {
	if st.TotalCount == 0 || st.DoneCount+st.FailedCount < st.TotalCount || ended >= st.TotalCount {
		return false
	}
	books, err := p.Books(ctx, st.Token)
	return err == nil && books == BooksRuby
}
