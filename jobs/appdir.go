package jobs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// The Rails app's row job writes each row's file into its worker's
// /tmp/reports/<token> (the job's path), and its finalizer zips that folder:
// nothing else. When Ruby and Go workers share a run (a rolling deploy, a
// switch mid-run), each side's files are on its own machine, and each
// finalizer would zip only its own side's rows. With APP_REPORTS_DIR naming
// the folder where Go sees the app's /tmp/reports (the same host, or a
// volume both mount), the two meet there:
//   - Go's row job writes a copy of every row file into <dir>/<token>, so the
//     app's finalizer, whichever process runs it, zips every row;
//   - Go's finalizer adds the app's files from there to its ZIP, for the rows
//     Ruby ran (their names, chosen by the app, do not give the row).
//
// Unset, Go never touches the folder, and a mixed run's ZIP holds the rows
// of the side whose finalizer ends it (README, Known limitations).

// goCopyName matches the names Go gives its copies (render.FileName's
// "row-NNNNNN[-id].ext", after the jid for a row with no number): any
// other file in the folder is the app's.
var goCopyName = regexp.MustCompile(`^([0-9a-f]{24}-)?row-[0-9]{6,}(-.*)?\.[A-Za-z0-9]+$`)

// appRunDir is token's folder in the app's reports dir, or "" when no
// APP_REPORTS_DIR is set. The token, checked by the caller, is a UUID: the
// job's own path argument is not trusted with where Go writes.
func (p *Pipeline) appRunDir(token string) string {
	if p.d.AppReportsDir == "" {
		return ""
	}
	return filepath.Join(p.d.AppReportsDir, token)
}

// copyToAppDir writes a row file into token's folder of the app's reports
// dir, atomically (a dot file renamed: the app's finalizer zips
// Dir["path/*"], which skips dot files), so the app's finalizer never zips
// half a file and a retried row replaces its copy.
func (p *Pipeline) copyToAppDir(token, name string, data []byte) error {
	dir := p.appRunDir(token)
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil { // less the umask, as the app's mkdir_p
		return fmt.Errorf("APP_REPORTS_DIR: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("APP_REPORTS_DIR: %w", err)
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("APP_REPORTS_DIR: copy %s: %w", name, err)
	}
	return nil
}

// eachAppFile calls fn with each file the app's row jobs wrote into
// token's folder (not Go's copies, not dot files), reading the folder a
// chunk at a time: a run Ruby mostly worked may leave a million of them.
// It returns how many there were.
func (p *Pipeline) eachAppFile(token string, fn func(path string) error) (int, error) {
	dir := p.appRunDir(token)
	if dir == "" {
		return 0, nil
	}
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("APP_REPORTS_DIR: %w", err)
	}
	defer f.Close()
	n := 0
	for {
		ents, err := f.ReadDir(1024)
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || goCopyName.MatchString(name) {
				continue
			}
			n++
			if fn != nil {
				if err := fn(filepath.Join(dir, name)); err != nil {
					return n, err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("APP_REPORTS_DIR: %w", err)
		}
	}
}

// removeAppDir deletes token's folder of the app's reports dir once Go
// ended the run (the app's finalizer removes it when it ends one).
func (p *Pipeline) removeAppDir(token string) {
	if dir := p.appRunDir(token); dir != "" {
		p.warnIf(os.RemoveAll(dir), "ended run: remove its APP_REPORTS_DIR folder")
	}
}
