package jobs

import (
	"encoding/json"
	"strconv"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/sidekiq"
)

// toSidekiq turns a job of the contract into the payload pushed: through
// ActiveJob's wrapper for an ActiveJob class (dialect d), as a plain
// Sidekiq job otherwise, with the class's retry and our extra fields.
func toSidekiq(d sidekiq.Dialect, c contract.Job) (*sidekiq.Job, error) {
	var (
		j   *sidekiq.Job
		err error
	)
	if c.Class.ActiveJob {
		j, err = sidekiq.NewActiveJob(d, c.Class.Name, c.Queue, c.Args...)
	} else {
		j, err = sidekiq.NewJob(c.Class.Name, c.Args...)
	}
	if err != nil {
		return nil, err
	}
	return j, withOptions(j, c)
}

// withOptions gives j, built from c's class and arguments, c's queue, retry
// and extra fields. A plain integer field (pallarel_row) is written as its
// digits, without SetField's encoding/json: the feeder writes one a row.
func withOptions(j *sidekiq.Job, c contract.Job) error {
	j.Queue = c.Queue
	if c.Retry != contract.RetryDefault {
		j.Retry = json.RawMessage(strconv.Itoa(c.Retry))
	}
	if c.Class.Dead {
		if j.Fields == nil {
			j.Fields = map[string]json.RawMessage{}
		}
		j.Fields["dead"] = json.RawMessage("true")
	}
	for _, f := range c.Fields {
		if n, ok := f.Value.(int); ok {
			if j.Fields == nil {
				j.Fields = map[string]json.RawMessage{}
			}
			j.Fields[f.Name] = strconv.AppendInt(nil, int64(n), 10)
			continue
		}
		if err := j.SetField(f.Name, f.Value); err != nil {
			return err
		}
	}
	return nil
}

// NewSplitJob builds a SplitCsvJob as the Rails controller enqueues it
// (ActiveJob, queue "report"); src is the CSV text or a SourceRef.
func NewSplitJob(d sidekiq.Dialect, src any, typ string, reportID int64) (*sidekiq.Job, error) {
	return toSidekiq(d, contract.SplitJob(contract.SplitArgs{Source: src, Type: typ, ReportID: reportID}))
}
