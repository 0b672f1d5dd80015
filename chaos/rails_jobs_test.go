package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// The app's ActiveJob classes, enqueued by real Ruby ActiveJob 7.2
// (perform_later on Sidekiq 8.0.6), run in Go's report worker with the
// app's semantics: IdleShutdownJob for a run whose status row the app's
// finalizer deleted ends quietly; the three monitors do their pass; an
// unknown class keeps Sidekiq's NameError retry.
func TestRailsActiveJobsRunInGo(t *testing.T) {
	c, db := newRailsCluster(t)
	ctx := context.Background()
	c.worker("report", 2, "report", "default")

	// ForceShutdownMonitorJob: a finished run whose stop failed.
	forced := router.NewToken()
	mustStatus(t, db, forced, "arn:aws:ecs:forced")
	if err := db.store.SetForceShutdown(ctx, forced); err != nil {
		t.Fatal(err)
	}
	// IdleEcsTaskMonitorJob: an unfinished run with a task, quiet for an
	// hour, and nothing in its queue.
	idle := router.NewToken()
	mustStatus(t, db, idle, "arn:aws:ecs:idle")
	if err := db.store.DB.Exec("UPDATE csv_processing_statuses SET updated_at = ? WHERE token = ?",
		time.Now().Add(-time.Hour).UTC(), idle).Error; err != nil {
		t.Fatal(err)
	}
	// DeadLetterMonitorJob: a row job of a run, killed (in the dead set).
	deadTok := router.NewToken()
	mustStatus(t, db, deadTok, "")
	row, err := sidekiq.NewJob("Report::ProcessCsvRowJob", map[string]string{"id": "1"}, "xlsx", 1, "/tmp/reports/"+deadTok, deadTok)
	if err != nil {
		t.Fatal(err)
	}
	row.Queue = router.QueueName(deadTok)
	_ = row.SetField("pallarel_row", 1)
	_ = row.SetField("error_message", "killed from the Web UI")
	raw, err := row.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.redisDo("ZADD", "dead", float64(time.Now().Unix()), raw); err != nil {
		t.Fatal(err)
	}

	var res struct {
		JID string `json:"jid"`
	}
	gone := router.NewToken() // no status row: the app's finalizer deleted it
	c.rubyStep(db, &res, "perform_later", "IdleShutdownJob", gone)
	idleJID := res.JID
	jids := map[string]string{idleJID: "IdleShutdownJob"}
	for _, class := range []string{"ForceShutdownMonitorJob", "IdleEcsTaskMonitorJob", "DeadLetterMonitorJob"} {
		c.rubyStep(db, &res, "perform_later", class)
		jids[res.JID] = class
	}
	c.rubyStep(db, &res, "perform_later", "SampleJob")
	unknownJID := res.JID

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("the force-shutdown pass", func() bool {
		st, err := db.store.StatusByToken(ctx, forced)
		return err == nil && st.ForceShutdownAt == nil
	})
	waitFor("the idle-task pass", func() bool {
		st, err := db.store.StatusByToken(ctx, idle)
		return err == nil && st.WorkerTaskArn == ""
	})
	waitFor("the dead-letter pass", func() bool {
		n, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+deadTok))
		return n == 1
	})
	waitFor("the unknown class's NameError retry", func() bool {
		return setHas(c, "retry", unknownJID, "NameError")
	})
	waitFor("the default queue drained", func() bool {
		n, _ := redis.Int(c.redisDo("LLEN", "queue:default"))
		return n == 0
	})
	// The app's jobs ran once and are neither retrying nor dead (the
	// IdleShutdownJob for a gone run used to retry "record not found").
	for jid, class := range jids {
		for _, set := range []string{"retry", "dead", "schedule"} {
			if setHas(c, set, jid, "") {
				t.Errorf("%s (%s) is in the %s set", class, jid, set)
			}
		}
	}
	if setHas(c, "schedule", "", gone) {
		t.Errorf("IdleShutdownJob for a gone run pushed itself again")
	}
	// Each ran in Go and ended well: Sidekiq's "done" line with its jid.
	log := c.procs["report"].log.String()
	for jid, class := range jids {
		done := false
		for _, line := range strings.Split(log, "\n") {
			done = done || (strings.Contains(line, "msg=done ") && strings.Contains(line, "jid="+jid+" class="+class+" "))
		}
		if !done {
			t.Errorf("no done line for %s %s in the report worker's log", class, jid)
		}
	}
}

