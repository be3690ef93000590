package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Kiln's own CI (.kiln) is the first real input: a real Go project vetted,
// tested and built by Kiln. These tests run it twice, so they stay out of
// -short runs, which is also what keeps the pipeline's own test job from
// running them again inside itself.

func repoRoot(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root, git(t, root, "rev-parse", "HEAD")
}

func TestKilnCIRunsGreenWithExec(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kiln's whole CI pipeline")
	}
	t.Parallel()
	root, _ := repoRoot(t)
	cmd := exec.Command(ciBin, "exec", ".kiln")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ci exec .kiln: %v\n%s", err, out)
	}
	for _, job := range []string{"gofmt", "vet", "test", "build"} {
		if len(lines(string(out), job+"  ")) == 0 && !strings.Contains(string(out), job) {
			t.Errorf("no line for job %s", job)
		}
	}
	if !strings.Contains(string(out), "built ci:") {
		t.Errorf("build did not report the binary:\n%s", out)
	}
}

func TestKilnCIRunsGreenThroughAMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kiln's whole CI pipeline")
	}
	t.Parallel()
	root, head := repoRoot(t)
	f := newFleet(t, "w1", "w2")
	f.mustCI("pipeline", "create", "kiln", "--source", "file://"+root, "--dir", ".kiln",
		"--ref", head)

	begin := time.Now()
	var r runJSON
	f.jsonOf(&r, "run", "kiln", "--wait")
	if r.Status != "succeeded" {
		for _, j := range r.Jobs {
			log, _ := f.ci("logs", fmt.Sprint(r.ID), j.Name)
			t.Logf("--- %s (%s) ---\n%s", j.Name, j.Status, log)
		}
		t.Fatalf("Kiln's CI through a master: %+v", r)
	}
	used := map[string]bool{}
	for _, j := range r.Jobs {
		used[j.Worker] = true
	}
	t.Logf("Kiln's CI ran in %s on workers %v", time.Since(begin).Round(time.Second), used)
}
