// Command pallarel submits a CSV to a Pallarel server, shows a progress bar
// while its rows are made into reports, and downloads the ZIP:
//
//	pallarel [-server http://localhost:8080] [-type xlsx|pdf|text] [-encoding auto]
//	         [-template t.xlsx] [-o report.zip] [-token AUTH_TOKEN] file.csv
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "pallarel: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

type options struct {
	server, typ, encoding, template, out, token string
	poll                                        time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pallarel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.server, "server", envOr("PALLAREL_SERVER", "http://localhost:8080"), "server URL (env PALLAREL_SERVER)")
	fs.StringVar(&o.typ, "type", "xlsx", "report type: xlsx, pdf or text")
	fs.StringVar(&o.encoding, "encoding", "auto", "CSV encoding: auto, utf-8 or shift_jis")
	fs.StringVar(&o.template, "template", "", "XLSX template whose {{column}} cells are filled per row")
	fs.StringVar(&o.out, "o", "", "where to write the ZIP (default report-<token>.zip)")
	fs.StringVar(&o.token, "token", os.Getenv("AUTH_TOKEN"), "bearer token when the server has AUTH_TOKEN set")
	fs.DurationVar(&o.poll, "poll", 500*time.Millisecond, "how often to ask for progress")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h: the usage was asked for, and printed
		}
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("give exactly one CSV file")}
	}
	c := &client{base: strings.TrimRight(o.server, "/"), token: o.token, http: &http.Client{}}
	sub, err := c.submit(ctx, fs.Arg(0), o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "submitted %s as %s (queue %s)\n", fs.Arg(0), sub.Token, sub.Queue)
	st, err := c.follow(ctx, sub.Token, o.poll, stderr)
	if err != nil && ctx.Err() != nil {
		// Ctrl-C stops following, not the run.
		return fmt.Errorf("stopped following; run %s goes on on the server.\n"+
			"  progress: %s/csv_processing/%s\n  download: %s/csv_processing/%s/download (once completed)",
			sub.Token, c.base, sub.Token, c.base, sub.Token)
	}
	if err != nil {
		return err
	}
	if st.State != "completed" {
		return fmt.Errorf("run %s %s: %s", sub.Token, st.State, st.LastError)
	}
	out := o.out
	if out == "" {
		out = "report-" + sub.Token + ".zip"
	}
	n, err := c.download(ctx, sub.Token, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes, %d rows done, %d failed\n", out, n, st.DoneCount, st.FailedCount)
	return nil
}

// usage is -h: what the command does, its argument and its flags.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, `Usage: pallarel [flags] FILE.csv

Uploads FILE.csv to a Pallarel server, shows the progress while each row
becomes a report file, and downloads the ZIP of them.

Examples:
  pallarel list.csv                                  # xlsx reports, server at localhost:8080
  pallarel -type pdf -o reports.zip list.csv
  pallarel -server https://reports.example.com -token "$AUTH_TOKEN" list.csv

Ctrl-C stops following; the run goes on on the server and the command
prints where to fetch it.

Flags:
`)
	fs.PrintDefaults()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type client struct {
	base, token string
	http        *http.Client
}

type submission struct {
	Token     string `json:"token"`
	ReportID  int64  `json:"report_id"`
	Queue     string `json:"queue"`
	StatusURL string `json:"status_url"`
}

type status struct {
	State       string `json:"state"`
	TotalCount  int    `json:"total_count"`
	DoneCount   int    `json:"done_count"`
	FailedCount int    `json:"failed_count"`
	LastError   string `json:"last_error"`
}

func (c *client) do(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		msg := strings.TrimSpace(string(body))
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error // the server's message, not its JSON
		}
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, msg)
	}
	return resp, nil
}

// submit streams the CSV (and template) as a multipart upload.
func (c *client) submit(ctx context.Context, path string, o options) (submission, error) {
	f, err := os.Open(path)
	if err != nil {
		return submission{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			for k, v := range map[string]string{"csv_type": o.typ, "encoding": o.encoding} {
				if err := mw.WriteField(k, v); err != nil {
					return err
				}
			}
			if o.template != "" {
				if err := copyFile(mw, "template", o.template); err != nil {
					return err
				}
			}
			w, err := mw.CreateFormFile("csv_file", filepath.Base(path))
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/csv_processing", pr)
	if err != nil {
		return submission{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.do(req)
	if err != nil {
		return submission{}, fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	var s submission
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || s.Token == "" {
		return submission{}, fmt.Errorf("upload: unexpected answer (%s): %v", resp.Status, err)
	}
	return s, nil
}

func copyFile(mw *multipart.Writer, field, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := mw.CreateFormFile(field, filepath.Base(path))
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}

func (c *client) status(ctx context.Context, token string) (status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/csv_processing/"+url.PathEscape(token), nil)
	if err != nil {
		return status{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return status{}, err
	}
	defer resp.Body.Close()
	var s status
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// follow polls the run's status, drawing a progress bar, until it ends.
func (c *client) follow(ctx context.Context, token string, every time.Duration, w io.Writer) (status, error) {
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("splitting"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	defer fmt.Fprintln(w)
	for {
		st, err := c.status(ctx, token)
		if err != nil {
			return st, err
		}
		if st.TotalCount > 0 {
			bar.ChangeMax(st.TotalCount)
			bar.Describe(fmt.Sprintf("%s (%d failed)", st.State, st.FailedCount))
		}
		_ = bar.Set(st.DoneCount + st.FailedCount)
		if st.State == "completed" || st.State == "failed" {
			_ = bar.Finish()
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(every):
		}
	}
}

func (c *client) download(ctx context.Context, token, out string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/csv_processing/"+url.PathEscape(token)+"/download", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	tmp := out + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("download: %w", err)
	}
	return n, os.Rename(tmp, out)
}
