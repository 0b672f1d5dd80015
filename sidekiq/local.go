package sidekiq

import "sync"

// runningHere lists the identities of the servers running in this process,
// in start order. It is process-wide on purpose: several servers of one
// process (the all-in-one mode's report worker and token workers) share a
// pid, and only the process itself knows which of the identities carrying
// that pid are alive. A recoverer must not take a sibling's in-flight jobs
// for a previous run's, and the Web UI must count the process's memory once.
var runningHere = &localServers{}

type localServers struct {
	mu  sync.Mutex
	ids []string
}

func (l *localServers) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, id)
}

func (l *localServers) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.ids {
		if x == id {
			l.ids = append(l.ids[:i], l.ids[i+1:]...)
			return
		}
	}
}

// has tells whether id is a server running in this process now.
func (l *localServers) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.ids {
		if x == id {
			return true
		}
	}
	return false
}

// reportsMemory tells whether id is the one server of this process whose
// heartbeat carries the process's RSS: the oldest running. The others
// report 0, so the Web UI's per-process and total memory count it once.
func (l *localServers) reportsMemory(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids) == 0 || l.ids[0] == id
}
