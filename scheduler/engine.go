package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Errors the engine returns. Callers match them with errors.Is.
var (
	// ErrStale is returned for a call about an attempt that is no longer
	// the live attempt of its job on that worker.
	ErrStale = errors.New("scheduler: the attempt is no longer live on this worker")
	// ErrUnknownWorker is returned for a worker ID or session the table
	// does not hold; the worker should join again.
	ErrUnknownWorker = errors.New("scheduler: unknown worker")
	// ErrNoWorker is returned for a worker name the table does not hold.
	ErrNoWorker = errors.New("scheduler: no such worker")
	// ErrNameTaken is returned by Join for a name a live worker holds.
	ErrNameTaken = errors.New("scheduler: the worker name is taken")
	// ErrNoRun is returned for a run the engine does not hold.
	ErrNoRun = errors.New("scheduler: no such run")
	// ErrFinal is returned when cancelling a run that already ended.
	ErrFinal = errors.New("scheduler: the run has already ended")
)

// Config tunes the engine. Zero fields take the documented defaults.
type Config struct {
	// TTL is how long a worker stays ready without a heartbeat, and the
	// length of an attempt's lease. Default 10s.
	TTL time.Duration
	// AcceptTimeout is how long an assignment may wait to be accepted
	// before it goes to another worker. Default 5s.
	AcceptTimeout time.Duration
	// RestoreGrace is how long a restored run's live attempts wait for
	// their workers to rejoin after a master restart. Default the larger of
	// 10s and the TTL: workers retry with a backoff of up to 5s.
	RestoreGrace time.Duration
	// ForgetAfter is how long a worker that went silent stays in the
	// table, shown lost. Default one hour.
	ForgetAfter time.Duration
	// DefaultRetries is a job's retry budget when its pipeline leaves it
	// at zero. Default 2.
	DefaultRetries int
	// NextAttemptID returns a fresh attempt ID. Required: IDs must stay
	// unique across master restarts.
	NextAttemptID func() uint64
}

// Assignment is an attempt the server must send to its worker.
type Assignment struct {
	// Run is a copy of the run without its jobs.
	Run     Run
	Job     string
	Timeout time.Duration
	// Inputs are the outputs of the job's dependencies, by job name.
	Inputs  map[string]map[string]string
	Attempt uint64
	// Number counts the job's attempts, from 1.
	Number int
	Worker uint64
}

// Revocation tells a worker to stop an attempt.
type Revocation struct {
	Attempt uint64
	Worker  uint64
	Reason  string
}

// Note is a line for the log of an attempt, written by the master.
type Note struct {
	Run     uint64
	Job     string
	Attempt uint64
	Text    string
}

// Effects are what the server must apply after engine calls.
type Effects struct {
	Assign []Assignment
	Revoke []Revocation
	Notes  []Note
	// Changed holds clones of the runs whose state changed, to be saved
	// and shown, by ID order.
	Changed []*Run
}

// Empty reports whether there is nothing to apply.
func (e Effects) Empty() bool {
	return len(e.Assign) == 0 && len(e.Revoke) == 0 && len(e.Notes) == 0 &&
		len(e.Changed) == 0
}

type attemptRef struct {
	run *Run
	job *Job
	a   *Attempt
}

// Engine holds the worker table and the runs that have not ended. It is
// not safe for concurrent use: the server serialises calls.
type Engine struct {
	cfg Config

	workers map[uint64]*Worker
	byName  map[string]*Worker
	// suspended holds the names of suspended workers, joined or not, so
	// that a suspension outlives the worker's absence.
	suspended  map[string]bool
	lastID     uint64
	lastPicked uint64

	runs     map[uint64]*Run
	attempts map[uint64]attemptRef

	out     Effects
	changed map[uint64]*Run
}

