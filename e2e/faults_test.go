package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fault suite: each TestFault scenario breaks a real fleet on purpose
// and checks that nothing is lost, stuck or done twice (see settle). `make
// faults` runs them and prints the figures of figures_test.go.

func (f *fleet) runFaults(params ...string) runJSON {
	f.t.Helper()
	args := []string{"run", "faults"}
	for _, p := range params {
		args = append(args, "--param", p)
	}
	var r runJSON
	f.jsonOf(&r, args...)
	return r
}

// processesWith lists the processes whose command line holds s.
func processesWith(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue // a zombie has ended; only its parent has not read its status
		}
		if bytes.Contains(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestFaultWorkerFrozenPastItsLeaseLearnsItAndStops(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1", "w2")
	f.createPipeline("faults", "faults")

	r := f.runFaults("mode=sleep", "sleep=2500ms")
	r = f.waitJob(r.ID, "act", "running")
	victim := r.job("act").Worker
	time.Sleep(200 * time.Millisecond)
	f.workers[victim].signal(syscall.SIGSTOP)
	f.waitWorker(victim, "lost")
	eventually(t, 30*time.Second, func() bool { return f.run(r.ID).job("act").Attempts == 2 },
		"the job to go to the other worker")
	f.workers[victim].signal(syscall.SIGCONT)

	r = f.settle(r.ID, time.Minute)
	act := r.job("act")
	if r.Status != "succeeded" || act.Worker == victim || act.History[0].Status != "lost" {
		t.Fatalf("run %s, act = %+v; want success elsewhere after a lost attempt", r.Status, act)
	}
	first := strconv.FormatUint(act.History[0].ID, 10)
	eventually(t, time.Minute, func() bool {
		out := f.workers[victim].out.String()
		return strings.Contains(out, "attempt="+first) &&
			(strings.Contains(out, "result refused") || strings.Contains(out, "attempt revoked")) &&
			strings.Contains(out, "pipeline program stopped")
	}, "the thawed worker to learn its attempt was taken and stop its program")
}

func TestFaultWorkerStoppedWithSIGTERMDrainsItsJob(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1")
	f.createPipeline("faults", "faults")

	r := f.runFaults("mode=sleep", "sleep=2s")
	f.waitJob(r.ID, "act", "running")
	w := f.workers["w1"]
	w.signal(syscall.SIGTERM)
	for done := false; !done; {
		select {
		case <-w.done:
			done = true
		case <-time.After(100 * time.Millisecond):
			var ws []workerJSON
			out, err := f.ci("workers", "list", "-o", "json")
			if err == nil && json.Unmarshal([]byte(out), &ws) == nil {
				for _, x := range ws {
					if x.State == "lost" {
						t.Errorf("a draining worker was shown lost")
					}
				}
			}
		}
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("drained worker exited %d", code)
	}
	var ws []workerJSON
	f.jsonOf(&ws, "workers", "list")
	if len(ws) != 0 {
		t.Errorf("a worker that drained and left is still listed: %+v", ws)
	}
	// The run's other job waits for a worker, which comes.
	if q := f.run(r.ID).job("flood"); q.Status != "queued" {
		t.Errorf("flood = %+v, want it queued while no worker is there", q)
	}
	f.startWorker("w2")
	r = f.settle(r.ID, 30*time.Second)
	if act := r.job("act"); r.Status != "succeeded" || act.Attempts != 1 || act.Worker != "w1" {
		t.Fatalf("run %s, act = %+v; want it finished by the draining worker", r.Status, act)
	}
}

func TestFaultFiftyRunsAtOnceEndOnceEach(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1", "w2")
	f.createPipeline("faults", "faults")

	ids := make(chan uint64, 50)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := f.ci("run", "faults", "-o", "json")
			var r runJSON
			if err != nil || json.Unmarshal([]byte(out), &r) != nil {
				t.Errorf("run: %v %s", err, out)
				return
			}
			ids <- r.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[uint64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("run id %d given twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 50 {
		t.Fatalf("%d distinct runs, want 50", len(seen))
	}
	for id := range seen {
		if r := f.settle(id, 2*time.Minute); r.Status != "succeeded" {
			t.Errorf("run %d %s: %s", id, r.Status, r.Reason)
		}
	}
}

func TestFaultConcurrentRecompilesOfOneCommitCompileOnce(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t)
	repo := f.createPipeline("faults", "faults")
	os.WriteFile(filepath.Join(repo, "extra.go"), []byte("package main\n\nvar _ = 1\n"), 0o644)
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-qm", "a new commit")
	before := strings.Count(f.master.out.String(), "msg=compiled")

	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.ci("recompile", "faults"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(f.master.out.String(), "msg=compiled") - before; n != 1 {
		t.Fatalf("5 recompiles of one commit ran the compiler %d times", n)
	}
}

func TestFaultMisbehavingProgramsFailTheirJobAndLeaveNoProcess(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1")
	f.createPipeline("faults", "faults")

	tests := []struct{ mode, want string }{
		{"crash", "exited"},
		{"panic", `job "act" panicked`},
		{"exit", "exit status 7"},
		{"hang", "timed out after 3s"},
		{"children", "timed out after 3s"},
	}
	for i, tt := range tests {
		marker := fmt.Sprint(os.Getpid()*100 + i)
		r := f.runFaults("mode="+tt.mode, "marker="+marker)
		r = f.settle(r.ID, time.Minute)
		act := r.job("act")
		if r.Status != "failed" || act.Status != "failed" || !strings.Contains(act.Error, tt.want) {
			t.Errorf("%s: run %s, act %s: %q; want failed with %q", tt.mode, r.Status,
				act.Status, act.Error, tt.want)
		}
		eventually(t, 10*time.Second, func() bool {
			return len(processesWith("sleep 600."+marker)) == 0
		}, "the children of %s to be gone", tt.mode)
	}
}

func TestFaultProgramsDieWithTheirWorker(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1", "w2")
	f.createPipeline("faults", "faults")
	r := f.runFaults("mode=sleep", "sleep=2500ms")
	r = f.waitJob(r.ID, "act", "running")
	victim := r.job("act").Worker
	bin := filepath.Join(f.dir, victim, "bin")
	eventually(t, 10*time.Second, func() bool { return len(processesWith(bin)) > 0 },
		"the program to start")
	f.workers[victim].kill()
	eventually(t, 10*time.Second, func() bool { return len(processesWith(bin)) == 0 },
		"the programs of the killed worker to die with it")
	f.settle(r.ID, time.Minute)
}

func TestFaultLogFloodKeepsEveryByteInOrderUpToTheCap(t *testing.T) {
	t.Parallel()
	scenario(t)
	lines := 3000
	if v := os.Getenv("KILN_FAULT_FLOOD_LINES"); v != "" {
		lines, _ = strconv.Atoi(v)
	}
	f := newFleet(t, "w1")
	f.createPipeline("faults", "faults")

	begin := time.Now()
	r := f.runFaults("mode=flood", fmt.Sprintf("lines=%d", lines))
	slowest := time.Duration(0)
	for !isEnded(f.run(r.ID).Status) {
		t0 := time.Now()
		f.mustCI("workers", "list")
		slowest = max(slowest, time.Since(t0))
		time.Sleep(100 * time.Millisecond)
	}
	r = f.settle(r.ID, time.Minute)
	if r.Status != "succeeded" {
		t.Fatalf("flood run %s: %s", r.Status, r.Reason)
	}
	var want bytes.Buffer
	for i := 0; i < lines; i++ {
		want.Write(floodLine(i))
	}
	got := []byte(f.mustCI("logs", fmt.Sprint(r.ID), "flood"))
	const logCap = 64 << 20
	kept := min(want.Len(), logCap)
	lost := int64(kept - commonPrefix(got, want.Bytes()))
	recordLog(int64(kept), lost)
	if lost != 0 {
		t.Errorf("%d of %d bytes of the log were lost or changed", lost, kept)
	}
	if want.Len() > logCap && !bytes.Contains(got[kept:], []byte("[kiln: log truncated")) {
		t.Errorf("a log past the cap has no truncation mark")
	}
	if slowest > time.Second {
		t.Errorf("the master took %s to answer during the flood", slowest)
	}
	t.Logf("flood of %d bytes in %s; the slowest answer meanwhile took %s", want.Len(),
		time.Since(begin).Round(time.Millisecond), slowest)
}

func isEnded(status string) bool {
	return status == "succeeded" || status == "failed" || status == "cancelled"
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// floodLine is line i of the faults pipeline's flood (its FloodLine).
func floodLine(i int) []byte {
	body := fmt.Sprintf("%08d \x1b[3%dmcolour\x1b[0m \xff\xfe progress %d%%\r", i, i%8, i%100)
	if i%100 == 99 || i == 150 {
		size := 64 << 10
		if i == 150 {
			size = 1 << 20 // one line of a whole MiB
		}
		pad := make([]byte, size)
		for k := range pad {
			pad[k] = byte('a' + (i+k)%26)
		}
		body += string(pad)
	}
	return []byte(body + "\n")
}

// The scenario gives the worker a small file system of its own, so that
// filling it says nothing about the rest of the machine and nothing else
// moves its free space. It needs root, to mount a tmpfs.
func TestFaultWorkerLowOnDiskGetsNoJobsUntilItRecovers(t *testing.T) {
	t.Parallel()
	scenario(t)
	data := filepath.Join(t.TempDir(), "w1")
	os.MkdirAll(data, 0o700)
	mount := exec.Command("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", data)
	if out, err := mount.CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs for the worker (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", data).Run() })
	f := newFleet(t)
	f.createPipeline("faults", "faults")
	f.startWorker("w1", "--data", data, "--min-free-disk", fmt.Sprint(48<<20))
	f.waitWorker("w1", "ready")

	ballast := filepath.Join(data, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 100<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f.waitWorker("w1", "unhealthy")
	r := f.runFaults()
	time.Sleep(4 * heartbeat)
	if got := f.run(r.ID); got.job("act").Status != "queued" {
		t.Fatalf("a job went to a worker low on disk: %+v", got.job("act"))
	}
	var runs []struct {
		Jobs []struct{ Waiting string } `json:"jobs"`
	}
	f.jsonOf(&runs, "runs", "list", "faults")
	if w := runs[0].Jobs[0].Waiting; !strings.Contains(w, "unhealthy") {
		t.Errorf("the queued job says it waits because %q; want the unhealthy worker named", w)
	}

	os.Remove(ballast)
	f.waitWorker("w1", "ready")
	if r = f.settle(r.ID, 30*time.Second); r.Status != "succeeded" {
		t.Fatalf("run after the disk recovered: %s %s", r.Status, r.Reason)
	}
}

func TestFaultWorkerThatDiesBeforeAcceptingLosesTheJobToTheNext(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1", "w2")
	f.createPipeline("faults", "faults")
	f.mustCI("workers", "suspend", "w2")
	f.waitWorker("w2", "suspended")

	// w1 freezes, gets the job while its last heartbeat is still fresh,
	// and dies without ever seeing it.
	f.workers["w1"].signal(syscall.SIGSTOP)
	r := f.runFaults()
	deadline := time.Now().Add(2 * time.Second)
	for r.job("act").Worker != "w1" {
		if time.Now().After(deadline) {
			// The machine was too slow to assign within w1's last
			// heartbeat's life; the scenario did not happen.
			f.workers["w1"].signal(syscall.SIGCONT)
			t.Skip("w1 went silent before the job was assigned to it")
		}
		time.Sleep(20 * time.Millisecond)
		r = f.run(r.ID)
	}
	f.workers["w1"].kill()
	f.mustCI("workers", "resume", "w2")

	r = f.settle(r.ID, 30*time.Second)
	act := r.job("act")
	if r.Status != "succeeded" || act.Worker != "w2" || len(act.History) != 2 ||
		act.History[0].Status != "revoked" {
		t.Fatalf("run %s, act = %+v; want it revoked on w1 and run on w2", r.Status, act)
	}
}

func TestFaultCancelInEveryState(t *testing.T) {
	t.Parallel()
	scenario(t)
	f := newFleet(t, "w1")
	f.createPipeline("faults", "faults")

	// Queued: no worker may take it.
	f.mustCI("workers", "suspend", "w1")
	r := f.runFaults()
	f.mustCI("runs", "cancel", fmt.Sprint(r.ID))
	if r = f.settle(r.ID, 10*time.Second); r.Status != "cancelled" || r.job("act").Attempts != 0 {
		t.Errorf("cancel of a queued run: %s, act %+v", r.Status, r.job("act"))
	}
	f.mustCI("workers", "resume", "w1")
	f.waitWorker("w1", "ready")

	// Assigned but not accepted: the worker is frozen when it gets the job.
	f.workers["w1"].signal(syscall.SIGSTOP)
	r = f.runFaults("mode=sleep", "sleep=2s")
	eventually(t, 5*time.Second, func() bool { return f.run(r.ID).job("act").Attempts == 1 },
		"the job to be assigned")
	f.mustCI("runs", "cancel", fmt.Sprint(r.ID))
	f.workers["w1"].signal(syscall.SIGCONT)
	if r = f.settle(r.ID, 10*time.Second); r.Status != "cancelled" {
		t.Errorf("cancel of an assigned run: %s", r.Status)
	}
	f.waitWorker("w1", "ready")
	time.Sleep(2 * heartbeat)
	if log, _ := f.ci("logs", fmt.Sprint(r.ID), "act"); strings.Contains(log, "done") {
		t.Errorf("the cancelled assignment ran to its end:\n%s", log)
	}

	// While its log is uploading: what arrived is a prefix of what was
	// written, in order.
	r = f.runFaults("mode=flood", "lines=200000")
	eventually(t, 30*time.Second, func() bool {
		log, _ := f.ci("logs", fmt.Sprint(r.ID), "flood")
		return len(log) > 1<<20
	}, "the flood to be under way")
	// The flood may beat the cancel to its end; either way the log holds.
	f.ci("runs", "cancel", fmt.Sprint(r.ID))
	r = f.settle(r.ID, 30*time.Second)
	time.Sleep(time.Second)
	got := []byte(f.mustCI("logs", fmt.Sprint(r.ID), "flood"))
	var want bytes.Buffer
	for i := 0; want.Len() < len(got); i++ {
		want.Write(floodLine(i))
	}
	n := commonPrefix(got, want.Bytes())
	tail := bytes.TrimLeft(got[n:], "\n")
	if len(tail) > 0 && !bytes.HasPrefix(tail, []byte("[kiln: job stopped")) &&
		!bytes.HasPrefix(tail, []byte("[kiln: log truncated")) {
		t.Errorf("the log of the cancelled flood differs from what was written after %d bytes: %q",
			n, tail[:min(len(tail), 200)])
	}
	recordLog(int64(n), 0)
}
