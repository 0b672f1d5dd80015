package secreturl

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"redis://:s3cret@h:6379/0":        "redis://:xxxxx@h:6379/0",
		"mysql://u:s3cret@tcp(h:3306)/db": "mysql://u:xxxxx@tcp(h:3306)/db", // does not parse
		"postgres://u:s3c@ret@h/db":       "postgres://u:xxxxx@h/db",
		"redis://h:6379":                  "redis://h:6379",
		"redis://u:p%zz@h/0":              "redis://u:xxxxx@h/0", // bad escape: does not parse
		"sqlite://data/pallarel.sqlite3":  "sqlite://data/pallarel.sqlite3",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestParseErrorHidesTheURL(t *testing.T) {
	t.Parallel()
	_, err := url.Parse("redis://u:s3cret%zz@h:6379/0")
	if err == nil || !strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("url.Parse error no longer quotes the URL (%v): the test is moot", err)
	}
	if got := ParseError(err).Error(); strings.Contains(got, "s3cret") {
		t.Fatalf("ParseError kept the password: %q", got)
	}
}
