package scheduler

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// harness drives an engine on a fake clock.
type harness struct {
	t   *testing.T
	e   *Engine
	now time.Time
	ids uint64
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, now: t0}
	h.e = New(Config{TTL: 2 * time.Second, AcceptTimeout: time.Second,
		NextAttemptID: func() uint64 { h.ids++; return h.ids }})
	return h
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d); h.e.Tick(h.now) }

func (h *harness) join(name string, slots int) uint64 {
	w, _, err := h.e.Join(JoinInfo{Name: name, Slots: slots, Session: name + "-s",
		Instance: name, OS: "linux", Arch: "amd64"}, h.now)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.e.Connect(w.ID, name+"-s", h.now); err != nil {
		h.t.Fatal(err)
	}
	return w.ID
}

// heartbeat reports every attempt the table gave the worker as running.
func (h *harness) heartbeat(id uint64) {
	w, _ := h.e.Worker(id)
	h.heartbeatWith(id, sortedIDs(w.Running)...)
}

func (h *harness) heartbeatWith(id uint64, running ...uint64) {
	w, _ := h.e.Worker(id)
	if _, err := h.e.Heartbeat(id, w.Session, Heartbeat{Healthy: true,
		Running: running}, h.now); err != nil {
		h.t.Fatal(err)
	}
}

// graph: a -> (b, c) -> d
func diamond(id uint64) *Run {
	return &Run{ID: id, Pipeline: "p", OS: "linux", Arch: "amd64", Jobs: []*Job{
		{Name: "a"},
		{Name: "b", DependsOn: []string{"a"}},
		{Name: "c", DependsOn: []string{"a"}},
		{Name: "d", DependsOn: []string{"b", "c"}},
	}}
}

// assigned returns the assignments since the last call, by job name.
func (h *harness) assigned() map[string]Assignment {
	out := map[string]Assignment{}
	for _, a := range h.e.Effects().Assign {
		out[a.Job] = a
	}
	return out
}

func (h *harness) finish(a Assignment, ok bool, outputs map[string]string) {
	h.t.Helper()
	if err := h.e.Accept(a.Attempt, a.Worker, h.now); err != nil {
		h.t.Fatal(err)
	}
	res := Result{OK: ok, Outputs: outputs}
	if !ok {
		res.Error = "exit status 1"
	}
	if err := h.e.Finish(a.Attempt, a.Worker, res, h.now); err != nil {
		h.t.Fatal(err)
	}
}

func status(r *Run) map[string]Status {
	out := map[string]Status{"run": r.Status}
	for _, j := range r.Jobs {
		out[j.Name] = j.Status
	}
	return out
}

func TestRunFollowsTheGraphAndPassesOutputs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 2)
	h.join("w2", 2)
	run := diamond(1)
	h.e.AddRun(run, h.now)

	first := h.assigned()
	if len(first) != 1 || first["a"].Attempt == 0 {
		t.Fatalf("first assignments = %v, want only a", first)
	}
	h.finish(first["a"], true, map[string]string{"version": "1.2.3"})
	second := h.assigned()
	if len(second) != 2 || second["b"].Worker == second["c"].Worker {
		t.Fatalf("fan-out = %+v, want b and c on two workers", second)
	}
	if in := second["b"].Inputs; in["a"]["version"] != "1.2.3" {
		t.Fatalf("inputs of b = %v, want a's version", in)
	}
	h.finish(second["b"], true, nil)
	if got := h.assigned(); len(got) != 0 {
		t.Fatalf("d started before c finished: %v", got)
	}
	h.finish(second["c"], true, nil)
	h.finish(h.assigned()["d"], true, nil)

	if run.Status != Succeeded || run.Finished.IsZero() {
		t.Fatalf("run = %v, want succeeded and finished", status(run))
	}
	if _, ok := h.e.Run(1); ok {
		t.Error("engine still holds the finished run")
	}
}

