package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether w is a terminal (a bar can be redrawn on it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows a run's progress: a bar redrawn in place on a terminal,
// else a plain line when the state changes, every tenth of the run and at
// least every plainEvery. The fraction shown only moves forward: when the
// real total replaces the estimate, it waits for the rows to catch up.
type progress struct {
	w         io.Writer
	bar       *progressbar.ProgressBar // nil: plain lines
	shown     float64                  // 0..1, never decreases
	lastState string
	lastLine  time.Time
	lastFrac  float64
}

const plainEvery = 30 * time.Second

func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, lastFrac: -1}
	if tty {
		p.bar = progressbar.NewOptions(1000, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("splitting"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(false))
	}
	return p
}

// show draws st.
func (p *progress) show(st status, now time.Time) {
	frac := st.Percentage / 100
	total := st.TotalCount
	if st.EstimatedTotal != nil {
		total = *st.EstimatedTotal
	}
	if frac == 0 && total > 0 {
		frac = float64(st.DoneCount+st.FailedCount) / float64(total) // a server that sends no percentage
	}
	if st.State == "completed" {
		frac = 1
	}
	p.shown = max(p.shown, min(frac, 1))
	line := fmt.Sprintf("%s: %s (%.1f%%)", st.State, st.counts(), math.Round(p.shown*1000)/10)
	switch {
	case st.Stalled:
		line += ", stalled: " + st.StateReason
	case st.ETASeconds != nil:
		line += fmt.Sprintf(", %.1f rows/s, ETA %s", st.Rate, seconds(*st.ETASeconds))
	case st.DurationSeconds != nil:
		line += fmt.Sprintf(", took %s, %.1f rows/s", seconds(*st.DurationSeconds), st.Rate)
	}
	if p.bar != nil {
		p.bar.Describe(line)
		_ = p.bar.Set(int(p.shown * 1000))
		if st.ended() {
			_ = p.bar.Finish()
		}
		return
	}
	if st.State != p.lastState || p.shown >= p.lastFrac+0.1 || now.Sub(p.lastLine) >= plainEvery || st.ended() {
		fmt.Fprintln(p.w, line)
		p.lastState, p.lastLine, p.lastFrac = st.State, now, p.shown
	}
}

func (p *progress) close() {
	if p.bar != nil {
		fmt.Fprintln(p.w)
	}
}

// counts is "12 done, 1 failed of 40", the total "~40" while estimated.
func (s status) counts() string {
	total := strconv.Itoa(s.TotalCount)
	if s.EstimatedTotal != nil {
		total = "~" + strconv.Itoa(*s.EstimatedTotal)
	}
	return fmt.Sprintf("%d done, %d failed of %s", s.DoneCount, s.FailedCount, total)
}

// seconds formats a duration in seconds: tenths under a minute.
func seconds(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	if d < time.Minute {
		return strconv.FormatFloat(math.Round(sec*10)/10, 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}
