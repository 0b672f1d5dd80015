package contract

import "encoding/json"

// RunSpec is how to read a run's rows again from storage: the split writes
// it to the run's status row (source_spec) before it pushes any row, so the
// upload in storage and the run in the database are enough to rebuild the
// run's work when Redis lost it, and to read its failed rows again.
type RunSpec struct {
	SourceKey   string `json:"source_key"`
	Encoding    string `json:"encoding,omitempty"`
	TemplateKey string `json:"template_key,omitempty"`
	Type        string `json:"type"`
	ReportID    int64  `json:"report_id"`
}

// ParseRunSpec reads a source_spec; false when there is none (a run split
// from an inline CSV, or by an older version) or it is not one.
func ParseRunSpec(s string) (RunSpec, bool) {
	var r RunSpec
	if s == "" || json.Unmarshal([]byte(s), &r) != nil || r.SourceKey == "" {
		return RunSpec{}, false
	}
	return r, true
}
