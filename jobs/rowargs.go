package jobs

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/sidekiq"
)

// scanRowArgs reads a row job's [row_hash, type, report_id, path, token]
// as job.ScanArgs does, without encoding/json for the plain values every
// row has (strings without escapes, an integer id, null): ScanArgs'
// reflection was a tenth of a text row's CPU in the token worker. Anything
// else, and every error, goes through job.ScanArgs, so the results and the
// messages are the same.
func scanRowArgs(job *sidekiq.Job, row *json.RawMessage, typ *string, reportID *int64, path, token *string) error {
	args, err := job.Arguments()
	if err != nil || len(args) != 5 {
		return job.ScanArgs(row, typ, reportID, path, token)
	}
	t, ok1 := plainJSONString(args[1])
	id, ok2 := plainJSONInt(args[2])
	p, ok3 := plainJSONString(args[3])
	k, ok4 := plainJSONString(args[4])
	if !ok1 || !ok2 || !ok3 || !ok4 || len(args[0]) == 0 {
		return job.ScanArgs(row, typ, reportID, path, token)
	}
	*row, *typ, *reportID, *path, *token = args[0], t, id, p, k
	return nil
}

// plainJSONString returns a JSON string without escapes, or null as "".
func plainJSONString(raw json.RawMessage) (string, bool) {
	if string(raw) == "null" {
		return "", true
	}
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 || bytes.IndexByte(s, '"') >= 0 {
		return "", false
	}
	for _, c := range s {
		if c < 0x20 || c >= 0x80 { // control characters are invalid; leave UTF-8 checks to encoding/json
			return "", false
		}
	}
	return string(s), true
}

// plainJSONInt returns a JSON integer that fits an int64, or null as 0.
func plainJSONInt(raw json.RawMessage) (int64, bool) {
	if string(raw) == "null" {
		return 0, true
	}
	if len(raw) == 0 || raw[0] == '+' || len(raw) > 1 && raw[0] == '0' || len(raw) > 2 && raw[0] == '-' && raw[1] == '0' {
		return 0, false // leading zeros are not JSON
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// rowNumber is the job's pallarel_row as job.Field reads it (0 when absent
// or not an int), without encoding/json for a plain integer.
func rowNumber(job *sidekiq.Job) int {
	if n, ok := plainJSONInt(job.Fields[contract.FieldRow]); ok && n == int64(int(n)) {
		return int(n)
	}
	var n int
	_, _ = job.Field(contract.FieldRow, &n)
	return n
}

// newRowJob is sidekiq.NewJob(contract.Row.Name, hash, typ, reportID, path, token)
// for the feeder, which builds one per row: hash is encodeOrdered's JSON
// (valid by construction), and plain strings are quoted as they are, so
// only other strings go through NewJob's reflection and re-validation
// (a quarter of the report worker's CPU per row). The payload is the same
// bytes either way.
func newRowJob(hash json.RawMessage, typ string, reportID int64, path, token string) (*sidekiq.Job, error) {
	if !plainString(typ) || !plainString(path) || !plainString(token) || len(hash) == 0 {
		return sidekiq.NewJob(contract.Row.Name, hash, typ, reportID, path, token)
	}
	return &sidekiq.Job{Class: contract.Row.Name, Args: []json.RawMessage{
		hash, quotePlain(typ), strconv.AppendInt(nil, reportID, 10), quotePlain(path), quotePlain(token),
	}}, nil
}

// plainString reports whether s is printable ASCII without '"' or '\',
// which JSON quotes as it is.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func quotePlain(s string) json.RawMessage {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
