package jobs

import (
	"encoding/json"
	"errors"
	"github.com/pallarel/pallarel/contract"
	"reflect"
	"testing"

	"github.com/pallarel/pallarel/sidekiq"
)

// FuzzScanRowArgs checks scanRowArgs against job.ScanArgs on any five
// arguments: the same values, or errors both.
func FuzzScanRowArgs(f *testing.F) {
	f.Add(`{"a":"1"}`, `"text"`, `12`, `"/tmp/x"`, `"abc"`)
	f.Add(`{"a":"1"}`, `null`, `null`, `null`, `null`)
	f.Add(`{}`, `"te\"xt"`, `-0`, `"\u3042"`, `"ab\u0000"`)
	f.Add(`[1]`, `"x"`, `+1`, `"é"`, `1`)
	f.Add(`{}`, `"x"`, `1e3`, `"x"`, `"x"`)
	f.Add(`{}`, `"x"`, `01`, `"x"`, `"\ud800"`)
	f.Add(`{}`, `"x"`, `9223372036854775808`, `"x"`, `true`)
	f.Fuzz(func(t *testing.T, a0, a1, a2, a3, a4 string) {
		raw := `{"class":"Report::ProcessCsvRowJob","queue":"q","jid":"0123456789abcdef01234567","args":[` +
			a0 + `,` + a1 + `,` + a2 + `,` + a3 + `,` + a4 + `]}`
		job, err := sidekiq.ParseJob([]byte(raw))
		if err != nil {
			return // not a job: neither path sees it
		}
		var r1, r2 json.RawMessage
		var t1, t2, p1, p2, k1, k2 string
		var id1, id2 int64
		err1 := job.ScanArgs(&r1, &t1, &id1, &p1, &k1)
		err2 := scanRowArgs(job, &r2, &t2, &id2, &p2, &k2)
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("ScanArgs: %v; scanRowArgs: %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !reflect.DeepEqual([]any{string(r1), t1, id1, p1, k1}, []any{string(r2), t2, id2, p2, k2}) {
			t.Fatalf("ScanArgs %q %q %d %q %q; scanRowArgs %q %q %d %q %q", r1, t1, id1, p1, k1, r2, t2, id2, p2, k2)
		}
	})
}

func BenchmarkScanRowArgs(b *testing.B) {
	job, err := sidekiq.ParseJob([]byte(`{"class":"Report::ProcessCsvRowJob","queue":"q","jid":"0123456789abcdef01234567","args":[{"個別識別番号":"ID-00000001","保険者名":"保険者1"},"text",12,"/tmp/rails/reports","0f3c2a1b9d8e7f6a5b4c3d2e1f0a9b8c"]}`))
	if err != nil {
		b.Fatal(err)
	}
	var row json.RawMessage
	var typ, path, token string
	var id int64
	b.Run("ScanArgs", func(b *testing.B) {
		for b.Loop() {
			if err := job.ScanArgs(&row, &typ, &id, &path, &token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scanRowArgs", func(b *testing.B) {
		for b.Loop() {
			if err := scanRowArgs(job, &row, &typ, &id, &path, &token); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzRowNumber checks rowNumber against job.Field on any pallarel_row.
func FuzzRowNumber(f *testing.F) {
	for _, s := range []string{`12`, `-3`, `0`, `01`, `1.0`, `"7"`, `null`, `9223372036854775807`, `+1`, `1e2`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		job, err := sidekiq.ParseJob([]byte(`{"class":"C","queue":"q","jid":"j","args":[],"pallarel_row":` + v + `}`))
		if err != nil {
			return
		}
		var want int
		_, _ = job.Field(contract.FieldRow, &want)
		if got := rowNumber(job); got != want {
			t.Fatalf("rowNumber = %d, job.Field = %d", got, want)
		}
	})
}

// FuzzNewRowJob checks newRowJob against sidekiq.NewJob: the same payload
// bytes for any type, report id, path and token.
func FuzzNewRowJob(f *testing.F) {
	f.Add("text", int64(12), "/tmp/reports", "0f3c2a1b9d8e7f6a")
	f.Add("pdf", int64(-1), "", "a\"b")
	f.Add("xlsx", int64(0), "C:\\x", "<&>\u2028é\xff")
	f.Fuzz(func(t *testing.T, typ string, id int64, path, token string) {
		hash, _ := encodeOrdered([]string{"a"}, map[string]string{"a": typ}, nil)
		j1, err1 := sidekiq.NewJob(contract.Row.Name, hash, typ, id, path, token)
		j2, err2 := newRowJob(hash, typ, id, path, token)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("NewJob: %v; newRowJob: %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		for _, j := range []*sidekiq.Job{j1, j2} {
			j.JID, j.Queue, j.Retry = "0123456789abcdef01234567", "q", json.RawMessage("3")
		}
		b1, err1 := j1.Encode()
		b2, err2 := j2.Encode()
		if err1 != nil || err2 != nil || string(b1) != string(b2) {
			t.Fatalf("NewJob: %s (%v)\nnewRowJob: %s (%v)", b1, err1, b2, err2)
		}
	})
}

// tokenQueue remembers the last token's queue: alternating tokens still get
// their own queues, and a bad token is refused after a good one.
func TestTokenQueueMemo(t *testing.T) {
	p := &Pipeline{}
	a, b := "0f3c2a1b-9d8e-4f6a-9b4c-3d2e1f0a9b8c", "11111111-2222-4333-8444-555555555555"
	for i := range 4 {
		tok := []string{a, b}[i%2]
		want, err := p.d.Router.For(tok)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p.tokenQueue(tok); err != nil || got != want {
			t.Fatalf("tokenQueue(%s) = %q, %v; want %q", tok, got, err, want)
		}
	}
	if _, err := p.tokenQueue("not a token"); !errors.Is(err, sidekiq.ErrBadArgs) {
		t.Fatalf("bad token after a good one: %v", err)
	}
}