func mustStatus(t *testing.T, db *railsDB, token, arn string) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.store.CreateStatus(ctx, token, router.QueueName(token), 1); err != nil {
		t.Fatal(err)
	}
	if arn != "" {
		if err := db.store.RecordWorker(ctx, token, arn, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
}

// setHas reports whether the sorted set holds a job with jid (any jid when
// empty) whose payload contains text.
func setHas(c *cluster, set, jid, text string) bool {
	members, _ := redis.ByteSlices(c.redisDo("ZRANGE", set, 0, -1))
	for _, m := range members {
		if (jid == "" || bytes.Contains(m, []byte(`"jid":"`+jid+`"`))) && bytes.Contains(m, []byte(text)) {
			return true
		}
	}
	return false
}

// diffCSV has what Ruby's CSV.parse(headers: true) reads differently from
// a plain reading: empty unquoted cells (nil), quoted empty cells (""),
// CRLF and LF inside quotes, a doubled quote.
func diffCSV(n int) []byte {
	var b bytes.Buffer
	b.WriteString("個別識別番号,保険者名,年度,備考\r\n")
	for i := 1; i <= n; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "D-%04d,,\"\",\r\n", i)
		case 1:
			fmt.Fprintf(&b, "D-%04d,\"全国\r\n健康\",%d,\"a\"\"b\"\r\n", i, 2000+i)
		case 2:
			fmt.Fprintf(&b, "D-%04d,\"x\ny\",,\"\"\r\n", i)
		case 3:
			fmt.Fprintf(&b, "D-%04d,保険者,2024,メモ\r\n", i)
		default:
			fmt.Fprintf(&b, "\"D-%04d\",\"\",\"\",\"\"\r\n", i)
		}
	}
	return b.Bytes()
}

// cell is one row hash entry: key and value (nil for JSON null), in order.
type cell struct {
	key string
	val *string
}

// orderedCells decodes a JSON object keeping key order and nulls.
func orderedCells(t *testing.T, raw json.RawMessage) []cell {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("row hash %s: not an object", raw)
	}
	var out []cell
	for dec.More() {
		k, _ := dec.Token()
		v, err := dec.Token()
		if err != nil {
			t.Fatalf("row hash %s: %v", raw, err)
		}
		c := cell{key: k.(string)}
		if s, ok := v.(string); ok {
			c.val = &s
		} else if v != nil {
			t.Fatalf("row hash %s: value %v", raw, v)
		}
		out = append(out, c)
	}
	return out
}

func (c cell) String() string {
	if c.val == nil {
		return c.key + "=nil"
	}
	return fmt.Sprintf("%s=%q", c.key, *c.val)
}

