package chaos

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Load: many concurrent uploads served by 3 worker processes, each on every
// token queue: all complete, counts exact; the status route's latency under
// that load is recorded (p50, p99).
func TestLoadConcurrentUploads(t *testing.T) {
	uploads, rows := sized(4, 20), sized(1000, 50000)
	c := newCluster(t)
	c.worker("report", 3, "report", "default")
	tokens := make([]uploaded, uploads)
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Go(func() { tokens[i] = c.upload(makeCSV(fmt.Sprintf("L%02d", i), rows), "text") })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var queues []string
	for _, u := range tokens {
		queues = append(queues, u.Queue+",1")
	}
	for w := range 3 {
		c.worker(fmt.Sprintf("token-%d", w), 10, queues...)
	}
	// Sample the status route while the runs go on.
	stop := make(chan struct{})
	var lat []time.Duration
	var latMu sync.Mutex
	var sampler sync.WaitGroup
	for k := range 4 {
		sampler.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, c.base+"/csv_processing/"+tokens[(i+k)%uploads].Token, nil)
				req.Header.Set("Accept", "application/json")
				t0 := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					latMu.Lock()
					lat = append(lat, time.Since(t0))
					latMu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	start := time.Now()
	for i, u := range tokens {
		if s := c.waitFinished(u.Token, time.Duration(uploads*rows/50+120)*time.Second); s.State != "completed" {
			t.Fatalf("upload %d: %+v", i, s)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	sampler.Wait()
	total := 0
	for i, u := range tokens {
		r := c.verify(u.Token, fmt.Sprintf("L%02d", i), rows)
		expectIntact(t, r, 0)
		total += r.done
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("LOAD uploads=%d rows_each=%d rows_total=%d elapsed=%s rows_per_s=%.0f status_requests=%d p50=%s p99=%s",
		uploads, rows, total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), len(lat), p(0.5), p(0.99))
}
