package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// State is a worker's state as the master sees it.
type State string

// The worker states.
const (
	Ready        State = "ready"
	Suspended    State = "suspended"
	Draining     State = "draining"
	Unhealthy    State = "unhealthy"
	Lost         State = "lost"
	Disconnected State = "disconnected"
)

// Worker is one row of the worker table.
type Worker struct {
	ID       uint64
	Name     string
	Hostname string
	OS       string
	Arch     string
	Labels   map[string]string
	// Slots is how many attempts the worker runs at once.
	Slots int
	// Session identifies the worker's current connection; a call carrying
	// an older session is from a worker that has since rejoined.
	Session string
	// Instance identifies the worker's process.
	Instance string

	Joined   time.Time
	LastSeen time.Time
	// Connected is true while the worker's event stream is open.
	Connected bool
	Suspended bool
	Draining  bool
	Healthy   bool
	// Reason says why the worker is unhealthy, lost or disconnected.
	Reason string

	// Running holds the attempts assigned to the worker that have not
	// ended.
	Running map[uint64]bool
}

// State returns the worker's state at now, given the heartbeat TTL. The
// order matters: a suspended worker that died is shown lost.
func (w *Worker) State(now time.Time, ttl time.Duration) State {
	switch {
	case now.Sub(w.LastSeen) > ttl:
		return Lost
	case !w.Connected:
		return Disconnected
	case w.Suspended:
		return Suspended
	case w.Draining:
		return Draining
	case !w.Healthy:
		return Unhealthy
	}
	return Ready
}

// Free returns how many more attempts the worker can take.
func (w *Worker) Free() int { return w.Slots - len(w.Running) }

// clone returns a copy that shares nothing with w.
func (w *Worker) clone() Worker {
	c := *w
	c.Labels = maps.Clone(w.Labels)
	c.Running = maps.Clone(w.Running)
	return c
}

// Fits reports whether the worker carries every label and the platform.
func (w *Worker) Fits(labels map[string]string, os, arch string) bool {
	if os != "" && w.OS != os || arch != "" && w.Arch != arch {
		return false
	}
	for k, v := range labels {
		if w.Labels[k] != v {
			return false
		}
	}
	return true
}

// sortedIDs returns the keys of m in ascending order.
func sortedIDs[V any](m map[uint64]V) []uint64 {
	return slices.Sorted(maps.Keys(m))
}

// CheckWorkerName refuses a worker name that is empty, longer than 64, or
// holds anything but letters, digits, '.', '_' and '-': names are shown in
// tables and used as keys.
func CheckWorkerName(name string) error {
	ok := name != "" && len(name) <= 64
	for _, r := range name {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-')
	}
	if !ok {
		return fmt.Errorf("worker name %q: use 1 to 64 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}