// queuedRows reads the row and finalize jobs pushed for token, in push
// order (the list's right end first), with the finalizer from wherever it
// waits.
func queuedRows(t *testing.T, c *cluster, token string, n int) (rows []*sidekiq.Job, fin *sidekiq.Job) {
	t.Helper()
	queue := router.QueueName(token)
	deadline := time.Now().Add(60 * time.Second)
	for {
		raws, _ := redis.ByteSlices(c.redisDo("LRANGE", "queue:"+queue, 0, -1))
		sched, _ := redis.ByteSlices(c.redisDo("ZRANGE", "schedule", 0, -1))
		rows, fin = nil, nil
		for i := len(raws) - 1; i >= 0; i-- {
			j, err := sidekiq.ParseJob(raws[i])
			if err != nil {
				t.Fatal(err)
			}
			switch j.Class {
			case "Report::ProcessCsvRowJob":
				rows = append(rows, j)
			case "Report::FinalizeReportJob":
				fin = j
			}
		}
		for _, s := range sched {
			if j, err := sidekiq.ParseJob(s); err == nil && j.Class == "Report::FinalizeReportJob" && strings.Contains(string(s), token) {
				fin = j
			}
		}
		if len(rows) == n && fin != nil {
			return rows, fin
		}
		if time.Now().After(deadline) {
			t.Fatalf("token %s: %d row jobs and finalizer %v, want %d and one", token, len(rows), fin != nil, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The same CSV split by the app's Ruby SplitCsvJob and by Go's: the row
// jobs carry the same row hashes (nil, "", CRLF and key order as Ruby's
// CSV.parse(headers: true) gives them) in the same order, the same other
// arguments, and the keys the app's sidekiq_options write (retry 3, dead
// true); the finalizers too. Go's own keys (pallarel_row) come on top.
// Then Go's workers run both runs' rows, nulls and all.
func TestRailsSplitDifferential(t *testing.T) {
	const n = 50
	c, db := newRailsCluster(t)
	c.worker("report", 2, "report", "default")
	data := diffCSV(n)
	u := c.upload(data, "xlsx")
	goRows, goFin := queuedRows(t, c, u.Token, n)

	var split struct {
		Token    string `json:"token"`
		ReportID int64  `json:"report_id"`
	}
	c.rubyStep(db, &split, "split", rubyFile(t, "diff.csv", data), "xlsx", "new")
	rbRows, rbFin := queuedRows(t, c, split.Token, n)

	argsOf := func(j *sidekiq.Job) []json.RawMessage {
		args, err := j.Arguments()
		if err != nil {
			t.Fatal(err)
		}
		return args
	}
	// Arguments that name the run (report id, path, token) are compared
	// with each side's own.
	norm := func(arg json.RawMessage, token string, id int64) string {
		s := strings.ReplaceAll(string(arg), token, "<token>")
		if s == fmt.Sprint(id) {
			return "<report_id>"
		}
		return s
	}
	for i := range n {
		g, r := argsOf(goRows[i]), argsOf(rbRows[i])
		if len(g) != 5 || len(r) != 5 {
			t.Fatalf("row %d: %d and %d arguments", i+1, len(g), len(r))
		}
		gc, rc := fmt.Sprint(orderedCells(t, g[0])), fmt.Sprint(orderedCells(t, r[0]))
		if gc != rc {
			t.Errorf("row %d: Go's row hash %s\n  Ruby's %s", i+1, gc, rc)
		}
		for k := 1; k < 5; k++ {
			if gv, rv := norm(g[k], u.Token, u.ReportID), norm(r[k], split.Token, split.ReportID); gv != rv {
				t.Errorf("row %d: argument %d: Go %s, Ruby %s", i+1, k, gv, rv)
			}
		}
		if gr, rr := string(goRows[i].Retry), string(rbRows[i].Retry); gr != rr || rr != "3" {
			t.Errorf("row %d: retry: Go %s, Ruby %s (the app's sidekiq_options: retry: 3)", i+1, gr, rr)
		}
		if gd, rd := string(goRows[i].Fields["dead"]), string(rbRows[i].Fields["dead"]); gd != rd || rd != "true" {
			t.Errorf("row %d: dead: Go %s, Ruby %s (the app's sidekiq_options: dead: true)", i+1, gd, rd)
		}
		var num int
		if ok, _ := goRows[i].Field("pallarel_row", &num); !ok || num != i+1 {
			t.Errorf("row %d: Go's pallarel_row %d", i+1, num)
		}
	}
	ga, ra := argsOf(goFin), argsOf(rbFin)
	if len(ga) != 7 || len(ra) != 7 {
		t.Fatalf("finalize arguments: Go %d, Ruby %d", len(ga), len(ra))
	}
	for k := range 4 {
		if gv, rv := norm(ga[k], u.Token, u.ReportID), norm(ra[k], split.Token, split.ReportID); gv != rv {
			t.Errorf("finalize argument %d: Go %s, Ruby %s", k, gv, rv)
		}
	}
	if string(goFin.Retry) != string(rbFin.Retry) || string(goFin.Fields["dead"]) != string(rbFin.Fields["dead"]) {
		t.Errorf("finalize retry/dead: Go %s/%s, Ruby %s/%s", goFin.Retry, goFin.Fields["dead"], rbFin.Retry, rbFin.Fields["dead"])
	}

	// Go's renderers and ledger take the null cells of both splits' rows.
	c.worker("token-go", 4, u.Queue)
	c.worker("token-ruby", 4, router.QueueName(split.Token))
	if s := c.waitFinished(u.Token, 2*time.Minute); s.State != "completed" || s.DoneCount != n || s.FailedCount != 0 {
		t.Errorf("Go split's run: %+v", s)
	}
	if s := c.waitFinished(split.Token, 2*time.Minute); s.State != "completed" || s.DoneCount != n || s.FailedCount != 0 {
		t.Errorf("Ruby split's run: %+v", s)
	}
}