func TestFailedJobSkipsItsDependents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 4)
	run := diamond(1)
	h.e.AddRun(run, h.now)
	h.finish(h.assigned()["a"], true, nil)
	fan := h.assigned()
	h.finish(fan["b"], false, nil)
	if run.Status != Running {
		t.Fatalf("run ended while c still runs: %v", status(run))
	}
	h.finish(fan["c"], true, nil)

	want := map[string]Status{"run": Failed, "a": Succeeded, "b": Failed, "c": Succeeded, "d": Skipped}
	for k, v := range want {
		if status(run)[k] != v {
			t.Fatalf("statuses = %v, want %v", status(run), want)
		}
	}
	if !strings.Contains(run.Reason, "job b failed") {
		t.Errorf("reason = %q, want it to name job b", run.Reason)
	}
}

func TestLostWorkerJobRunsAgainElsewhereAndStaleResultIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w1 := h.join("w1", 1)
	w2 := h.join("w2", 1)
	run := &Run{ID: 1, Jobs: []*Job{{Name: "only"}}}
	h.e.AddRun(run, h.now)
	a := h.assigned()["only"]
	if err := h.e.Accept(a.Attempt, a.Worker, h.now); err != nil {
		t.Fatal(err)
	}
	dead, alive := a.Worker, w1+w2-a.Worker

	// Only the live worker heartbeats; the lease of the dead one runs out.
	for i := 0; i < 5; i++ {
		h.now = h.now.Add(500 * time.Millisecond)
		h.heartbeat(alive)
		h.e.Tick(h.now)
	}
	eff := h.e.Effects()
	if len(eff.Assign) != 1 || eff.Assign[0].Worker != alive {
		t.Fatalf("reassignments = %+v, want one to worker %d", eff.Assign, alive)
	}
	if len(eff.Notes) != 1 || !strings.Contains(eff.Notes[0].Text, "sent no heartbeat") {
		t.Errorf("notes = %+v, want one that says the worker went silent", eff.Notes)
	}

	err := h.e.Finish(a.Attempt, dead, Result{OK: true}, h.now)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("stale result: err = %v, want ErrStale", err)
	}
	h.finish(eff.Assign[0], true, nil)
	if run.Status != Succeeded || len(run.Jobs[0].Attempts) != 2 {
		t.Fatalf("run = %v with %d attempts, want succeeded after 2", status(run),
			len(run.Jobs[0].Attempts))
	}
	if got := run.Jobs[0].Attempts[0].Status; got != AttemptLost {
		t.Errorf("first attempt = %s, want lost", got)
	}
}

func TestRetryBudgetEndsInFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 1)
	run := &Run{ID: 1, Jobs: []*Job{{Name: "only", Retries: -1}}}
	run.Jobs[0].Retries = 0
	h.e.cfg.DefaultRetries = 1
	h.e.AddRun(run, h.now)
	for i := 0; i < 2; i++ {
		a := h.assigned()["only"]
		if a.Attempt == 0 {
			t.Fatalf("round %d: no assignment", i)
		}
		if err := h.e.Accept(a.Attempt, a.Worker, h.now); err != nil {
			t.Fatal(err)
		}
		h.advance(3 * time.Second) // no heartbeat: lost
		h.heartbeat(a.Worker)      // back, for the next round
		h.e.Tick(h.now)
	}
	if run.Status != Failed || !strings.Contains(run.Jobs[0].Error, "1 retries are spent") {
		t.Fatalf("run = %v, job error %q", status(run), run.Jobs[0].Error)
	}
}

func TestUnacceptedAssignmentGoesToTheNextWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w1 := h.join("w1", 1)
	w2 := h.join("w2", 1)
	run := &Run{ID: 1, Jobs: []*Job{{Name: "only"}}}
	h.e.AddRun(run, h.now)
	first := h.assigned()["only"]

	h.now = h.now.Add(1500 * time.Millisecond)
	h.heartbeatWith(w1)
	h.heartbeatWith(w2)
	h.e.Tick(h.now)
	eff := h.e.Effects()
	if len(eff.Revoke) != 1 || eff.Revoke[0].Attempt != first.Attempt {
		t.Fatalf("revocations = %+v, want the first attempt", eff.Revoke)
	}
	if len(eff.Assign) != 1 || eff.Assign[0].Worker == first.Worker {
		t.Fatalf("reassignment = %+v, want another worker than %d", eff.Assign, first.Worker)
	}
	if n := run.Jobs[0].lost(); n != 0 {
		t.Errorf("lost attempts = %d; an unaccepted one must not spend the budget", n)
	}
}

