package sidekiq

import (
	"errors"
	"reflect"
	"runtime"
	"strconv"
	"strings"
)

// Ruby stores an exception's backtrace ("path:line:in `method'") when a
// job asks for one (job_retry.rb, "backtrace": true or N). A Go error has
// no stack, so the processor records where the failure surfaced: the
// handler's own location, then the frames of the call that ran it
// (middleware, processor), innermost first, as Ruby lists them. A panic
// has its real stack from the panicking frame on; an error with a
// Backtrace() []string method supplies its own.

// backtracer is an error that carries its own backtrace lines.
type backtracer interface{ Backtrace() []string }

// errorBacktrace is the backtrace to store for err; trace is what the
// processor recorded when the handler returned it.
func errorBacktrace(err error, trace []string) []string {
	var bt backtracer
	if errors.As(err, &bt) {
		return bt.Backtrace()
	}
	var p *PanicError
	if errors.As(err, &p) && len(p.pcs) > 0 {
		return panicFrames(p.pcs)
	}
	return trace
}

// handlerTrace is the location of h followed by the caller's stack from
// skip frames up.
func handlerTrace(h Handler, skip int) []string {
	var lines []string
	if fn := runtime.FuncForPC(reflect.ValueOf(h).Pointer()); fn != nil {
		file, line := fn.FileLine(fn.Entry())
		lines = append(lines, rubyFrame(file, line, fn.Name()))
	}
	pcs := make([]uintptr, 64)
	n := runtime.Callers(skip+1, pcs)
	return append(lines, frameLines(pcs[:n], false)...)
}

// panicCallers records the stack inside a deferred recover.
func panicCallers() []uintptr {
	pcs := make([]uintptr, 64)
	return pcs[:runtime.Callers(3, pcs)]
}

// panicFrames are the frames from the one that panicked outward.
func panicFrames(pcs []uintptr) []string {
	return frameLines(pcs, true)
}

func frameLines(pcs []uintptr, afterPanic bool) []string {
	var lines []string
	frames := runtime.CallersFrames(pcs)
	seenPanic := !afterPanic
	for {
		f, more := frames.Next()
		switch {
		case !seenPanic:
			seenPanic = f.Function == "runtime.gopanic"
		case len(lines) == 0 && strings.HasPrefix(f.Function, "runtime."):
			// panicmem, sigpanic...: not the code that failed
		case f.Function == "runtime.goexit":
		default:
			lines = append(lines, rubyFrame(f.File, f.Line, f.Function))
		}
		if !more {
			break
		}
	}
	return lines
}

// rubyFrame formats a frame as Ruby 3.3 prints a backtrace line.
func rubyFrame(file string, line int, function string) string {
	return file + ":" + strconv.Itoa(line) + ":in `" + function + "'"
}
