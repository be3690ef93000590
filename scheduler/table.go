package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// JoinInfo is what a worker announces when it joins.
type JoinInfo struct {
	Name     string
	Hostname string
	OS       string
	Arch     string
	Labels   map[string]string
	Slots    int
	Session  string
	Instance string
	// Running lists attempts the worker still runs from before.
	Running []uint64
}

// Join adds a worker to the table, or takes back a known name: the worker
// keeps its ID and whether it was suspended. It returns the worker and the
// attempts of info.Running that the worker must stop. A name held by a
// live worker of another process is refused with ErrNameTaken: two
// workers under one name would take each other's jobs away.
func (e *Engine) Join(info JoinInfo, now time.Time) (Worker, []uint64, error) {
	w := e.byName[info.Name]
	if w != nil && w.Instance != info.Instance && w.Connected &&
		now.Sub(w.LastSeen) <= e.cfg.TTL {
		return w.clone(), nil, fmt.Errorf("worker name %q is held by a live worker on %s: %w",
			info.Name, w.Hostname, ErrNameTaken)
	}
	if w == nil {
		e.lastID++
		w = &Worker{ID: e.lastID, Name: info.Name, Joined: now, Running: map[uint64]bool{},
			Suspended: e.suspended[info.Name]}
		e.workers[w.ID] = w
		e.byName[w.Name] = w
	}
	w.Hostname, w.OS, w.Arch = info.Hostname, info.OS, info.Arch
	w.Labels, w.Slots, w.Session = maps.Clone(info.Labels), max(info.Slots, 1), info.Session
	w.Instance = info.Instance
	w.LastSeen, w.Healthy, w.Draining, w.Reason = now, true, false, ""
	w.Connected = false

	revoked := e.adopt(w, info.Running, now)
	e.dispatch(now)
	return w.clone(), revoked, nil
}

// adopt reconciles the attempts a worker reports with the table: live
// attempts the worker holds (or held before the master restarted) stay its
// own; the others must stop. Attempts the table gave the worker that it
// does not report are lost at once.
func (e *Engine) adopt(w *Worker, running []uint64, now time.Time) []uint64 {
	reported := map[uint64]bool{}
	var revoked []uint64
	for _, id := range running {
		ref, ok := e.attempts[id]
		if !ok || ref.a.Worker != w.Name || (ref.a.WorkerID != 0 && ref.a.WorkerID != w.ID) {
			revoked = append(revoked, id)
			continue
		}
		reported[id] = true
		ref.a.WorkerID = w.ID
		ref.a.Expires = now.Add(e.cfg.TTL)
		if ref.a.Status == Assigned {
			// The worker accepted it, or it would not report it.
			ref.a.Status, ref.a.Started = AttemptRunning, now
		}
		w.Running[id] = true
		e.touch(ref.run)
	}
	for _, id := range sortedIDs(w.Running) {
		if !reported[id] {
			if ref, ok := e.attempts[id]; ok {
				e.gone(ref, "worker "+w.Name+" rejoined without it", now)
			}
			delete(w.Running, id)
		}
	}
	return revoked
}

// gone ends an attempt whose worker no longer has it.
func (e *Engine) gone(ref attemptRef, why string, now time.Time) {
	if ref.a.Status == Assigned {
		e.requeue(ref.run, ref.job, ref.a, AttemptRevoked, why, now)
		return
	}
	e.lose(ref, why, now)
}

// Connect records that the worker's event stream is open.
func (e *Engine) Connect(id uint64, session string, now time.Time) error {
	w, err := e.worker(id, session)
	if err != nil {
		return err
	}
	w.Connected, w.LastSeen = true, now
	e.dispatch(now)
	return nil
}

