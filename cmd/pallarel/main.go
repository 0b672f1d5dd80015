// Command pallarel submits a CSV to a Pallarel server, shows a progress bar
// while its rows are made into reports, and downloads the ZIP:
//
//	pallarel [-server http://localhost:8080] [-type xlsx|pdf|text] [-encoding auto]
//	         [-template t.xlsx] [-webhook URL] [-o report.zip] [-token AUTH_TOKEN] file.csv
//
// and controls a run by its token (flags go before the command):
//
//	pallarel [flags] status TOKEN   its state, counts, rate and ETA
//	pallarel [flags] cancel TOKEN   cancel it
//	pallarel [flags] retry TOKEN    run its failed rows again, follow it and download the new ZIP
//	pallarel [flags] failed TOKEN   list its failed rows with their reasons (-page N)
//
// Exit status: 0 all rows done, 1 some rows failed, 2 a bad command line,
// 3 the run failed or was cancelled, 4 the request failed (the server
// cannot be reached, or refused the upload). With stderr not a terminal the
// progress is written as plain lines instead of a redrawn bar.
package main

import (
	"bytes"
	"cmp"
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
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "pallarel: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// Exit statuses, for scripts.
const (
	exitOK         = 0
	exitRowsFailed = 1
	exitUsage      = 2
	exitRunEnded   = 3 // failed or cancelled
	exitRequest    = 4
)

type usageError struct{ error }

// endError is a run that ended other than with all its rows done.
type endError struct {
	code int
	error
}

// exitCode is the exit status for err (nil: 0).
func exitCode(err error) int {
	var u usageError
	var e endError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &e):
		return e.code
	}
	return exitRequest
}

// serverError is a 4xx or 5xx answer, with the server's own message.
type serverError struct {
	status int
	code   string // the answer's "code", when it has one (e.g. nothing_to_retry)
	msg    string
}

func (e *serverError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

type options struct {
	server, typ, encoding, template, webhook, out, token string
	poll                                                 time.Duration
	page                                                 int
}

// commands take a run's token instead of a CSV file.
var commands = map[string]bool{"status": true, "cancel": true, "retry": true, "failed": true}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pallarel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.server, "server", envOr("PALLAREL_SERVER", "http://localhost:8080"), "server URL (env PALLAREL_SERVER)")
	fs.StringVar(&o.typ, "type", "xlsx", "report type: xlsx, pdf or text")
	fs.StringVar(&o.encoding, "encoding", "auto", "CSV encoding: auto, utf-8 or shift_jis")
	fs.StringVar(&o.template, "template", "", "XLSX template whose {{column}} cells are filled per row")
	fs.StringVar(&o.out, "o", "", "where to write the ZIP (default report-<token>.zip)")
	// Not the flag's default: -h prints defaults, and this one is a secret.
	fs.StringVar(&o.token, "token", "", "bearer token when the server has AUTH_TOKEN set (default: env AUTH_TOKEN)")
	fs.DurationVar(&o.poll, "poll", 500*time.Millisecond, "how often to ask for progress")
	fs.Usage = func() { usage(fs) }
	fs.StringVar(&o.webhook, "webhook", "", "URL the server calls when the run ends (http or https)")
	fs.IntVar(&o.page, "page", 1, "page of failed rows to list (failed)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h: the usage was asked for, and printed
		}
		return usageError{err}
	}
	if o.token == "" {
		o.token = os.Getenv("AUTH_TOKEN")
	}
	c := &client{base: strings.TrimRight(o.server, "/"), token: o.token, http: &http.Client{}}
	if o.poll <= 0 {
		return usageError{errors.New("-poll must be more than 0")}
	}
	if fs.NArg() == 2 && commands[fs.Arg(0)] {
		return c.command(ctx, fs.Arg(0), fs.Arg(1), o, stdout, stderr)
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("give exactly one CSV file, or a command (status, cancel, retry, failed) and a token")}
	}
	if err := checkUpload(fs.Arg(0), &o); err != nil {
		return err
	}
	sub, err := c.submit(ctx, fs.Arg(0), o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "submitted %s as %s (queue %s)\n", fs.Arg(0), sub.Token, sub.Queue)
	return c.followAndDownload(ctx, sub.Token, o, stdout, stderr)
}