// New returns an engine with an empty table.
func New(cfg Config) *Engine {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.AcceptTimeout <= 0 {
		cfg.AcceptTimeout = 5 * time.Second
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = time.Hour
	}
	if cfg.RestoreGrace <= 0 {
		cfg.RestoreGrace = max(10*time.Second, cfg.TTL)
	}
	if cfg.DefaultRetries == 0 {
		cfg.DefaultRetries = 2
	}
	return &Engine{
		cfg:       cfg,
		workers:   map[uint64]*Worker{},
		byName:    map[string]*Worker{},
		suspended: map[string]bool{},
		runs:      map[uint64]*Run{},
		attempts:  map[uint64]attemptRef{},
		changed:   map[uint64]*Run{},
	}
}

// TTL returns the heartbeat TTL in force.
func (e *Engine) TTL() time.Duration { return e.cfg.TTL }

// Effects returns and clears what the calls so far require of the server.
func (e *Engine) Effects() Effects {
	out := e.out
	for _, id := range sortedIDs(e.changed) {
		out.Changed = append(out.Changed, e.changed[id].Clone())
	}
	e.out = Effects{}
	clear(e.changed)
	return out
}

func (e *Engine) touch(r *Run) { e.changed[r.ID] = r }

// AddRun queues a new run and dispatches what it can.
func (e *Engine) AddRun(r *Run, now time.Time) {
	r.Status, r.Created = Queued, now
	for _, j := range r.Jobs {
		j.Status = Queued
		if j.Retries == 0 {
			j.Retries = e.cfg.DefaultRetries
		}
	}
	e.runs[r.ID] = r
	e.touch(r)
	r.advance(now) // a run with nothing to do ends here
	e.forgetIfFinal(r)
	e.dispatch(now)
}

// Restore takes back a run that had not ended when the master stopped.
// Its live attempts wait RestoreGrace for their workers, so that a worker
// that rejoins and reports them keeps them; otherwise their leases run out
// and they are lost like any other.
func (e *Engine) Restore(r *Run, now time.Time) {
	e.runs[r.ID] = r
	for _, j := range r.Jobs {
		if a := j.Live(); a != nil {
			a.Expires = now.Add(e.cfg.RestoreGrace)
			a.WorkerID = 0
			e.attempts[a.ID] = attemptRef{r, j, a}
		}
	}
	r.advance(now)
	e.touch(r)
	e.forgetIfFinal(r)
	e.dispatch(now)
}

// Run returns a clone of the run, if the engine holds it.
func (e *Engine) Run(id uint64) (*Run, bool) {
	r, ok := e.runs[id]
	if !ok {
		return nil, false
	}
	return r.Clone(), true
}

// Cancel ends a run: queued jobs are cancelled, live attempts revoked.
func (e *Engine) Cancel(id uint64, reason string, now time.Time) error {
	r, ok := e.runs[id]
	if !ok {
		return ErrNoRun
	}
	if r.Status.Final() {
		return ErrFinal
	}
	for _, j := range r.Jobs {
		if j.Status.Final() {
			continue
		}
		if a := j.Live(); a != nil {
			e.endAttempt(r, j, a, AttemptCanceled, reason, now)
			e.out.Revoke = append(e.out.Revoke, Revocation{a.ID, a.WorkerID, reason})
		}
		j.Status, j.Finished, j.Error, j.Waiting = Cancelled, now, reason, ""
	}
	r.finish(Cancelled, now, reason)
	e.touch(r)
	e.forgetIfFinal(r)
	e.dispatch(now)
	return nil
}

// Accept records that a worker started an attempt.
func (e *Engine) Accept(attempt, worker uint64, now time.Time) error {
	ref, err := e.live(attempt, worker)
	if err != nil {
		return err
	}
	if ref.a.Status == Assigned {
		ref.a.Status, ref.a.Started = AttemptRunning, now
		ref.a.Expires = now.Add(e.cfg.TTL)
		e.touch(ref.run)
	}
	return nil
}

// Result is what a worker reports at the end of an attempt.
type Result struct {
	OK      bool
	Error   string
	Outputs map[string]string
}

