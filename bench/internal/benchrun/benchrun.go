// Package benchrun is what the pipeline benchmarks share to drive a
// running server and read its processes: the upload, the run's status, a
// free port, a wait, and a field of /proc/<pid>/status.
package benchrun

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Uploaded is the server's answer to an upload.
type Uploaded struct {
	Token string `json:"token"`
	Queue string `json:"queue"`
}

// Upload streams file as a multipart POST of report type typ to base (an
// io.Pipe: the file is never held in memory) and returns the token and
// queue the server answers.
func Upload(ctx context.Context, base, file, typ string) (Uploaded, error) {
	f, err := os.Open(file)
	if err != nil {
		return Uploaded{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := mw.WriteField("csv_type", typ)
		if err == nil {
			var w io.Writer
			if w, err = mw.CreateFormFile("csv_file", filepath.Base(file)); err == nil {
				_, err = io.Copy(w, f)
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/csv_processing", pr)
	if err != nil {
		return Uploaded{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Uploaded{}, fmt.Errorf("upload %s: %w", file, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return Uploaded{}, fmt.Errorf("upload %s: %s: %s", file, resp.Status, data)
	}
	var u Uploaded
	if err := json.Unmarshal(data, &u); err != nil {
		return Uploaded{}, fmt.Errorf("upload answer %q: %w", data, err)
	}
	return u, nil
}

// Status is a run's JSON, as far as the benchmarks read it.
type Status struct {
	State       string     `json:"state"`
	TotalCount  int        `json:"total_count"`
	DoneCount   int        `json:"done_count"`
	FailedCount int        `json:"failed_count"`
	FinalizedAt *time.Time `json:"finalized_at"`
	LastError   string     `json:"last_error"`
}

// RunStatus reads token's run from base.
func RunStatus(base, token string) (Status, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/csv_processing/"+token, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("status %s: %w", token, err)
	}
	return s, nil
}

// FreePort is a TCP port free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitFor calls f every poll until it returns nil or d has passed, and
// returns its last error.
func WaitFor(d, poll time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(poll)
	}
}

// StatusKiB is a "kB" field of /proc/<pid>/status ("VmRSS:", "VmHWM:").
func StatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}