// followAndDownload follows the run to its end and downloads its ZIP.
func (c *client) followAndDownload(ctx context.Context, token string, o options, stdout, stderr io.Writer) error {
	st, err := c.follow(ctx, token, o.poll, stderr)
	if err != nil && ctx.Err() != nil {
		// Ctrl-C stops following, not the run.
		return fmt.Errorf("stopped following; run %s goes on on the server.\n"+
			"  progress: %s/csv_processing/%s\n  download: %s/csv_processing/%s/download (once completed)",
			token, c.base, token, c.base, token)
	}
	if err != nil {
		return err
	}
	if st.State != "completed" {
		return endError{exitRunEnded, fmt.Errorf("run %s %s: %s", token, st.State, cmp.Or(st.StateReason, st.LastError))}
	}
	out := o.out
	if out == "" {
		out = "report-" + token + ".zip"
	}
	n, err := c.download(ctx, token, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes, %d rows done, %d failed\n", out, n, st.DoneCount, st.FailedCount)
	if st.FailedCount > 0 {
		return endError{exitRowsFailed, fmt.Errorf("%d rows failed; `pallarel failed %s` lists them", st.FailedCount, token)}
	}
	return nil
}

// reportTypes and encodings are what the server takes.
var (
	reportTypes = []string{"xlsx", "pdf", "text"}
	encodings   = []string{"auto", "utf-8", "shift_jis", "cp932"}
)

// checkUpload checks the flags of an upload before anything is sent, so a
// mistake costs no upload.
func checkUpload(path string, o *options) error {
	o.typ, o.encoding = strings.ToLower(o.typ), strings.ToLower(o.encoding)
	if !slices.Contains(reportTypes, o.typ) {
		return usageError{fmt.Errorf("-type %q: the server makes xlsx, pdf or text", o.typ)}
	}
	if !slices.Contains(encodings, o.encoding) {
		return usageError{fmt.Errorf("-encoding %q: one of %s", o.encoding, strings.Join(encodings, ", "))}
	}
	if o.template != "" {
		if o.typ != "xlsx" {
			return usageError{fmt.Errorf("-template applies to -type xlsx only, not %s", o.typ)}
		}
		if _, err := os.Stat(o.template); err != nil {
			return usageError{fmt.Errorf("-template: %w", err)}
		}
	}
	if o.webhook != "" {
		if u, err := url.Parse(o.webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError{fmt.Errorf("-webhook %q: an http or https URL", o.webhook)}
		}
	}
	if _, err := os.Stat(path); err != nil {
		return usageError{err}
	}
	return nil
}

// usage is -h: what the command does, its argument and its flags.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, `Usage: pallarel [flags] FILE.csv
       pallarel [flags] COMMAND TOKEN

Uploads FILE.csv to a Pallarel server, shows the progress while each row
becomes a report file, and downloads the ZIP of them. A COMMAND works on
the run the upload printed the TOKEN of.

Commands:
  status TOKEN   the run's state, counts, rate and ETA (or how long it took)
  cancel TOKEN   cancel the run; the rows already done stay done
  retry TOKEN    run the failed rows again, follow the run and download the
                 new ZIP (-o); says "nothing to retry" when every failed row
                 failed to parse (fix the CSV and upload it again)
  failed TOKEN   list the failed rows with their reasons, 50 a page (-page)

Examples:
  pallarel list.csv                                  # xlsx reports, server at localhost:8080
  pallarel -type pdf -o reports.zip list.csv
  pallarel -template invoice.xlsx list.csv           # fill {{column}} cells of a template
  pallarel -server https://reports.example.com -token "$AUTH_TOKEN" list.csv
  pallarel status 0b6d…                              # flags go before the command
  pallarel -page 2 failed 0b6d…
  pallarel -o again.zip retry 0b6d…

Exit status:
  0  all rows done          1  some rows failed (the ZIP is written)
  2  bad command line       3  the run failed or was cancelled
  4  the request failed (server unreachable, or the upload refused)

Ctrl-C stops following; the run goes on on the server and the command
prints where to fetch it. When stderr is not a terminal the progress is
written as plain lines.

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
	State           string   `json:"state"`
	StateReason     string   `json:"state_reason"`
	Stalled         bool     `json:"stalled"`
	TotalCount      int      `json:"total_count"`
	EstimatedTotal  *int     `json:"estimated_total"`
	DoneCount       int      `json:"done_count"`
	FailedCount     int      `json:"failed_count"`
	Percentage      float64  `json:"percentage"`
	Rate            float64  `json:"rate"`
	ETASeconds      *float64 `json:"eta_seconds"`
	DurationSeconds *float64 `json:"duration_seconds"`
	LastError       string   `json:"last_error"`
}

