package e2e

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// figures are what the fault suite measured; TestMain writes them, one
// `name value unit` a line, to the file named by KILN_FAULT_FIGURES.
var figures struct {
	mu        sync.Mutex
	scenarios int
	runs      int
	stuck     int
	twice     int
	detect    []time.Duration
	logBytes  int64
	logLost   int64
}

// scenario counts a fault scenario that runs. Fault scenarios are heavy:
// -short runs (Kiln's own pipeline's test job among them) leave them to
// make test and make faults.
func scenario(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("a fault scenario; make faults runs it")
	}
	figures.mu.Lock()
	defer figures.mu.Unlock()
	figures.scenarios++
}

func recordDetect(d time.Duration) {
	figures.mu.Lock()
	defer figures.mu.Unlock()
	figures.detect = append(figures.detect, d)
}

func recordLog(expected, lost int64) {
	figures.mu.Lock()
	defer figures.mu.Unlock()
	figures.logBytes += expected
	figures.logLost += lost
}

// settle waits for a run of a fault scenario to end, and checks the two
// promises every fault keeps: the run ends, and no job completes twice.
func (f *fleet) settle(id uint64, d time.Duration) runJSON {
	f.t.Helper()
	var r runJSON
	deadline := time.Now().Add(d)
	for {
		r = f.run(id)
		if r.Status == "succeeded" || r.Status == "failed" || r.Status == "cancelled" {
			break
		}
		if time.Now().After(deadline) {
			figures.mu.Lock()
			figures.runs++
			figures.stuck++
			figures.mu.Unlock()
			f.t.Errorf("run %d is still %s after %s", id, r.Status, d)
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	twice := 0
	for _, j := range r.Jobs {
		ended := 0
		for _, a := range j.History {
			if a.Status == "succeeded" || a.Status == "failed" {
				ended++
			}
		}
		if ended > 1 {
			twice++
			f.t.Errorf("run %d: job %s completed %d times: %+v", id, j.Name, ended, j.History)
		}
	}
	figures.mu.Lock()
	figures.runs++
	figures.twice += twice
	figures.mu.Unlock()
	return r
}

func writeFigures() {
	path := os.Getenv("KILN_FAULT_FIGURES")
	figures.mu.Lock()
	defer figures.mu.Unlock()
	if path == "" || figures.scenarios == 0 {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "figures:", err)
		return
	}
	defer f.Close()
	var worst time.Duration
	for _, d := range figures.detect {
		worst = max(worst, d)
	}
	fmt.Fprintf(f, "fault_scenarios_run %d scenarios\n", figures.scenarios)
	fmt.Fprintf(f, "fault_runs_checked %d runs\n", figures.runs)
	fmt.Fprintf(f, "runs_lost_or_stuck %d runs\n", figures.stuck)
	fmt.Fprintf(f, "jobs_completed_twice %d jobs\n", figures.twice)
	fmt.Fprintf(f, "lost_worker_detect_max %.2f s\n", worst.Seconds())
	fmt.Fprintf(f, "log_bytes_checked %d bytes\n", figures.logBytes)
	fmt.Fprintf(f, "log_bytes_lost %d bytes\n", figures.logLost)
}
