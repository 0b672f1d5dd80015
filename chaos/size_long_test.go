//go:build chaoslong

package chaos

func sized(short, long int) int { return long }
