package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type versionJSON struct {
	Pipeline string `json:"pipeline"`
	Version  uint64 `json:"version"`
	Ref      string `json:"ref"`
	Commit   string `json:"commit"`
	Digest   string `json:"digest"`
	Status   string `json:"status"`
}

func TestDemoPipelineRunsAcrossTwoWorkers(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "w1", "w2")
	repo := f.createPipeline("demo", "demo")

	var r runJSON
	f.jsonOf(&r, "run", "demo", "--wait", "--param", "channel=stable")
	if r.Status != "succeeded" || len(r.Jobs) != 6 {
		t.Fatalf("run = %+v", r)
	}
	used := map[string]bool{}
	for _, j := range r.Jobs {
		if j.Status != "succeeded" || j.Attempts != 1 {
			t.Errorf("job %+v", j)
		}
		used[j.Worker] = true
	}
	if !used["w1"] || !used["w2"] {
		t.Errorf("jobs ran on %v, want both workers", used)
	}
	log := f.mustCI("logs", fmt.Sprint(r.ID), "publish")
	if !strings.Contains(log, "to stable") {
		t.Errorf("publish log = %q, want the channel parameter", log)
	}

	var vs []versionJSON
	f.jsonOf(&vs, "registry", "list", "demo")
	head := git(t, repo, "rev-parse", "HEAD")
	if len(vs) != 1 || vs[0].Commit != head || vs[0].Status != "ready" ||
		!strings.HasPrefix(vs[0].Digest, "sha256:") || vs[0].Ref != "main" {
		t.Fatalf("versions = %+v, want one ready version of %s", vs, head)
	}
}

func TestFaultWorkerKilledMidJobIsRetriedOnAnother(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1", "w2")
	f.createPipeline("e2e", "e2e")

	var r runJSON
	f.jsonOf(&r, "run", "e2e", "--param", "sleep=4s")
	r = f.waitJob(r.ID, "slow", "running")
	victim := r.job("slow").Worker
	time.Sleep(300 * time.Millisecond) // let the job start in its program
	killed := time.Now()
	f.workers[victim].kill()

	f.waitWorker(victim, "lost")
	detect := time.Since(killed)
	recordDetect(detect)
	if detect > 2*heartbeat+time.Second {
		t.Errorf("worker seen lost %s after SIGKILL; want within two heartbeats (%s)", detect,
			2*heartbeat)
	}
	r = f.settle(r.ID, time.Minute)
	slow := r.job("slow")
	if r.Status != "succeeded" || slow.Attempts != 2 || slow.Worker == victim {
		t.Fatalf("run %s, slow = %+v; want success on the other worker at attempt 2", r.Status, slow)
	}
	log := f.mustCI("logs", fmt.Sprint(r.ID), "slow")
	if !strings.Contains(log, "attempt 1 lost") || !strings.Contains(log, "its log stops above") ||
		!strings.Contains(log, "slow done") {
		t.Errorf("slow's log does not tell the lost attempt and the retry:\n%s", log)
	}
	t.Logf("worker %s seen lost %s after SIGKILL (heartbeat %s)", victim, detect, heartbeat)
}

func TestFaultMasterKilledMidRunFinishesTheRun(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1")
	f.createPipeline("e2e", "e2e")

	var r runJSON
	f.jsonOf(&r, "run", "e2e", "--param", "sleep=3s")
	f.waitJob(r.ID, "slow", "running")
	// A script waiting for another run must not take the restart for a
	// failed run.
	waiter := start(t, "waiter", "run", "e2e", "--wait", "--param", "sleep=1s",
		"--master", f.addr, "--token-file", filepath.Join(f.dir, "master", "admin.token"))
	time.Sleep(300 * time.Millisecond)
	f.master.kill()
	time.Sleep(500 * time.Millisecond)
	f.startMaster()

	r = f.settle(r.ID, time.Minute)
	select {
	case <-waiter.done:
	case <-time.After(time.Minute):
		t.Fatal("ci run --wait did not end after the master came back")
	}
	if code := waiter.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("ci run --wait across a master restart exited %d:\n%s", code, waiter.out)
	}
	if r.Status != "succeeded" {
		t.Fatalf("run after restart = %+v", r)
	}
	if a := r.job("slow").Attempts; a != 1 {
		t.Errorf("slow ran %d attempts; the worker should have kept its attempt", a)
	}
}

