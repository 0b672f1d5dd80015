//go:build !chaoslong

package chaos

// sized picks the short form's input size; `make chaos` builds with
// -tags chaoslong for the long one.
func sized(short, long int) int { return short }
