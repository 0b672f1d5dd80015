package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/jobs"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/render"
	"github.com/pallarel/pallarel/sidekiq"
	"golang.org/x/text/encoding/japanese"
)

// secretRenderer ("pdf") writes a row's cells in column order. It holds
// rows past free until open is closed, fails a row whose v is ONCE the
// first time (a retry), and kills one whose v is KILL the first time (the
// dead set; "Retry failed rows" runs it).
type secretRenderer struct {
	free int
	open chan struct{}
	mu   sync.Mutex
	seen map[int]bool
}

func (*secretRenderer) Name() string { return "pdf" }
func (*secretRenderer) Ext() string  { return ".txt" }
func (s *secretRenderer) Render(ctx context.Context, w io.Writer, row render.Row) error {
	if v := row.Fields["v"]; v == "KILL" || v == "ONCE" {
		s.mu.Lock()
		first := !s.seen[row.Number]
		s.seen[row.Number] = true
		s.mu.Unlock()
		switch {
		case first && v == "KILL":
			return sidekiq.Kill(fmt.Errorf("row %d is killed", row.Number))
		case first:
			return fmt.Errorf("row %d fails once", row.Number)
		}
	}
	if row.Number > s.free {
		select {
		case <-s.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cells := make([]string, len(row.Headers))
	for i, h := range row.Headers {
		cells[i] = row.Fields[h]
	}
	_, err := fmt.Fprintf(w, "row %d|%s", row.Number, strings.Join(cells, "|"))
	return err
}

// secretCSV is rows rows whose id and name cells are found nowhere else
// (SECRET-ID-0001, 氏名ひみつｶﾅ0001: half-width katakana too), with a
// quoted cell holding a CRLF and a comma, nil and "" cells, a row that
// fails once and one that is killed.
func secretCSV(rows int) (csv string, want map[int]string, secrets []string) {
	var b strings.Builder
	b.WriteString("\uFEFFid,name,memo,v\r\n")
	want = map[int]string{}
	for i := 1; i <= rows; i++ {
		id, name := fmt.Sprintf("SECRET-ID-%04d", i), fmt.Sprintf("氏名ひみつｶﾅ%04d", i)
		memo, memoCSV, v := "", "", "ok"
		switch i % 4 {
		case 1:
			memo, memoCSV = "住所\r\nひみつ,"+strconv.Itoa(i), "\"住所\r\nひみつ,"+strconv.Itoa(i)+"\""
		case 2:
			memoCSV = `""`
		}
		switch i {
		case 3:
			v = "ONCE"
		case 5:
			v = "KILL"
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s\r\n", id, name, memoCSV, v)
		want[i] = fmt.Sprintf("row %d|%s|%s|%s|%s", i, id, name, memo, v)
		secrets = append(secrets, id, name)
	}
	return b.String(), want, secrets
}

// TestRowRefsKeepCellsOutOfRedis: a Go-consumed run's row jobs carry a
// reference to the row in the stored upload. A dump of its redis-server
// (redis-cli --rdb, no compression) taken while rows wait in the queue,
// one in the retry set and one in the dead set, and its AOF, hold no id or
// name cell; the run completes with every row once and its cells right
// (quoted CRLF included), and "Retry failed rows" pushes references too
// (the AOF holds every push). The same run with ROW_CELLS=inline puts the
// cells in the dump: the check finds them when they are there. The same
// upload saved as Shift_JIS (CP932, no BOM) goes by reference as well, its
// cells read through the references the same as the split's.
func TestRowRefsKeepCellsOutOfRedis(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not found (Debian's redis-tools): %v", err)
	}
	for _, c := range []struct{ mode, enc string }{
		{jobs.RowCellsAuto, "utf-8"}, {jobs.RowCellsInline, "utf-8"},
		{jobs.RowCellsAuto, "shift_jis"}, {jobs.RowCellsInline, "shift_jis"},
	} {
		mode := c.mode
		t.Run(mode+"/"+c.enc, func(t *testing.T) {
			t.Parallel()
			dump, aof := runSecretRun(t, mode, c.enc == "shift_jis")
			found := 0
			secrets := dumpSecrets
			if c.enc == "shift_jis" {
				for _, s := range dumpSecrets {
					secrets = append(secrets[:len(secrets):len(secrets)], string(toShiftJIS(t, s)))
				}
			}
			for _, s := range secrets {
				in := dump
				i := bytes.Index(dump, []byte(s))
				if i < 0 {
					in, i = aof, bytes.Index(aof, []byte(s))
				}
				if i >= 0 {
					if found++; found <= 3 && mode != jobs.RowCellsInline {
						t.Logf("%q in %q", s, in[max(0, i-120):min(len(in), i+60)])
					}
				}
			}
			switch {
			case mode == jobs.RowCellsInline && found == 0:
				t.Fatalf("inline cells: none of %d cells found in the dump (%d bytes) or AOF (%d bytes): the check cannot see them", len(dumpSecrets), len(dump), len(aof))
			case mode != jobs.RowCellsInline && found > 0:
				t.Fatalf("%d of %d row cells are in Redis's dump or AOF", found, len(secrets))
			}
		})
	}
}

const secretRows = 40

var _, _, dumpSecrets = secretCSV(secretRows)

// toShiftJIS encodes s as Shift_JIS (CP932), as Japanese Excel saves a CSV.
func toShiftJIS(t *testing.T, s string) []byte {
	t.Helper()
	b, err := japanese.ShiftJIS.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatalf("encode %q as shift_jis: %v", s, err)
	}
	return b
}

// runSecretRun runs the secret CSV (saved as Shift_JIS when sjis is set)
// on a redis-server of its own with an AOF, dumps it mid-run and returns
// the dump and the AOF after the run.
func runSecretRun(t *testing.T, mode string, sjis bool) (dump, aof []byte) {
	node := redistest.NewNode(t, "--appendonly", "yes", "--appendfsync", "always", "--rdbcompression", "no")
	pool := redistest.NewPool(node.Addr, 0)
	t.Cleanup(func() { pool.Close() })
	r := &secretRenderer{free: 10, open: make(chan struct{}), seen: map[int]bool{}}
	e := newEnvWith(t, envOptions{redis: &redistest.DB{Addr: node.Addr, Pool: pool}, renderers: []render.Renderer{r},
		deps: func(d *jobs.Deps) { d.RowCells = mode }})
	csv, want, _ := secretCSV(secretRows)
	if sjis {
		csv = string(toShiftJIS(t, strings.TrimPrefix(csv, "\uFEFF")))
	}
	id, token := e.splitStored(csv)
	queue := e.queue(token)
	waitFor(t, 30*time.Second, "rows done, rows queued, one retrying, one dead", func() bool {
		return e.ledgerCount(token) >= 8 && e.redisInt("LLEN", "queue:"+queue) > 0 &&
			e.redisInt("ZCARD", "retry") == 1 && e.redisInt("ZCARD", "dead") == 1
	})
	file := filepath.Join(t.TempDir(), "dump.rdb")
	if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(node.Port), "--rdb", file).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
	}
	dump, err := os.ReadFile(file)
	if err != nil || len(dump) == 0 {
		t.Fatalf("dump: %d bytes, %v", len(dump), err)
	}
	close(r.open)
	e.dueNow(sidekiq.RetrySet)
	rep := e.waitReport(id, 60*time.Second)
	if rep.Status != models.ReportCompleted {
		t.Fatalf("report: %+v", rep)
	}
	checkZip := func(rep models.ClientReport, killed bool) {
		t.Helper()
		got := map[int]int{}
		for name, data := range e.readZip(rep.File) {
			s := string(data)
			if !strings.HasPrefix(s, "row ") {
				continue
			}
			n, _ := strconv.Atoi(s[4:strings.IndexByte(s, '|')])
			got[n]++
			if s != want[n] {
				t.Errorf("%s: %q, want %q", name, s, want[n])
			}
		}
		for n := 1; n <= secretRows; n++ {
			wantN := 1
			if n == 5 && killed {
				wantN = 0 // failed in the manifest
			}
			if got[n] != wantN {
				t.Errorf("row %d: %d files, want %d", n, got[n], wantN)
			}
		}
	}
	checkZip(rep, true)
	if st := e.status(token); st.DoneCount != secretRows-1 || st.FailedCount != 1 {
		t.Errorf("counts: done %d failed %d, want %d and 1", st.DoneCount, st.FailedCount, secretRows-1)
	}
	// "Retry failed rows" pushes the killed row again: by reference too
	// (the AOF below holds every push).
	if n, err := e.pipeline.RetryFailed(context.Background(), token); err != nil || n != 1 {
		t.Fatalf("RetryFailed = %d, %v; want 1", n, err)
	}
	checkZip(e.completed(id, 60*time.Second), false)
	aofFiles, _ := filepath.Glob(filepath.Join(node.Dir, "appendonlydir", "*"))
	for _, f := range aofFiles {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		aof = append(aof, b...)
	}
	if len(aof) == 0 {
		t.Fatalf("no AOF in %s", node.Dir)
	}
	return dump, aof
}