func TestCancelEndsTheRunAndRevokesLiveAttempts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 1)
	run := diamond(1)
	h.e.AddRun(run, h.now)
	a := h.assigned()["a"]
	if err := h.e.Cancel(1, "cancelled by admin", h.now); err != nil {
		t.Fatal(err)
	}
	eff := h.e.Effects()
	if len(eff.Revoke) != 1 || eff.Revoke[0].Attempt != a.Attempt {
		t.Fatalf("revocations = %+v", eff.Revoke)
	}
	for _, j := range run.Jobs {
		if j.Status != Cancelled {
			t.Fatalf("statuses = %v, want all cancelled", status(run))
		}
	}
	if err := h.e.Finish(a.Attempt, a.Worker, Result{OK: true}, h.now); !errors.Is(err, ErrStale) {
		t.Fatalf("result after cancel: err = %v, want ErrStale", err)
	}
	if err := h.e.Cancel(1, "again", h.now); !errors.Is(err, ErrNoRun) {
		t.Fatalf("second cancel: err = %v, want ErrNoRun", err)
	}
}

func TestSuspendedWorkerGetsNoJobsUntilResumed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 1)
	if _, err := h.e.Suspend("w1"); err != nil {
		t.Fatal(err)
	}
	run := &Run{ID: 1, Jobs: []*Job{{Name: "only"}}}
	h.e.AddRun(run, h.now)
	if got := h.assigned(); len(got) != 0 {
		t.Fatalf("suspended worker got %v", got)
	}
	if w := run.Jobs[0].Waiting; w != "no worker is ready (1 suspended)" {
		t.Errorf("waiting = %q", w)
	}
	if _, err := h.e.Resume("w1", h.now); err != nil {
		t.Fatal(err)
	}
	if got := h.assigned(); len(got) != 1 {
		t.Fatalf("after resume: %v", got)
	}
	if _, err := h.e.Suspend("nope"); !errors.Is(err, ErrNoWorker) {
		t.Errorf("unknown worker: err = %v", err)
	}
}

func TestRestoredRunKeepsAttemptOfAWorkerThatRejoins(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	run := &Run{ID: 7, Status: Running, Jobs: []*Job{
		{Name: "a", Status: Running, Retries: 2, Attempts: []*Attempt{
			{ID: 40, WorkerID: 3, Worker: "w1", Status: AttemptRunning}}},
		{Name: "b", Status: Queued, Retries: 2, DependsOn: []string{"a"}},
	}}
	h.e.Restore(run, h.now)

	w, revoked, err := h.e.Join(JoinInfo{Name: "w1", Slots: 1, Session: "s",
		Running: []uint64{40, 41}}, h.now)
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1 || revoked[0] != 41 {
		t.Fatalf("revoked = %v, want the unknown attempt 41", revoked)
	}
	if err := h.e.Connect(w.ID, "s", h.now); err != nil {
		t.Fatal(err)
	}
	h.e.Effects()
	if err := h.e.Finish(40, w.ID, Result{OK: true}, h.now); err != nil {
		t.Fatalf("result of the adopted attempt: %v", err)
	}
	if got := h.assigned(); got["b"].Worker != w.ID {
		t.Fatalf("b not dispatched to the rejoined worker: %v", got)
	}
}

