// Package logformat makes the binaries' loggers from LOG_FORMAT: slog's
// text handler by default, or its JSON handler (one object a line, with
// time, level, msg and each attribute as a field) that CloudWatch Logs
// Insights and other log stores query by field.
package logformat

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Format is how log lines are written.
type Format string

const (
	Text Format = "text"
	JSON Format = "json"
)

// Parse reads LOG_FORMAT through lookup: text (the default) or json.
func Parse(lookup func(string) (string, bool)) (Format, error) {
	v, _ := lookup("LOG_FORMAT")
	switch f := Format(strings.ToLower(strings.TrimSpace(v))); f {
	case "", Text:
		return Text, nil
	case JSON:
		return JSON, nil
	default:
		return Text, fmt.Errorf("LOG_FORMAT %q: want text or json", v)
	}
}

// New is a logger writing to w in format f at level.
func New(w io.Writer, f Format, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if f == JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Problem reports an error met before the binary runs (configuration,
// flags) in the log's format: a JSON line at ERROR for json, else the
// plain "what: err" lines a person reads.
func Problem(w io.Writer, f Format, log *slog.Logger, what string, err error) {
	if f == JSON {
		log.Error(what, "err", err.Error())
		return
	}
	fmt.Fprintf(w, "%s:\n%v\n", what, err)
}