// TestRowRefOnlyReadsItsRunsUpload: a reference row job pushed by another
// client that names an object other than its run's upload (another run's
// upload, a ZIP) is killed without reading it.
func TestRowRefOnlyReadsItsRunsUpload(t *testing.T) {
	t.Parallel()
	gate := &gateRenderer{free: 0, open: make(chan struct{})}
	e := newEnvWith(t, envOptions{renderers: []render.Renderer{gate}})
	_, token := e.gatedRun(30, 0)
	ctx := context.Background()
	other := "uploads/other.csv"
	if err := e.store.Put(ctx, other, strings.NewReader("id,v\nSECRET-OTHER,1\n")); err != nil {
		t.Fatal(err)
	}
	ref := contract.RowRef{SourceKey: other, Header: 5, Offset: 5, Length: 15}
	j, err := sidekiq.NewJob(contract.Row.Name, ref, "text", 1, contract.ReportDir(token), token, contract.RowRefMarker)
	if err != nil {
		t.Fatal(err)
	}
	j.Queue = e.queue(token)
	j.Retry = json.RawMessage("0")
	b, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	e.db.Do(t, "RPUSH", "queue:"+j.Queue, b) // fetched next
	close(gate.open)
	dead := e.waitDead(contract.Row.Name, 20*time.Second)
	if msg := dead.StringField("error_message"); !strings.Contains(msg, "not the upload of run "+token) {
		t.Fatalf("dead row job: %q", msg)
	}
}