func TestFaultCancelStopsRunningJobs(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1")
	f.createPipeline("e2e", "e2e")

	var r runJSON
	f.jsonOf(&r, "run", "e2e", "--param", "sleep=60s")
	f.waitJob(r.ID, "slow", "running")
	time.Sleep(200 * time.Millisecond)
	f.mustCI("runs", "cancel", fmt.Sprint(r.ID))

	r = f.run(r.ID)
	if r.Status != "cancelled" || r.job("slow").Status != "cancelled" || r.job("last").Status != "cancelled" {
		t.Fatalf("run after cancel = %+v", r)
	}
	eventually(t, 10*time.Second, func() bool {
		log, _ := f.ci("logs", fmt.Sprint(r.ID), "slow")
		return strings.Contains(log, "slow stopped: cancelled by admin")
	}, "the job to see its cancellation")
	if _, err := f.ci("runs", "cancel", fmt.Sprint(r.ID)); err == nil ||
		!strings.Contains(err.Error(), "already cancelled") {
		t.Errorf("second cancel: %v", err)
	}
}

func TestFailedJobSkipsItsDependentsAndWaitFails(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "w1")
	f.createPipeline("e2e", "e2e")

	out, err := f.ci("run", "e2e", "--wait", "--param", "fail=true")
	if err == nil || !strings.Contains(err.Error(), "job flaky failed") {
		t.Fatalf("run --wait of a failing run: err = %v\n%s", err, out)
	}
	var runs []runJSON
	f.jsonOf(&runs, "runs", "list", "e2e")
	r := runs[0]
	if r.Status != "failed" || r.job("flaky").Status != "failed" ||
		r.job("last").Status != "skipped" || r.job("slow").Status != "succeeded" {
		t.Fatalf("run = %+v", r)
	}
}

func TestSuspendedWorkerGetsNoJobs(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "w1", "w2")
	f.createPipeline("demo", "demo")
	f.mustCI("workers", "suspend", "w1")
	f.waitWorker("w1", "suspended")

	var r runJSON
	f.jsonOf(&r, "run", "demo", "--wait")
	for _, j := range r.Jobs {
		if j.Worker != "w2" {
			t.Fatalf("job %s ran on %s while w1 was suspended", j.Name, j.Worker)
		}
	}
	f.mustCI("workers", "resume", "w1")
	f.waitWorker("w1", "ready")
}

func TestWorkerWithWrongSecretIsRefused(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	bad := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(bad, []byte("not-the-secret\n"), 0o600)
	p := start(t, "intruder", "worker", "--master", f.addr, "--secret-file", bad,
		"--name", "intruder", "--data", t.TempDir())
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("a worker with a wrong secret kept running")
	}
	if !strings.Contains(p.out.String(), "wrong worker secret") {
		t.Fatalf("output = %q", p.out.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatal("exit code 0")
	}
}

func TestBadInputGetsOneLineAndChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	repo := f.createPipeline("e2e", "e2e")
	before := f.mustCI("pipeline", "list", "-o", "json")

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"pipeline", "create", "e2e", "--source", "file://" + repo}, `"e2e"`},
		{[]string{"pipeline", "create", "other", "--source", "file://" + repo, "--ref", "relase"},
			"relase"},
		{[]string{"pipeline", "create", "other", "--source", "file:///nonexistent/repo"},
			"nonexistent"},
		{[]string{"run", "nope"}, "nope"},
		{[]string{"runs", "show", "999"}, "999"},
		{[]string{"workers", "suspend", "ghost"}, "ghost"},
		{[]string{"pin", "e2e@v9.9.9"}, "v9.9.9"},
	}
	for _, tt := range tests {
		_, err := f.ci(tt.args...)
		if err == nil {
			t.Errorf("ci %v succeeded", tt.args)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.want) || strings.Count(msg, "ci: ") != 1 {
			t.Errorf("ci %v: %v; want one line naming %s", tt.args, msg, tt.want)
		}
	}
	if after := f.mustCI("pipeline", "list", "-o", "json"); after != before {
		t.Errorf("pipelines changed:\nbefore %s\nafter %s", before, after)
	}
}

var _ = syscall.SIGKILL
