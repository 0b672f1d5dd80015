package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pallarel/pallarel/csvrows"
)

// headerCheck reads an upload's CSV as the split will read it (csvrows, the
// split's options) while the bytes stream into storage: the header row and
// the first data row. What cannot succeed (too many columns, no usable
// header, no data rows) is refused with the reason before the run exists,
// instead of the run failing later.
//
// The check runs in its own goroutine on a pipe the upload is copied into;
// once it has its answer it closes the pipe and the upload streams on
// unwatched.
type headerCheck struct {
	pw      *io.PipeWriter
	done    chan struct{}
	stopped bool // the check has its answer: nothing more is copied
	headers []string
	err     error // why the CSV cannot succeed, nil once it can
}

// errCheckDone closes the pipe once the check has its answer.
var errCheckDone = errors.New("header check done")

func startHeaderCheck(encoding string) *headerCheck {
	pr, pw := io.Pipe()
	h := &headerCheck{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.headers, h.err = readHead(pr, encoding)
		pr.CloseWithError(errCheckDone)
	}()
	return h
}

// readHead reads the header and one data row of r.
func readHead(r io.Reader, encoding string) ([]string, error) {
	cr, err := csvrows.NewReader(r, csvrows.Options{Encoding: encoding})
	if err != nil {
		return nil, err
	}
	if _, err := cr.Next(); err != nil {
		if errors.Is(err, io.EOF) {
			return cr.Headers(), errNoRows
		}
		return cr.Headers(), err
	}
	return cr.Headers(), nil // a first row, even a malformed one, is a row to report on
}

var errNoRows = errors.New("no data rows")

// watch returns r copied into the check as it is read. The reader fails as
// soon as the check refuses the CSV, and at the end of the part waits for
// the check's answer, so a refused CSV never reaches a run.
func (h *headerCheck) watch(r io.Reader) io.Reader { return &watchedReader{r: r, h: h} }

type watchedReader struct {
	r io.Reader
	h *headerCheck
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	h := w.h
	if n > 0 && !h.stopped {
		if _, werr := h.pw.Write(p[:n]); werr != nil {
			h.stopped = true // errCheckDone: the check has its answer
		}
	}
	if h.stopped {
		<-h.done
		if h.err != nil {
			return 0, refusal(h.err)
		}
	}
	if errors.Is(err, io.EOF) && !h.stopped {
		h.pw.Close()
		h.stopped = true
		<-h.done
		if h.err != nil {
			return 0, refusal(h.err)
		}
	}
	return n, err
}

// close ends the check when the part was not read to its end.
func (h *headerCheck) close() {
	h.pw.CloseWithError(io.ErrUnexpectedEOF)
	<-h.done
}

// refusal is the answer to a CSV the check refused.
func refusal(err error) error {
	switch {
	case errors.Is(err, errNoRows):
		return userErr(http.StatusUnprocessableEntity, "err_no_rows", "")
	case errors.Is(err, csvrows.ErrTooManyColumns):
		return userErr(http.StatusUnprocessableEntity, "err_too_many_columns", detailOf(err, csvrows.ErrTooManyColumns))
	case errors.Is(err, csvrows.ErrBinary):
		return userErr(http.StatusUnsupportedMediaType, "err_not_csv", "")
	case errors.Is(err, csvrows.ErrEmpty):
		return userErr(http.StatusUnprocessableEntity, "err_no_rows", "no header row either")
	case errors.Is(err, csvrows.ErrNoHeader), errors.Is(err, csvrows.ErrDuplicateHeader):
		return userErr(http.StatusUnprocessableEntity, "err_bad_header", err.Error())
	}
	return badBody(fmt.Errorf("read the CSV header: %w", err))
}

// detailOf is err's message without its sentinel's prefix.
func detailOf(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}