func TestRestoredAttemptWithoutItsWorkerIsLostAfterTheGrace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	run := &Run{ID: 7, Status: Running, Jobs: []*Job{
		{Name: "a", Status: Running, Retries: 2, Attempts: []*Attempt{
			{ID: 40, WorkerID: 3, Worker: "w1", Status: AttemptRunning}}},
	}}
	h.e.Restore(run, h.now)
	w2 := h.join("w2", 1)
	for i := 0; i < 9; i++ {
		h.advance(time.Second)
		h.heartbeat(w2)
	}
	if a := run.Jobs[0].Attempts; len(a) != 1 {
		t.Fatalf("attempt given away before the restore grace: %d attempts", len(a))
	}
	h.advance(1500 * time.Millisecond)
	got := h.assigned()
	if got["a"].Worker != w2 {
		t.Fatalf("job a not retried on w2: %v", got)
	}
	if why := run.Jobs[0].Attempts[0].Error; !strings.Contains(why, "did not come back") {
		t.Errorf("lost reason = %q", why)
	}
}

func TestWorkerDetectedLostWithinTTL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.join("w1", 1)
	step := 100 * time.Millisecond
	var at time.Duration
	for at = 0; at < 10*time.Second; at += step {
		h.now = t0.Add(at)
		if w, _ := h.e.Worker(id); w.State(h.now, h.e.TTL()) == Lost {
			break
		}
	}
	if at > h.e.TTL()+step {
		t.Fatalf("lost after %s, want within the TTL %s", at, h.e.TTL())
	}
}

func TestSecondWorkerUnderALiveNameIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 1)
	_, _, err := h.e.Join(JoinInfo{Name: "w1", Slots: 1, Session: "other", Instance: "impostor"}, h.now)
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("err = %v, want ErrNameTaken", err)
	}
	// The same process rejoining is fine, and so is a new process once the
	// old one is gone.
	if _, _, err := h.e.Join(JoinInfo{Name: "w1", Slots: 1, Session: "again", Instance: "w1"}, h.now); err != nil {
		t.Fatalf("rejoin of the same instance: %v", err)
	}
	h.now = h.now.Add(3 * time.Second)
	if _, _, err := h.e.Join(JoinInfo{Name: "w1", Slots: 1, Session: "new", Instance: "restarted"}, h.now); err != nil {
		t.Fatalf("join after the old one went silent: %v", err)
	}
}

func TestSuspensionOnRecordAppliesWhenTheWorkerJoins(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.e.Presuspend([]string{"w1"})
	id := h.join("w1", 1)
	if w, _ := h.e.Worker(id); w.State(h.now, h.e.TTL()) != Suspended {
		t.Fatalf("state = %s, want suspended", w.State(h.now, h.e.TTL()))
	}
}

func TestWorkerThatDrainedAndLeftIsDroppedAndSilentOnesLater(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	left := h.join("left", 1)
	silent := h.join("silent", 1)
	w, _ := h.e.Worker(left)
	if _, err := h.e.Heartbeat(left, w.Session, Heartbeat{Healthy: true, Draining: true}, h.now); err != nil {
		t.Fatal(err)
	}
	h.e.Disconnect(left, w.Session, h.now)
	if _, ok := h.e.Worker(left); ok {
		t.Fatal("a worker that drained and left is still in the table")
	}
	h.advance(time.Minute)
	if w, ok := h.e.Worker(silent); !ok || w.State(h.now, h.e.TTL()) != Lost {
		t.Fatalf("a silent worker should show lost for a while: %v %v", ok, w.State(h.now, h.e.TTL()))
	}
	h.advance(2 * time.Hour)
	if _, ok := h.e.Worker(silent); ok {
		t.Fatal("a worker silent for two hours is still in the table")
	}
}

func TestAssignmentOfAWorkerThatDisconnectsGoesToTheNextAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.join("w1", 1)
	h.join("w2", 1)
	run := &Run{ID: 1, Jobs: []*Job{{Name: "only"}}}
	h.e.AddRun(run, h.now)
	first := h.assigned()["only"]
	gone := first.Worker
	w, _ := h.e.Worker(gone)
	h.e.Disconnect(gone, w.Session, h.now)

	eff := h.e.Effects()
	if len(eff.Assign) != 1 || eff.Assign[0].Worker == gone {
		t.Fatalf("reassignment = %+v, want the other worker at once", eff.Assign)
	}
	if err := h.e.Accept(first.Attempt, gone, h.now); !errors.Is(err, ErrStale) {
		t.Fatalf("a late accept of the first attempt: %v, want ErrStale", err)
	}
}
