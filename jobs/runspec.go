package jobs

import "github.com/pallarel/pallarel/contract"

// runSpec is the run's source_spec (contract.RunSpec).
type runSpec = contract.RunSpec

func parseSpec(s string) (runSpec, bool) { return contract.ParseRunSpec(s) }
