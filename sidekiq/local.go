package sidekiq

import "sync"

// runningHere lists the identities of the servers running in this process,
// in start order. It is process-wide on purpose: several servers of one
// process (separate servers, or the capsules of a Process) share a pid, and
// only the process itself knows which of the identities carrying that pid
// are alive. A recoverer must not take a sibling's in-flight jobs for a
// previous run's, and the Web UI must count the process's memory once.
var runningHere = &localServers{}

type localServers struct {
	mu  sync.Mutex
	ids []localServer
}

type localServer struct {
	id string
	// beats: the identity has its own entry in processes (a Server of its
	// own, or a Process); a capsule's has none.
	beats bool
}

func (l *localServers) add(id string, beats bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, localServer{id: id, beats: beats})
}

func (l *localServers) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.ids {
		if x.id == id {
			l.ids = append(l.ids[:i], l.ids[i+1:]...)
			return
		}
	}
}

// has tells whether id is a server or capsule running in this process now.
func (l *localServers) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.ids {
		if x.id == id {
			return true
		}
	}
	return false
}

// reportsMemory tells whether id is the one process entry of this process
// whose heartbeat carries the process's RSS: the oldest running. The others
// report 0, so the Web UI's per-process and total memory count it once.
func (l *localServers) reportsMemory(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.ids {
		if x.beats {
			return x.id == id
		}
	}
	return true
}
