package router

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// contractToken is the example token from the Rails contract.
const contractToken = "0f8fad5b-d9cb-469f-a165-70867728950e"

// contractSHA1 was computed with: printf %s 0f8fad5b-d9cb-469f-a165-70867728950e | sha1sum
const contractSHA1 = "a432dda8147b76606b90bc493891355051cec293"

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestQueueNameContract(t *testing.T) {
	t.Parallel()
	if got := sha1Hex(contractToken); got != contractSHA1 {
		t.Fatalf("sha1 sanity: got %s want %s", got, contractSHA1)
	}
	want := "report-a432dda8147b7660"
	if got := QueueName(contractToken); got != want {
		t.Fatalf("QueueName = %q, want %q", got, want)
	}
	got, err := Router{}.For(contractToken)
	if err != nil || got != want {
		t.Fatalf("Router{}.For = %q, %v; want %q", got, err, want)
	}
}

func TestRouterFor(t *testing.T) {
	t.Parallel()
	upper := strings.ToUpper(contractToken)
	tests := []struct {
		name   string
		hexLen int
		token  string
		want   string
		err    error
	}{
		{"default length", 0, contractToken, "report-" + contractSHA1[:16], nil},
		{"explicit 16", 16, contractToken, "report-a432dda8147b7660", nil},
		{"length 1", 1, contractToken, "report-a", nil},
		{"length 40", 40, contractToken, "report-" + contractSHA1, nil},
		{"length 8", 8, contractToken, "report-a432dda8", nil},
		// Uppercase is accepted but hashed as given, as Ruby would.
		{"uppercase token", 16, upper, "report-" + sha1Hex(upper)[:16], nil},
		{"length 41", 41, contractToken, "", ErrBadHexLen},
		{"negative length", -1, contractToken, "", ErrBadHexLen},
		{"empty token", 16, "", "", ErrBadToken},
		{"braces", 16, "{" + contractToken + "}", "", ErrBadToken},
		{"urn", 16, "urn:uuid:" + contractToken, "", ErrBadToken},
		{"no dashes", 16, strings.ReplaceAll(contractToken, "-", ""), "", ErrBadToken},
		{"path traversal", 16, "../../etc/passwd-aaaa-bbbb-cccc-dddddddd", "", ErrBadToken},
		{"non hex", 16, "0f8fad5b-d9cb-469f-a165-70867728950g", "", ErrBadToken},
		{"dash moved", 16, "0f8fad5bd-9cb-469f-a165-70867728950e", "", ErrBadToken},
		{"trailing newline", 16, contractToken + "\n", "", ErrBadToken},
		{"space", 16, " 0f8fad5b-d9cb-469f-a165-70867728950", "", ErrBadToken},
		{"redis glob", 16, "0f8fad5b-d9cb-469f-a165-7086772895*e", "", ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Router{HexLen: tt.hexLen}.For(tt.token)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("For(%q) err = %v, want %v", tt.token, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("For(%q): %v", tt.token, err)
			}
			if got != tt.want {
				t.Fatalf("For(%q) = %q, want %q", tt.token, got, tt.want)
			}
		})
	}
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	good := []string{
		contractToken,
		strings.ToUpper(contractToken),
		"00000000-0000-0000-0000-000000000000", // nil UUID, any version
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8", // v1
		"6BA7b810-9DAD-11d1-80B4-00c04fd430C8", // mixed case
	}
	for _, tok := range good {
		if err := ValidToken(tok); err != nil {
			t.Errorf("ValidToken(%q) = %v, want nil", tok, err)
		}
	}
	bad := []string{"", "x", contractToken[:35], contractToken + "0", "0f8fad5b-d9cb-469f-a165-70867728950/", "0f8fad5b\x00d9cb-469f-a165-70867728950e"}
	for _, tok := range bad {
		if err := ValidToken(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("ValidToken(%q) = %v, want ErrBadToken", tok, err)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	r, err := New(0)
	if err != nil || r.HexLen != 0 {
		t.Fatalf("New(0) = %+v, %v", r, err)
	}
	for _, n := range []int{1, 16, 40} {
		if _, err := New(n); err != nil {
			t.Errorf("New(%d): %v", n, err)
		}
	}
	for _, n := range []int{-5, 41, 100} {
		if _, err := New(n); !errors.Is(err, ErrBadHexLen) {
			t.Errorf("New(%d) = %v, want ErrBadHexLen", n, err)
		}
	}
}

func TestIsTokenQueue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		hexLen int
		name   string
		want   bool
	}{
		{0, QueueName(contractToken), true},
		{16, "report-a432dda8147b7660", true},
		{16, "report-A432DDA8147B7660", false},
		{16, "report-a432dda8147b766", false},
		{16, "report-a432dda8147b76600", false},
		{16, "report", false},
		{16, "report-", false},
		{16, "default", false},
		{16, "reports-a432dda8147b7660", false},
		{16, "report-a432dda8147b766g", false},
		{8, "report-a432dda8", true},
		{8, "report-a432dda8147b7660", false},
		{40, "report-" + contractSHA1, true},
		{41, "report-" + contractSHA1 + "0", false},
	}
	for _, tt := range tests {
		if got := (Router{HexLen: tt.hexLen}).IsTokenQueue(tt.name); got != tt.want {
			t.Errorf("Router{%d}.IsTokenQueue(%q) = %v, want %v", tt.hexLen, tt.name, got, tt.want)
		}
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok := NewToken()
		if err := ValidToken(tok); err != nil {
			t.Fatal(err)
		}
		if tok != strings.ToLower(tok) {
			t.Fatalf("token %q not lowercase", tok)
		}
		u := uuid.MustParse(tok)
		if u.Version() != 4 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("token %q: version %d variant %v", tok, u.Version(), u.Variant())
		}
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
		q, err := Router{}.For(tok)
		if err != nil || !(Router{}).IsTokenQueue(q) {
			t.Fatalf("For(%q) = %q, %v", tok, q, err)
		}
	}
}

func FuzzValidToken(f *testing.F) {
	f.Add(contractToken)
	f.Add("../x")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidToken(s) != nil {
			return
		}
		// Anything accepted must parse as a UUID and contain no path or glob characters.
		if _, err := uuid.Parse(s); err != nil {
			t.Fatalf("accepted %q but uuid.Parse: %v", s, err)
		}
		if strings.ContainsAny(s, "/\\.*?[]{}: \x00") {
			t.Fatalf("accepted unsafe %q", s)
		}
	})
}
