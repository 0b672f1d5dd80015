package chaos

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// rowRefusingS3 is an in-process S3-compatible server (gofakes3) that
// answers 503 SlowDown to the writes of row files while refusing is set:
// an S3 outage longer than a row job's retries.
type rowRefusingS3 struct {
	srv      *httptest.Server
	refusing atomic.Bool
	refused  atomic.Int64
	rowPuts  atomic.Int64
}

func newRowRefusingS3(t *testing.T) *rowRefusingS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("reports"); err != nil {
		t.Fatal(err)
	}
	f := &rowRefusingS3{}
	fake := gofakes3.New(backend).Server()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.HasPrefix(r.URL.Path, "/reports/rows/") {
			f.rowPuts.Add(1)
			if f.refusing.Load() {
				f.refused.Add(1)
				refuseS3(w, r, http.StatusServiceUnavailable, "SlowDown", "injected outage")
				return
			}
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// Retry of failed rows: S3 refuses the row files' writes for a while mid-run
// and the row jobs have no retries left (ROW_JOB_RETRY=0), so the rows that
// ran then end failed, with S3's reason, and the run completes with them in
// its ZIP. S3 heals; the user presses "retry failed rows" (the API behind
// the page's button): only those rows run again, through a worker the
// pipeline launches itself, and the new ZIP holds every row exactly once,
// all done.
func TestRetryFailedRowsAfterStorageOutage(t *testing.T) {
	s3 := newRowRefusingS3(t)
	c := supervisedCluster(t, append(s3Env(s3.srv.URL), "ROW_JOB_RETRY=0")...)
	n := sized(4000, 20000)
	u := c.upload(makeCSV("R", n), "xlsx")
	c.waitProgress(u.Token, n/10, n, 120*time.Second)
	s3.refusing.Store(true)
	for deadline := time.Now().Add(60 * time.Second); s3.refused.Load() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no row write reached the refusing S3")
		}
	}
	time.Sleep(300 * time.Millisecond)
	s3.refusing.Store(false)
	t.Logf("S3 refused %d of %d row writes", s3.refused.Load(), s3.rowPuts.Load())

	first := c.waitFinished(u.Token, 4*time.Minute)
	if first.State != "completed" || first.FailedCount == 0 {
		t.Fatalf("run after the outage: %+v (want completed with failed rows)", first)
	}
	before := c.verify(u.Token, "R", n)
	expectIntact(t, before, first.FailedCount)
	for row, why := range before.failures {
		if !strings.Contains(why, "SlowDown") && !strings.Contains(why, "injected outage") && !strings.Contains(why, "503") {
			t.Fatalf("row %d failed for another reason than the outage: %q", row, why)
		}
	}

	body := c.postJSON("/csv_processing/" + u.Token + "/retry")
	var pushed struct {
		Rows int `json:"rows"`
	}
	if err := json.Unmarshal(body, &pushed); err != nil || pushed.Rows != first.FailedCount {
		t.Fatalf("retry pushed %s, want %d rows", body, first.FailedCount)
	}
	puts := s3.rowPuts.Load()
	pressed := time.Now()
	again := c.endsWithin(u.Token, pressed, 4*time.Minute)
	if again.State != "completed" || again.FailedCount != 0 || again.DoneCount != n {
		t.Fatalf("run after the retry: %+v", again)
	}
	expectIntact(t, c.verify(u.Token, "R", n), 0)
	if s3.rowPuts.Load() == puts {
		t.Fatal("the retry wrote no row file: the failed rows did not run again")
	}
}