// Finish records an attempt's result. A result for an attempt that is not
// live on that worker is refused with ErrStale and changes nothing.
func (e *Engine) Finish(attempt, worker uint64, res Result, now time.Time) error {
	ref, err := e.live(attempt, worker)
	if err != nil {
		return err
	}
	r, j, a := ref.run, ref.job, ref.a
	if res.OK {
		e.endAttempt(r, j, a, AttemptOK, "", now)
		j.Status, j.Outputs = Succeeded, res.Outputs
	} else {
		e.endAttempt(r, j, a, AttemptFailed, res.Error, now)
		j.Status, j.Error = Failed, res.Error
	}
	j.Finished = now
	r.advance(now)
	e.touch(r)
	e.forgetIfFinal(r)
	e.dispatch(now)
	return nil
}

// live returns the attempt if it is live on worker.
func (e *Engine) live(attempt, worker uint64) (attemptRef, error) {
	ref, ok := e.attempts[attempt]
	if !ok || !ref.a.Status.Live() || ref.a.WorkerID != worker {
		return attemptRef{}, fmt.Errorf("attempt %d: %w", attempt, ErrStale)
	}
	return ref, nil
}

// endAttempt moves a live attempt to a final status and frees its slot.
func (e *Engine) endAttempt(r *Run, j *Job, a *Attempt, s AttemptStatus, why string,
	now time.Time) {
	a.Status, a.Finished, a.Error = s, now, why
	if w := e.workers[a.WorkerID]; w != nil {
		delete(w.Running, a.ID)
	}
	delete(e.attempts, a.ID)
	e.touch(r)
}

// forgetIfFinal drops a run that ended; the server keeps it on disk.
func (e *Engine) forgetIfFinal(r *Run) {
	if r.Status.Final() {
		delete(e.runs, r.ID)
	}
}

// Tick expires accept deadlines and leases, forgets workers long gone,
// then dispatches.
func (e *Engine) Tick(now time.Time) {
	e.forgetGone(now)
	for _, id := range sortedIDs(e.attempts) {
		ref := e.attempts[id]
		if now.After(ref.a.Expires) {
			e.expire(ref, now)
		}
	}
	e.dispatch(now)
}

// expire handles an attempt whose deadline passed.
func (e *Engine) expire(ref attemptRef, now time.Time) {
	r, j, a := ref.run, ref.job, ref.a
	if a.Status == Assigned {
		why := fmt.Sprintf("worker %s did not accept it in time", a.Worker)
		e.requeue(r, j, a, AttemptRevoked, why, now)
		return
	}
	e.lose(ref, e.lostReason(a, now), now)
}

// lose ends a running attempt that its worker can no longer finish: the job
// runs again while its retry budget lasts, and fails otherwise.
func (e *Engine) lose(ref attemptRef, why string, now time.Time) {
	r, j, a := ref.run, ref.job, ref.a
	e.out.Notes = append(e.out.Notes, Note{r.ID, j.Name, a.ID, fmt.Sprintf(
		"kiln: attempt %d lost after %s on worker %s: %s", len(j.Attempts),
		now.Sub(a.Started).Round(time.Millisecond), a.Worker, why)})
	if budget := max(j.Retries, 0); j.lost()+1 > budget {
		e.endAttempt(r, j, a, AttemptLost, why, now)
		e.out.Revoke = append(e.out.Revoke, Revocation{a.ID, a.WorkerID, why})
		j.Status, j.Finished = Failed, now
		j.Error = why + ", and the job has no retries"
		if budget > 0 {
			j.Error = fmt.Sprintf("%s, and its %d retries are spent", why, budget)
		}
		r.advance(now)
		e.forgetIfFinal(r)
		return
	}
	e.requeue(r, j, a, AttemptLost, why, now)
}

// requeue ends a live attempt, tells its worker to stop it, and queues
// the job again.
func (e *Engine) requeue(r *Run, j *Job, a *Attempt, s AttemptStatus, why string,
	now time.Time) {
	e.endAttempt(r, j, a, s, why, now)
	e.out.Revoke = append(e.out.Revoke, Revocation{a.ID, a.WorkerID, why})
	j.Status = Queued
}

