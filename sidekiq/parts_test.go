package sidekiq

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// recordingPart notes when it starts and stops.
type recordingPart struct {
	name string
	mu   *sync.Mutex
	log  *[]string
	up   chan struct{}
}

func (p recordingPart) run(ctx context.Context) {
	p.mu.Lock()
	*p.log = append(*p.log, "start "+p.name)
	p.mu.Unlock()
	close(p.up)
	<-ctx.Done()
	p.mu.Lock()
	*p.log = append(*p.log, "stop "+p.name)
	p.mu.Unlock()
}

func TestPartGroupStopsInReverseOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var log []string
	var ps []part
	var ups []chan struct{}
	for _, n := range []string{"a", "b", "c"} {
		up := make(chan struct{})
		ups = append(ups, up)
		ps = append(ps, recordingPart{name: n, mu: &mu, log: &log, up: up})
	}
	var g partGroup
	g.start(context.Background(), ps)
	for _, up := range ups {
		<-up
	}
	g.stop()
	stops := slices.DeleteFunc(slices.Clone(log), func(s string) bool { return s[:5] == "start" })
	if want := []string{"stop c", "stop b", "stop a"}; !slices.Equal(stops, want) {
		t.Fatalf("stops %q, want %q", stops, want)
	}
	g.stop() // a second stop is harmless
}

// The heartbeat starts first and stops last; the poller starts last and
// stops first; basic fetch has no recoverer.
func TestServerPartsOrder(t *testing.T) {
	t.Parallel()
	for _, basic := range []bool{false, true} {
		srv, err := NewServer(nil, NewRegistry(), Options{BasicFetch: basic, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		p := newServerParts(srv)
		got := p.order()
		want := 4
		if basic {
			want = 3
			if p.recoverer != nil {
				t.Fatal("basic fetch has a recoverer")
			}
		}
		if len(got) != want || got[0] != part(p.heartbeat) || got[1] != part(p.metrics) || got[len(got)-1] != part(p.poller) {
			t.Fatalf("basic=%v: order %v", basic, got)
		}
	}
}