// Disconnect records that the worker's event stream closed. The worker
// gets no new work; its attempts keep their leases, so that a worker that
// reconnects in time keeps them.
func (e *Engine) Disconnect(id uint64, session string, now time.Time) {
	w, err := e.worker(id, session)
	if err != nil {
		return
	}
	w.Connected, w.Reason = false, "its connection closed"
	// An assignment it had not accepted may never have reached it: the
	// next worker gets the job now rather than at the accept timeout. If
	// the worker did get it, its Accept is refused as stale.
	for _, id := range sortedIDs(w.Running) {
		if ref, ok := e.attempts[id]; ok && ref.a.Status == Assigned {
			e.requeue(ref.run, ref.job, ref.a, AttemptRevoked,
				"worker "+w.Name+" disconnected before it accepted the job", now)
		}
	}
	e.dispatch(now)
	if w.Draining && len(w.Running) == 0 {
		// It drained and left: nothing is lost, so nothing is shown lost.
		e.remove(w)
	}
}

// remove drops a worker from the table; its suspension stays on record.
func (e *Engine) remove(w *Worker) {
	delete(e.workers, w.ID)
	delete(e.byName, w.Name)
}

// forgetGone drops workers silent for longer than ForgetAfter that hold
// no attempts.
func (e *Engine) forgetGone(now time.Time) {
	for _, w := range e.workers {
		if len(w.Running) == 0 && now.Sub(w.LastSeen) > e.cfg.ForgetAfter {
			e.remove(w)
		}
	}
}

// Heartbeat is what a worker reports every interval.
type Heartbeat struct {
	Healthy  bool
	Reason   string
	Draining bool
	Running  []uint64
}

// Heartbeat renews the worker and the leases of the attempts it runs. It
// returns the reported attempts the worker must stop.
func (e *Engine) Heartbeat(id uint64, session string, hb Heartbeat,
	now time.Time) ([]uint64, error) {
	w, err := e.worker(id, session)
	if err != nil {
		return nil, err
	}
	w.LastSeen, w.Healthy, w.Draining = now, hb.Healthy, hb.Draining
	w.Reason = ""
	if !hb.Healthy {
		w.Reason = hb.Reason
	}
	var revoked []uint64
	for _, a := range hb.Running {
		ref, err := e.live(a, w.ID)
		if err != nil {
			revoked = append(revoked, a)
			continue
		}
		if ref.a.Status == Assigned {
			// Its Accept is still on the way; the worker runs it.
			ref.a.Status, ref.a.Started = AttemptRunning, now
			e.touch(ref.run)
		}
		ref.a.Expires = now.Add(e.cfg.TTL)
	}
	e.dispatch(now)
	return revoked, nil
}

func (e *Engine) worker(id uint64, session string) (*Worker, error) {
	w := e.workers[id]
	if w == nil || w.Session != session {
		return nil, ErrUnknownWorker
	}
	return w, nil
}

// Suspend stops giving the named worker new jobs; running ones go on.
func (e *Engine) Suspend(name string) (Worker, error) {
	return e.setSuspended(name, true, time.Time{})
}

// Resume lets the named worker take jobs again.
func (e *Engine) Resume(name string, now time.Time) (Worker, error) {
	return e.setSuspended(name, false, now)
}

func (e *Engine) setSuspended(name string, on bool, now time.Time) (Worker, error) {
	w := e.byName[name]
	if w == nil {
		return Worker{}, fmt.Errorf("worker %q: %w", name, ErrNoWorker)
	}
	w.Suspended = on
	e.suspended[name] = on
	if !on {
		e.dispatch(now)
	}
	return w.clone(), nil
}

// Presuspend marks names as suspended before their workers join, for a
// master that restarts with suspensions on record.
func (e *Engine) Presuspend(names []string) {
	for _, n := range names {
		e.suspended[n] = true
	}
}

// Workers returns a copy of the table, ordered by ID.
func (e *Engine) Workers() []Worker {
	out := make([]Worker, 0, len(e.workers))
	for _, id := range slices.Sorted(maps.Keys(e.workers)) {
		out = append(out, e.workers[id].clone())
	}
	return out
}

// Worker returns a copy of one worker.
func (e *Engine) Worker(id uint64) (Worker, bool) {
	w, ok := e.workers[id]
	if !ok {
		return Worker{}, false
	}
	return w.clone(), true
}
