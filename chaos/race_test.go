package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// postRaw posts {} to path and returns the status and body, whatever they are.
func (c *cluster) postRaw(path string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// downloadStatus is the HTTP status of the run's ZIP download.
func (c *cluster) downloadStatus(token string) int {
	resp, err := http.Get(c.base + "/csv_processing/" + token + "/download")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Cancel racing completion: cancels are fired back to back from the last
// rows of a run until it ends. Every answer is 200 or 409, never a 500; the
// run ends cancelled or completed, never both: a cancel answered 200 means
// cancelled with no ZIP, a completed run had no cancel accepted and its ZIP
// holds every row once. Several runs, so both outcomes get their chance.
func TestCancelRacingCompletion(t *testing.T) {
	c := newCluster(t)
	c.worker("report", 2, "report", "default")
	n := sized(300, 3000)
	outcomes := map[string]int{}
	for i := range 8 {
		prefix := fmt.Sprintf("CR%d", i)
		u := c.upload(makeCSV(prefix, n), "text")
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if l, _ := redis.Int(c.redisDo("LLEN", "queue:"+u.Queue)); l >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("split did not finish")
			}
		}
		c.worker("token-"+prefix, 3, u.Queue)
		// Start cancelling a little earlier each run: the first when every
		// row has ended and the finalizer is on its way.
		from := n - i*i
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Millisecond) {
			if ended, _ := redis.Int(c.redisDo("GET", "pallarel:count:"+u.Token)); ended >= from {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the run did not reach its last rows")
			}
		}
		accepted, codes := 0, map[int]int{}
		var s runStatus
		for {
			// Three at once: cancel races cancel too.
			var wg sync.WaitGroup
			var mu sync.Mutex
			for range 3 {
				wg.Go(func() {
					code, body := c.postRaw("/csv_processing/" + u.Token + "/cancel")
					mu.Lock()
					defer mu.Unlock()
					codes[code]++
					switch code {
					case http.StatusOK:
						accepted++
					case http.StatusConflict:
					default:
						t.Errorf("cancel answered %d: %s", code, body)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			s = c.status(u.Token)
			if s.State == "completed" || s.State == "cancelled" || s.State == "failed" {
				break
			}
		}
		s = c.waitFinished(u.Token, 60*time.Second)
		// Settled: later cancels are refused, the state holds.
		if code, body := c.postRaw("/csv_processing/" + u.Token + "/cancel"); code != http.StatusConflict {
			t.Fatalf("cancel after the end answered %d: %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
		if again := c.status(u.Token); again.State != s.State {
			t.Fatalf("state changed after the end: %s then %s", s.State, again.State)
		}
		t.Logf("run %d: cancels from row %d: %v; ended %s", i, from, codes, s.State)
		outcomes[s.State]++
		switch s.State {
		case "cancelled":
			if accepted == 0 {
				t.Fatalf("cancelled with no cancel accepted: %+v", s)
			}
			if code := c.downloadStatus(u.Token); code == http.StatusOK {
				t.Fatalf("a cancelled run serves a ZIP")
			}
		case "completed":
			if accepted > 0 {
				t.Fatalf("completed although %d cancels were accepted: %+v", accepted, s)
			}
			expectIntact(t, c.verify(u.Token, prefix, n), 0)
		default:
			t.Fatalf("run ended %+v", s)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// Retry racing retry: a run completed with failed rows (cells too long for
// XLSX: they fail again on every try) gets eight retries at once. One wins
// (200 with the failed rows' count), the others get 409, none a 500; the
// run completes again with the same rows failed, every row once.
func TestRetryRacingRetry(t *testing.T) {
	c := newCluster(t, "ROW_JOB_RETRY=0")
	c.worker("report", 2, "report", "default")
	n := sized(200, 2000)
	var b bytes.Buffer
	b.WriteString("個別識別番号,保険者名,年度\n")
	bad := 0
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("保険者%d", i)
		if i%25 == 0 {
			name = strings.Repeat("長", 33000)
			bad++
		}
		fmt.Fprintf(&b, "RR-%06d,%s,2024\n", i, name)
	}
	u := c.upload(b.Bytes(), "xlsx")
	c.worker("token", 3, u.Queue)
	first := c.waitFinished(u.Token, 120*time.Second)
	if first.State != "completed" || first.FailedCount != bad {
		t.Fatalf("first run: %+v (want completed with %d failed)", first, bad)
	}
	expectIntact(t, c.verify(u.Token, "RR", n), bad)

	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var won []string
	for range 8 {
		wg.Go(func() {
			code, body := c.postRaw("/csv_processing/" + u.Token + "/retry")
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == http.StatusOK {
				won = append(won, body)
			}
		})
	}
	wg.Wait()
	t.Logf("eight retries at once: %v", codes)
	if len(won) != 1 || codes[http.StatusConflict] != 7 {
		t.Fatalf("retries answered %v (want one 200, seven 409)", codes)
	}
	var pushed struct {
		Rows int `json:"rows"`
	}
	if err := json.Unmarshal([]byte(won[0]), &pushed); err != nil || pushed.Rows != bad {
		t.Fatalf("the winning retry pushed %s, want %d rows", won[0], bad)
	}
	// The retried rows may need a worker again: the first one may have been
	// told to stop when the run ended.
	select {
	case <-c.procs["token"].done:
		c.worker("token2", 3, u.Queue)
	default:
	}
	again := c.waitFinished(u.Token, 120*time.Second)
	if again.State != "completed" || again.FailedCount != bad || again.DoneCount != n-bad {
		t.Fatalf("after the retry: %+v", again)
	}
	expectIntact(t, c.verify(u.Token, "RR", n), bad)
}
