// Package router maps a report token to the Sidekiq queue its rows run on.
//
// It mirrors the Rails QueueRouter.for_token: "report-" followed by the first
// 16 lowercase hex characters of SHA-1(token). The length is configurable so a
// deployment can widen it, but both sides of a mixed Rails/Go deployment must
// agree on it.
package router

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// QueuePrefix starts every per-token queue name.
const QueuePrefix = "report-"

// DefaultHexLen is how many hex characters of SHA-1(token) the Rails app keeps.
const DefaultHexLen = 16

// ErrBadToken is returned (wrapped) by ValidToken for anything but a canonical UUID.
var ErrBadToken = errors.New("invalid token")

// ErrBadHexLen is returned (wrapped) when Router.HexLen is outside 1..40.
var ErrBadHexLen = errors.New("invalid queue hex length")

// QueueName returns the queue for token with the default length, exactly as
// Rails' QueueRouter.for_token. It does not validate the token.
func QueueName(token string) string {
	return queueName(token, DefaultHexLen)
}

func queueName(token string, n int) string {
	sum := sha1.Sum([]byte(token))
	return QueuePrefix + hex.EncodeToString(sum[:])[:n]
}

// ValidToken reports whether token is a canonical UUID (8-4-4-4-12 hex digits,
// any version, either case). Nothing else is accepted, so a valid token is
// safe inside a Redis key, a storage key and a file path.
func ValidToken(token string) error {
	if len(token) != 36 {
		return fmt.Errorf("%w %q: want a 36-character UUID", ErrBadToken, token)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("%w %q: want '-' at position %d", ErrBadToken, token, i)
			}
		default:
			if !isHex(c) {
				return fmt.Errorf("%w %q: non-hex character at position %d", ErrBadToken, token, i)
			}
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// NewToken returns a fresh random token (UUID v4, lowercase), as SplitCsvJob
// makes with SecureRandom.uuid.
func NewToken() string {
	return uuid.NewString()
}

// Router names per-token queues. The zero value uses DefaultHexLen.
type Router struct {
	// HexLen is how many hex characters of SHA-1(token) follow "report-".
	// Must be 1..40. Defaults to 16 (DefaultHexLen) when zero.
	HexLen int
}

// New returns a Router with hexLen (0 means DefaultHexLen), validated.
func New(hexLen int) (Router, error) {
	r := Router{HexLen: hexLen}
	if err := r.Validate(); err != nil {
		return Router{}, err
	}
	return r, nil
}

func (r Router) hexLen() int {
	if r.HexLen == 0 {
		return DefaultHexLen
	}
	return r.HexLen
}

// Validate checks HexLen.
func (r Router) Validate() error {
	if n := r.hexLen(); n < 1 || n > 2*sha1.Size {
		return fmt.Errorf("%w %d: want 1..%d", ErrBadHexLen, r.HexLen, 2*sha1.Size)
	}
	return nil
}

// For validates token and returns its queue name.
func (r Router) For(token string) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	if err := ValidToken(token); err != nil {
		return "", err
	}
	return queueName(token, r.hexLen()), nil
}

// IsTokenQueue reports whether name looks like a per-token queue of this
// Router's length: "report-" followed by exactly HexLen lowercase hex digits.
// The token itself cannot be recovered from the name (it is a hash).
func (r Router) IsTokenQueue(name string) bool {
	rest, ok := strings.CutPrefix(name, QueuePrefix)
	if !ok || len(rest) != r.hexLen() || r.Validate() != nil {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
