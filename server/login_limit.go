package server

import (
	"sync"
	"time"
)

// Login throttling, per client and in total. A client's failures in a
// minute beyond loginFreeFailures lock that client out for a backoff that
// doubles per further failure, at most loginMaxBackoff: an attacker can
// lock out only the address it guesses from, and not for long. Across all
// clients, failures beyond loginGlobalFailures a minute make every attempt
// wait loginGlobalDelay before its answer: a distributed guesser is
// slowed, never the owner refused.
const (
	loginWindow         = time.Minute
	loginFreeFailures   = 30
	loginMaxBackoff     = 5 * time.Minute
	loginGlobalFailures = 300
	loginGlobalDelay    = time.Second
	loginMaxClients     = 100_000 // memory bound: beyond it the oldest windows go
)

type loginLimiter struct {
	mu      sync.Mutex
	clients map[string]*loginClient
	global  loginClient
}

type loginClient struct {
	windowStart time.Time
	failures    int
	lockedUntil time.Time
}

func (w *loginClient) roll(now time.Time) {
	if now.Sub(w.windowStart) >= loginWindow {
		w.windowStart, w.failures = now, 0
	}
}

// admit tells whether client may try now; when not, how long it must wait.
// delay is the wait every attempt takes under a global flood.
func (l *loginLimiter) admit(client string, now time.Time) (retryAfter, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.global.roll(now)
	if l.global.failures >= loginGlobalFailures {
		delay = loginGlobalDelay
	}
	if c := l.clients[client]; c != nil && now.Before(c.lockedUntil) {
		return c.lockedUntil.Sub(now), delay
	}
	return 0, delay
}

// failed counts a failed attempt of client.
func (l *loginLimiter) failed(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.global.roll(now)
	l.global.failures++
	if l.clients == nil {
		l.clients = map[string]*loginClient{}
	}
	c := l.clients[client]
	if c == nil {
		if len(l.clients) >= loginMaxClients {
			l.prune(now)
		}
		c = &loginClient{windowStart: now}
		l.clients[client] = c
	}
	c.roll(now)
	c.failures++
	if over := c.failures - loginFreeFailures + 1; over > 0 { // the next guess waits
		backoff := min(time.Second<<min(over-1, 20), loginMaxBackoff)
		c.lockedUntil = now.Add(backoff)
	}
}

// succeeded clears client's failures.
func (l *loginLimiter) succeeded(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, client)
}

func (l *loginLimiter) prune(now time.Time) {
	for k, c := range l.clients {
		if now.Sub(c.windowStart) >= loginWindow && now.After(c.lockedUntil) {
			delete(l.clients, k)
		}
	}
	for k := range l.clients { // still full: drop any
		if len(l.clients) < loginMaxClients {
			break
		}
		delete(l.clients, k)
	}
}