// ended reports whether the run reached a final state.
func (s status) ended() bool {
	return s.State == "completed" || s.State == "failed" || s.State == "cancelled"
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
		var e struct{ Error, Code string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error // the server's message, not its JSON
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, &serverError{status: resp.StatusCode, code: e.Code, msg: msg})
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
			// The fields go first: the server checks them before it reads the file.
			for _, kv := range [][2]string{{"csv_type", o.typ}, {"encoding", o.encoding}, {"webhook_url", o.webhook}} {
				if err := mw.WriteField(kv[0], kv[1]); err != nil {
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
	// The type rides in the query too, so a server that cannot make it
	// says so before the file is sent.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/csv_processing?csv_type="+url.QueryEscape(o.typ), pr)
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

// follow polls the run's status until it ends, drawing a bar on a
// terminal and plain lines elsewhere (a log file, a CI job).
func (c *client) follow(ctx context.Context, token string, every time.Duration, w io.Writer) (status, error) {
	p := newProgress(w, isTerminal(w))
	defer p.close()
	for {
		st, err := c.status(ctx, token)
		if err != nil {
			return st, err
		}
		p.show(st, time.Now())
		if st.ended() {
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

// command runs status, cancel, retry or failed on the run token.
func (c *client) command(ctx context.Context, cmd, token string, o options, stdout, stderr io.Writer) error {
	switch cmd {
	case "status":
		st, err := c.status(ctx, token)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s", token, st.State)
		if st.StateReason != "" {
			fmt.Fprintf(stdout, " (%s)", st.StateReason)
		}
		fmt.Fprintf(stdout, ", %s", st.counts())
		switch {
		case st.Stalled:
			fmt.Fprint(stdout, ", stalled")
		case st.DurationSeconds != nil:
			fmt.Fprintf(stdout, ", took %s, %.1f rows/s", seconds(*st.DurationSeconds), st.Rate)
		case st.ETASeconds != nil:
			fmt.Fprintf(stdout, ", %.1f rows/s, ETA %s", st.Rate, seconds(*st.ETASeconds))
		}
		fmt.Fprintln(stdout)
		switch {
		case st.State == "failed" || st.State == "cancelled":
			return endError{exitRunEnded, fmt.Errorf("run %s %s", token, st.State)}
		case st.FailedCount > 0 && st.State == "completed":
			return endError{exitRowsFailed, fmt.Errorf("%d rows failed", st.FailedCount)}
		}
		return nil
	case "cancel":
		if err := c.post(ctx, token, "cancel", nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: cancelled\n", token)
		return nil
	case "retry":
		var res struct {
			Rows int `json:"rows"`
		}
		if err := c.post(ctx, token, "retry", &res); err != nil {
			var se *serverError
			if errors.As(err, &se) && se.code == "nothing_to_retry" {
				fmt.Fprintf(stderr, "%s: nothing to retry: %s\n", token, se.msg)
				return endError{exitRowsFailed, errors.New("nothing to retry")}
			}
			return err
		}
		fmt.Fprintf(stderr, "retrying %d failed rows of %s\n", res.Rows, token)
		return c.followAndDownload(ctx, token, o, stdout, stderr)
	case "failed":
		if o.page < 1 {
			return usageError{errors.New("-page must be 1 or more")}
		}
		var page struct {
			Rows []struct {
				Row   int    `json:"row"`
				Error string `json:"error"`
			} `json:"rows"`
			Total int `json:"total"`
			Page  int `json:"page"`
			Pages int `json:"pages"`
		}
		if err := c.get(ctx, "/csv_processing/"+url.PathEscape(token)+"/failed?page="+strconv.Itoa(o.page), &page); err != nil {
			return err
		}
		for _, r := range page.Rows {
			fmt.Fprintf(stdout, "%d\t%s\n", r.Row, r.Error)
		}
		fmt.Fprintf(stderr, "%d failed rows; page %d of %d\n", page.Total, page.Page, page.Pages)
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}

// post sends POST /csv_processing/<token>/<action> as JSON and decodes the
// answer into res when not nil.
func (c *client) post(ctx context.Context, token, action string, res any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/csv_processing/"+url.PathEscape(token)+"/"+action, bytes.NewReader([]byte("{}")))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	defer resp.Body.Close()
	if res == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(res)
}

// get fetches path as JSON into res.
func (c *client) get(ctx context.Context, path string, res any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(res)
}
