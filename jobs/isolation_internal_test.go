package jobs

import (
	"encoding/json"
	"testing"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/router"
	"github.com/pallarel/pallarel/sidekiq"
)

// BenchmarkIsolationCheck is what the queue isolation middleware costs a
// row job at push (and again when it runs): read its arguments, the token
// among them, and derive the token's queue. bench/RESULTS.md weighs it
// against a row's whole cost.
func BenchmarkIsolationCheck(b *testing.B) {
	r, err := router.New(16)
	if err != nil {
		b.Fatal(err)
	}
	p := &Pipeline{d: Deps{Router: r}}
	const token = "0f8fad5b-d9cb-469f-a165-70867728950e"
	q, _ := r.For(token)
	j, err := sidekiq.NewJob(contract.Row.Name, json.RawMessage(`{"個別識別番号":"A-0001","年度":"2024","名前":"山田"}`), "xlsx", 42, contract.ReportDir(token), token)
	if err != nil {
		b.Fatal(err)
	}
	j.Queue = q
	b.ReportAllocs()
	for b.Loop() {
		if err := checkIsolation(p.tokenQueue, j); err != nil {
			b.Fatal(err)
		}
	}
}
