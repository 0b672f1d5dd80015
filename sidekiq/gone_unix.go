//go:build unix

package sidekiq

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// goneFromHost tells whether the process of a Sidekiq identity
// ("hostname:pid:nonce") ran on host and is gone: no process has its pid,
// or it had this process's pid but is none of the servers running in this
// process (a previous run of this server in a container, where the server
// is pid 1 every time). Servers of this process (the all-in-one's report
// and token workers) are alive to each other whatever their pid says.
func goneFromHost(host string) func(identity string) bool {
	return goneFromHostOf(host, runningHere)
}

func goneFromHostOf(host string, here *localServers) func(identity string) bool {
	self := os.Getpid()
	return func(identity string) bool {
		rest, _, ok := cutLast(identity, ":") // the nonce
		if !ok {
			return false
		}
		h, pidText, ok := cutLast(rest, ":")
		if !ok || h != host {
			return false
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 {
			return false
		}
		if pid == self {
			return !here.has(identity)
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
