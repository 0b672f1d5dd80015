package embeddedredis

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

// The miniredis fallback keeps its data in a snapshot file, written when
// anything changed (at most every SnapshotEvery) and at Close, and read
// back at start: a kill loses at most the last interval's writes, not
// everything. Only database 0 (the one Pallarel uses) is kept.
const snapshotFile = "miniredis.snapshot"

// snapshotScript copies database 0 in one script, so the copy is
// consistent: miniredis runs a script under its lock, and a job moved from
// a queue to an in-flight list is seen in exactly one of them.
//
// KEYS: none. ARGV: none.
// Returns: one {key, type, pttl, values} per key; values are the string,
// the list, HGETALL, SMEMBERS or ZRANGE WITHSCORES.
const snapshotScript = `
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k)
  if type(t) == 'table' then t = t.ok end
  local v = nil
  if t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
  elseif t == 'hash' then v = redis.call('HGETALL', k)
  elseif t == 'set' then v = redis.call('SMEMBERS', k)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  end
  if v then out[#out + 1] = {k, t, tostring(redis.call('PTTL', k)), v} end
end
return out`

// snapKey is one key of a snapshot.
type snapKey struct {
	Key, Type string
	TTL       time.Duration // 0: none
	Values    []string
}

func (s *Server) startMiniredis() error {
	m := miniredis.NewMiniRedis()
	if s.cfg.Dir != "" {
		dir, err := filepath.Abs(s.cfg.Dir)
		if err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		s.cfg.Dir = dir
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		if s.lock, err = lockDir(dir); err != nil {
			return err
		}
		n, err := restoreSnapshot(m, filepath.Join(dir, snapshotFile))
		if err != nil {
			bad := filepath.Join(dir, snapshotFile+".bad-"+strconv.FormatInt(time.Now().Unix(), 10))
			_ = os.Rename(filepath.Join(dir, snapshotFile), bad)
			s.log.Error("embedded redis: snapshot unreadable, starting empty; it was moved aside", "file", bad, "err", err)
		} else if n > 0 {
			s.log.Info("embedded redis: snapshot restored", "keys", n)
		}
	}
	if err := m.StartAddr(s.cfg.Addr); err != nil {
		s.log.Warn("embedded redis: address busy, using a free port", "addr", s.cfg.Addr, "err", err)
		if err := m.StartAddr(hostOf(s.cfg.Addr) + ":0"); err != nil {
			s.lock.Close()
			return fmt.Errorf("start miniredis: %w", err)
		}
	}
	s.mini, s.Kind, s.Addr = m, KindMiniredis, m.Addr()
	s.URL = "redis://" + s.Addr + "/0"
	ctx, cancel := context.WithCancel(context.Background())
	s.stopMini = cancel
	s.miniDone = make(chan struct{})
	go s.tendMiniredis(ctx)
	persist := "NOT persisted (no data directory)"
	if s.cfg.Dir != "" {
		persist = "snapshot every " + s.cfg.SnapshotEvery.String() + " to " + filepath.Join(s.cfg.Dir, snapshotFile) + " (a kill loses the last interval)"
	}
	s.log.Warn("NO redis-server INSTALLED: the embedded Redis is miniredis, in memory, "+persist+", and slow on big runs. "+
		"Install redis-server (Debian: apt-get install redis-server) for a durable, fast embedded Redis.",
		"redis_url", s.URL)
	return nil
}

// tendMiniredis moves miniredis's clock (its TTLs only run when told to:
// a heartbeat would otherwise never expire) and snapshots it when it changed.
func (s *Server) tendMiniredis(ctx context.Context) {
	defer close(s.miniDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// seen starts at 0, not at the count when this goroutine first runs: the
	// data on disk is what was restored before any command, and a write
	// that landed before this line ran (a busy machine) must still be
	// snapshotted.
	last, lastSnap, seen := time.Now(), time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.mini.FastForward(now.Sub(last))
			last = now
			if s.cfg.Dir == "" || now.Sub(lastSnap) < s.cfg.SnapshotEvery {
				continue
			}
			if n := s.mini.CommandCount(); n != seen {
				if err := s.snapshot(); err != nil {
					s.log.Error("embedded redis: snapshot", "err", err)
					continue
				}
				seen, lastSnap = n+1, now // the snapshot's own EVAL counts too
			}
		}
	}
}

// snapshot writes database 0 to the snapshot file, atomically.
func (s *Server) snapshot() error {
	c, err := redis.Dial("tcp", s.mini.Addr(), redis.DialConnectTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	rows, err := redis.Values(c.Do("EVAL", snapshotScript, 0))
	if err != nil {
		return fmt.Errorf("snapshot script: %w", err)
	}
	keys := make([]snapKey, 0, len(rows))
	for _, row := range rows {
		f, err := redis.Values(row, nil)
		if err != nil || len(f) != 4 {
			return fmt.Errorf("snapshot script: bad row %v", row)
		}
		k, _ := redis.String(f[0], nil)
		t, _ := redis.String(f[1], nil)
		ms, _ := redis.String(f[2], nil)
		vals, err := redis.Strings(f[3], nil)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", k, err)
		}
		sk := snapKey{Key: k, Type: t, Values: vals}
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil && n > 0 {
			sk.TTL = time.Duration(n) * time.Millisecond
		}
		keys = append(keys, sk)
	}
	return writeFileAtomic(filepath.Join(s.cfg.Dir, snapshotFile), func(w *bufio.Writer) error {
		return gob.NewEncoder(w).Encode(keys)
	})
}

func writeFileAtomic(path string, write func(*bufio.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// restoreSnapshot loads the snapshot at path into m and returns its key
// count; no file is an empty start.
func restoreSnapshot(m *miniredis.Miniredis, path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer f.Close()
	var keys []snapKey
	if err := gob.NewDecoder(bufio.NewReaderSize(f, 1<<20)).Decode(&keys); err != nil {
		return 0, fmt.Errorf("decode %s: %w", path, err)
	}
	for _, k := range keys {
		var err error
		switch k.Type {
		case "string":
			if len(k.Values) == 1 {
				err = m.Set(k.Key, k.Values[0])
			}
		case "list":
			_, err = m.Push(k.Key, k.Values...)
		case "hash":
			m.HSet(k.Key, k.Values...)
		case "set":
			_, err = m.SetAdd(k.Key, k.Values...)
		case "zset":
			for i := 0; i+1 < len(k.Values); i += 2 {
				score, perr := strconv.ParseFloat(k.Values[i+1], 64)
				if perr != nil {
					return 0, fmt.Errorf("restore %s: score %q: %w", k.Key, k.Values[i+1], perr)
				}
				if _, err = m.ZAdd(k.Key, score, k.Values[i]); err != nil {
					break
				}
			}
		}
		if err != nil {
			return 0, fmt.Errorf("restore %s: %w", k.Key, err)
		}
		if k.TTL > 0 {
			m.SetTTL(k.Key, k.TTL)
		}
	}
	return len(keys), nil
}
