package scheduler

import (
	"maps"
	"slices"
	"time"
)

// Status is the state of a run or of a job.
type Status string

// Run and job statuses. Skipped is for jobs only.
const (
	Queued    Status = "queued"
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Skipped   Status = "skipped"
	Cancelled Status = "cancelled"
)

// Final reports whether s never changes again.
func (s Status) Final() bool {
	return s == Succeeded || s == Failed || s == Skipped || s == Cancelled
}

// AttemptStatus is the state of one attempt.
type AttemptStatus string

// Attempt statuses. Assigned and Running are live; the rest are final.
const (
	Assigned        AttemptStatus = "assigned"
	AttemptRunning  AttemptStatus = "running"
	AttemptOK       AttemptStatus = "succeeded"
	AttemptFailed   AttemptStatus = "failed"
	AttemptLost     AttemptStatus = "lost"
	AttemptRevoked  AttemptStatus = "revoked"
	AttemptCanceled AttemptStatus = "cancelled"
)

// Live reports whether the attempt may still report a result.
func (s AttemptStatus) Live() bool { return s == Assigned || s == AttemptRunning }

// Run is one execution of one version of a pipeline.
type Run struct {
	ID       uint64
	Pipeline string
	Version  uint64
	Digest   string
	// OS and Arch are the binary's platform.
	OS     string
	Arch   string
	Source string
	Dir    string
	Ref    string
	Commit string
	Params map[string]string

	Status    Status
	StartedBy string
	// Trigger says what started the run; the engine only carries it.
	Trigger  Trigger
	Reason   string
	Created  time.Time
	Started  time.Time
	Finished time.Time
	// Jobs are in the order the pipeline declared them.
	Jobs []*Job
}

// Trigger is what started a run: its kind ("manual", "webhook", "poll",
// "schedule", "upstream"), who, and the facts that go with the kind.
type Trigger struct {
	Kind, By, Detail string
	Delivery         string
	UpstreamPipeline string
	UpstreamRun      uint64
	Ref, Commit      string
}

// Job is one node of a run's graph.
type Job struct {
	Name      string
	DependsOn []string
	Timeout   time.Duration
	// Retries is how many more attempts the job gets after lost ones.
	Retries int
	Labels  map[string]string

	Status   Status
	Error    string
	Outputs  map[string]string
	Started  time.Time
	Finished time.Time
	// Waiting says why a queued job has not started.
	Waiting  string
	Attempts []*Attempt
}

// Attempt is one try of a job on one worker.
type Attempt struct {
	ID       uint64
	WorkerID uint64
	Worker   string
	Status   AttemptStatus
	Assigned time.Time
	Started  time.Time
	Finished time.Time
	// Expires is the accept deadline of an assigned attempt and the lease
	// end of a running one.
	Expires time.Time
	Error   string
}

// Job returns the job named name, or nil.
func (r *Run) Job(name string) *Job {
	for _, j := range r.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// Live returns the job's live attempt, or nil.
func (j *Job) Live() *Attempt {
	if n := len(j.Attempts); n > 0 && j.Attempts[n-1].Status.Live() {
		return j.Attempts[n-1]
	}
	return nil
}

// lost counts the job's lost attempts, which spend its retry budget.
func (j *Job) lost() int {
	n := 0
	for _, a := range j.Attempts {
		if a.Status == AttemptLost {
			n++
		}
	}
	return n
}

// Clone returns a deep copy of r, for callers outside the engine's lock.
func (r *Run) Clone() *Run {
	c := *r
	c.Params = maps.Clone(r.Params)
	c.Jobs = make([]*Job, len(r.Jobs))
	for i, j := range r.Jobs {
		jc := *j
		jc.DependsOn = slices.Clone(j.DependsOn)
		jc.Labels = maps.Clone(j.Labels)
		jc.Outputs = maps.Clone(j.Outputs)
		jc.Attempts = make([]*Attempt, len(j.Attempts))
		for k, a := range j.Attempts {
			ac := *a
			jc.Attempts[k] = &ac
		}
		c.Jobs[i] = &jc
	}
	return &c
}

// advance settles the run's graph: it skips queued jobs whose dependencies
// cannot succeed any more, and ends the run when nothing is left to do. It
// returns the run's status.
func (r *Run) advance(now time.Time) Status {
	if r.Status.Final() {
		return r.Status
	}
	for changed := true; changed; {
		changed = false
		for _, j := range r.Jobs {
			if j.Status == Queued && r.blocked(j) {
				j.Status, j.Finished, j.Waiting = Skipped, now, ""
				j.Error = "a job it depends on did not succeed"
				changed = true
			}
		}
	}

	failed, open := false, false
	for _, j := range r.Jobs {
		switch j.Status {
		case Failed, Skipped, Cancelled:
			failed = true
		case Queued, Running:
			open = true
		}
	}
	switch {
	case open:
		return r.Status
	case failed:
		r.finish(Failed, now, r.failureReason())
	default:
		r.finish(Succeeded, now, "")
	}
	return r.Status
}

func (r *Run) finish(s Status, now time.Time, reason string) {
	r.Status, r.Finished, r.Reason = s, now, reason
}

// blocked reports whether a dependency of j ended without success.
func (r *Run) blocked(j *Job) bool {
	for _, d := range j.DependsOn {
		if dep := r.Job(d); dep != nil && dep.Status.Final() && dep.Status != Succeeded {
			return true
		}
	}
	return false
}

// ready reports whether every dependency of j succeeded.
func (r *Run) ready(j *Job) bool {
	for _, d := range j.DependsOn {
		if dep := r.Job(d); dep == nil || dep.Status != Succeeded {
			return false
		}
	}
	return true
}

// failureReason names the first job that failed.
func (r *Run) failureReason() string {
	for _, j := range r.Jobs {
		if j.Status == Failed {
			return "job " + j.Name + " failed: " + firstLine(j.Error)
		}
	}
	return "a job did not succeed"
}

// waitingFor names the dependencies of j that have not finished.
func (r *Run) waitingFor(j *Job) []string {
	var names []string
	for _, d := range j.DependsOn {
		if dep := r.Job(d); dep != nil && !dep.Status.Final() {
			names = append(names, d)
		}
	}
	return names
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
