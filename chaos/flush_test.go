package chaos

import (
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// FLUSHALL with every client still connected (a failover to an empty
// replica, or allkeys eviction) mid-split and mid-rows is data loss, never
// a cancel: the run is rebuilt from the upload and ends completed with
// every row in the ZIP once.
func TestFlushAllMidRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window string // SPLIT_WINDOW: small keeps the split going, large ends it at once
		split  bool   // the split is under way at the fault
	}{
		{"mid-split", "SPLIT_WINDOW=500", true},
		{"mid-rows", "SPLIT_WINDOW=1000000", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := supervisedCluster(t, tc.window)
			n := faultRows()
			u := c.upload(makeCSV("F", n), "xlsx")
			if !tc.split {
				deadline := time.Now().Add(2 * time.Minute)
				for {
					if ok, _ := redis.Bool(c.redisDo("EXISTS", "pallarel:total:"+u.Token)); ok {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the split did not end")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			c.waitProgress(u.Token, n/10, n, 120*time.Second)
			total, _ := redis.Bool(c.redisDo("EXISTS", "pallarel:total:"+u.Token))
			if total == tc.split {
				t.Fatalf("split under way = %v at the fault, want %v", !total, tc.split)
			}
			if _, err := c.redisDo("FLUSHALL"); err != nil {
				t.Fatal(err)
			}
			fault := time.Now()
			if s := c.endsWithin(u.Token, fault, 4*time.Minute); s.State != "completed" {
				t.Fatalf("run: %+v", s)
			}
			expectIntact(t, c.verify(u.Token, "F", n), 0)
		})
	}
}