func (e *Engine) lostReason(a *Attempt, now time.Time) string {
	w := e.workers[a.WorkerID]
	switch {
	case w == nil:
		return "its worker did not come back after the master restarted"
	case now.Sub(w.LastSeen) > e.cfg.TTL:
		return fmt.Sprintf("worker %s sent no heartbeat for %s",
			w.Name, now.Sub(w.LastSeen).Round(time.Millisecond))
	default:
		return fmt.Sprintf("worker %s stopped reporting it", w.Name)
	}
}

// dispatch assigns ready jobs to workers.
func (e *Engine) dispatch(now time.Time) {
	pending, jobs := e.pending()
	if len(pending) == 0 {
		return
	}
	snap := make([]Worker, 0, len(e.workers))
	for _, w := range e.workers {
		snap = append(snap, *w)
	}
	choices, waiting, last := Pick(now, e.cfg.TTL, snap, e.lastPicked, pending)
	e.lastPicked = last
	for _, c := range choices {
		e.assign(jobs[c.Job].run, jobs[c.Job].job, e.workers[c.Worker], now)
	}
	for i, why := range waiting {
		if j := jobs[i].job; j.Waiting != why {
			j.Waiting = why
			e.touch(jobs[i].run)
		}
	}
}

type runJob struct {
	run *Run
	job *Job
}

// pending lists the queued jobs whose dependencies all succeeded, oldest
// run first, and marks the others with what they wait for.
func (e *Engine) pending() ([]Pending, []runJob) {
	var pending []Pending
	var jobs []runJob
	for _, id := range sortedIDs(e.runs) {
		r := e.runs[id]
		for _, j := range r.Jobs {
			if j.Status != Queued {
				continue
			}
			if !r.ready(j) {
				j.Waiting = "waiting for " + strings.Join(r.waitingFor(j), ", ")
				continue
			}
			// Any platform fits: a worker of another platform than the
			// run's binary gets the same commit built for its own.
			pending = append(pending, Pending{Run: r.ID, Job: j.Name, Labels: j.Labels})
			jobs = append(jobs, runJob{r, j})
		}
	}
	return pending, jobs
}

func (e *Engine) assign(r *Run, j *Job, w *Worker, now time.Time) {
	a := &Attempt{
		ID: e.cfg.NextAttemptID(), WorkerID: w.ID, Worker: w.Name, Status: Assigned,
		Assigned: now, Expires: now.Add(e.cfg.AcceptTimeout),
	}
	j.Attempts = append(j.Attempts, a)
	j.Status, j.Waiting = Running, ""
	if j.Started.IsZero() {
		j.Started = now
	}
	if r.Status == Queued {
		r.Status, r.Started = Running, now
	}
	w.Running[a.ID] = true
	e.attempts[a.ID] = attemptRef{r, j, a}
	e.touch(r)
	facts := *r
	facts.Jobs, facts.Params = nil, maps.Clone(r.Params)
	e.out.Assign = append(e.out.Assign, Assignment{Run: facts, Job: j.Name,
		Timeout: j.Timeout, Inputs: Inputs(r, j.Name), Attempt: a.ID,
		Number: len(j.Attempts), Worker: w.ID})
}

// Inputs returns the outputs of the dependencies of a run's job.
func Inputs(r *Run, job string) map[string]map[string]string {
	j := r.Job(job)
	if j == nil {
		return nil
	}
	in := make(map[string]map[string]string, len(j.DependsOn))
	for _, d := range j.DependsOn {
		if dep := r.Job(d); dep != nil {
			in[d] = maps.Clone(dep.Outputs)
		}
	}
	return in
}

// Runs returns the IDs of the runs that have not ended.
func (e *Engine) Runs() []uint64 { return slices.Sorted(maps.Keys(e.runs)) }
