package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runOne starts the server binary in one mode, uploads the CSV, waits for
// the ZIP, and prints a RESULT line with the time from upload to ZIP.
//
// Modes: embedded = no REDIS_URL (the all-in-one default: a redis-server
// child with its AOF in DATA_DIR, or miniredis when none is installed);
// miniredis = the same forced to miniredis; external = REDIS_URL to a
// private redis-server (no persistence, as the other benchmarks) and
// -workers, so the workers run in the server process as in all-in-one.
func runOne(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory with the server binary")
	file := fs.String("csv", "", "CSV to upload")
	rows := fs.Int("rows", 0, "data rows in the CSV")
	typ := fs.String("type", "text", "report type")
	mode := fs.String("mode", "embedded", "embedded, miniredis or external")
	deadline := fs.Duration("deadline", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	csvData, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "allinonebench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "DATA_DIR=" + filepath.Join(tmp, "data")}
	srvArgs := []string{"-addr", "127.0.0.1:0", "-embedded-redis", "127.0.0.1:0"}
	switch *mode {
	case "embedded":
	case "miniredis":
		srvArgs = append(srvArgs, "-redis-server", "miniredis")
	case "external":
		port, stop, err := startRedis(tmp)
		if err != nil {
			return err
		}
		defer stop()
		env = append(env, "REDIS_URL=redis://127.0.0.1:"+port+"/0")
		srvArgs = append(srvArgs, "-workers")
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	cmd := exec.Command(filepath.Join(*bin, "server"), srvArgs...)
	cmd.Env = env
	logf, err := os.Create(filepath.Join(tmp, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	base, err := waitURL(stdout)
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", *mode, err, tail(logf.Name()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	t0 := time.Now()
	token, err := upload(ctx, base, csvData, *typ)
	if err != nil {
		return err
	}
	var peakRSS int64
	var st status
	for {
		if st, err = getStatus(ctx, base, token); err != nil {
			return err
		}
		if rss, err := vmRSS(cmd.Process.Pid); err == nil {
			peakRSS = max(peakRSS, rss)
		}
		if st.State == "completed" || st.State == "failed" {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: not finished within %v: %+v\n%s", *mode, *deadline, st, tail(logf.Name()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	secs := time.Since(t0).Seconds()
	if st.State != "completed" || st.DoneCount != *rows {
		return fmt.Errorf("%s: run ended %+v, want %d rows done", *mode, st, *rows)
	}
	kind := *mode
	if *mode == "embedded" {
		if b, _ := os.ReadFile(logf.Name()); bytes.Contains(b, []byte("embedded redis-server started")) {
			kind = "embedded-redis-server"
		} else {
			kind = "embedded-miniredis"
		}
	}
	fmt.Printf("RESULT allinone mode=%s kind=%s type=%s rows=%d zip_ready_s=%.3f rate=%.0f server_peak_rss_mb=%.1f\n",
		*mode, kind, *typ, *rows, secs, float64(*rows)/secs, float64(peakRSS)/1024)
	return nil
}

// startRedis starts a private redis-server with no persistence, as the
// other benchmarks do, and returns its port and a stop function.
func startRedis(dir string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis-external.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for range 200 {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return port, stop, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("redis-server did not listen")
}

var urlRE = regexp.MustCompile(`Upload a CSV:\s+(http://\S+?)/\s*$`)

func waitURL(stdout io.Reader) (string, error) {
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case u, ok := <-found:
		if !ok {
			return "", errors.New("server exited before printing its URL")
		}
		return u, nil
	case <-time.After(2 * time.Minute):
		return "", errors.New("no URL printed within 2 min")
	}
}

var client = &http.Client{Timeout: 5 * time.Minute}

func upload(ctx context.Context, base string, data []byte, typ string) (string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csv_type", typ)
	_ = mw.WriteField("encoding", "auto")
	fw, _ := mw.CreateFormFile("csv_file", "bench.csv")
	fw.Write(data)
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/csv_processing", &body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("upload: %s: %s", resp.Status, b)
	}
	var s struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Token == "" {
		return "", fmt.Errorf("upload answer %s: %v", b, err)
	}
	return s.Token, nil
}

type status struct {
	State       string `json:"state"`
	TotalCount  int    `json:"total_count"`
	DoneCount   int    `json:"done_count"`
	FailedCount int    `json:"failed_count"`
}

func getStatus(ctx context.Context, base, token string) (status, error) {
	var s status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/csv_processing/"+token, nil)
	if err != nil {
		return s, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("status: %s: %s", resp.Status, b)
	}
	return s, json.Unmarshal(b, &s)
}

// vmRSS reads /proc/pid/status VmRSS in KiB.
func vmRSS(pid int) (int64, error) {
	return statusKiB(pid, "VmRSS:")
}

func statusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s", field)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
