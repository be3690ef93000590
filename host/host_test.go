package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

	"github.com/kilnci/kiln/proto/pluginpb"
)

var programs = map[string]string{} // name -> binary path

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-host-test")
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"behave", "noisy"} {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, "./testdata/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			panic(fmt.Sprintf("build %s: %v\n%s", name, err, b))
		}
		programs[name] = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func digestOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func start(t *testing.T, name string) *Plugin {
	t.Helper()
	path := programs[name]
	p, err := Start(context.Background(), Config{Path: path, Digest: digestOf(t, path),
		Env: []string{"PATH=" + os.Getenv("PATH")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func execute(t *testing.T, p *Plugin, ctx context.Context,
	job string) (*pluginpb.Result, string, error) {
	t.Helper()
	var log bytes.Buffer
	res, err := p.Execute(ctx, &pluginpb.ExecuteRequest{Job: job, Workspace: t.TempDir(),
		Run: &pluginpb.RunFacts{RunId: 1}}, &log, 300*time.Millisecond)
	return res, log.String(), err
}

func TestDescribeReturnsTheGraph(t *testing.T) {
	t.Parallel()
	d, err := start(t, "behave").Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "behave" || len(d.Jobs) != 10 || d.SdkProtocol != 1 {
		t.Fatalf("description = %v", d)
	}
	if got := d.Jobs[1].DependsOn; len(got) != 1 || got[0] != "ok" {
		t.Errorf("fail depends on %v, want [ok]", got)
	}
}

func TestJobOutcomes(t *testing.T) {
	t.Parallel()
	p := start(t, "behave")
	tests := []struct {
		job     string
		ok      bool
		wantErr string
		wantLog string
	}{
		{"ok", true, "", "hello from ok"},
		{"fail", false, "the tests are red", "about to fail"},
		{"panic", false, `job "panic" panicked: assignment to entry in nil map`, ""},
		{"slow", false, "timed out after 300ms", ""},
		{"exec", false, "exit status 4", "out\nerr\n"},
	}
	for _, tt := range tests {
		t.Run(tt.job, func(t *testing.T) {
			res, log, err := execute(t, p, context.Background(), tt.job)
			if err != nil {
				t.Fatal(err)
			}
			if res.Ok != tt.ok || !strings.Contains(res.Error, tt.wantErr) {
				t.Fatalf("result = ok %v, error %q; want ok %v, error containing %q",
					res.Ok, res.Error, tt.ok, tt.wantErr)
			}
			if !strings.Contains(log, tt.wantLog) {
				t.Errorf("log = %q, want it to contain %q", log, tt.wantLog)
			}
		})
	}
}

func TestProgramGetsOnlyTheEnvironmentItIsGiven(t *testing.T) {
	t.Setenv("KILN_TEST_SECRET", "hunter2")
	res, _, err := execute(t, start(t, "behave"), context.Background(), "ok")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs["answer"] != "42" || res.Outputs["env_secret"] != "" {
		t.Fatalf("outputs = %v: want the answer and no secret", res.Outputs)
	}
}

func TestHungJobIsKilledAfterGrace(t *testing.T) {
	t.Parallel()
	p := start(t, "behave")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(errors.New("cancelled by admin")) })
	begin := time.Now()
	_, log, err := execute(t, p, ctx, "hang")
	if err == nil || !strings.Contains(err.Error(), "cancelled by admin") ||
		!strings.Contains(err.Error(), "killed") {
		t.Fatalf("err = %v, want a kill that names the cause", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("took %s to kill a hung job with 300ms grace", d)
	}
	if !strings.Contains(log, "ignoring my context") {
		t.Errorf("log = %q", log)
	}
	waitFor(t, p.Exited)
}

func TestStopKillsChildProcesses(t *testing.T) {
	t.Parallel()
	p := start(t, "behave")
	res, _, err := execute(t, p, context.Background(), "child")
	if err != nil || !res.Ok {
		t.Fatalf("child job: %v %v", res, err)
	}
	pid, _ := strconv.Atoi(res.Outputs["pid"])
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("child %d is not running before Stop", pid)
	}
	p.Stop()
	waitFor(t, func() bool {
		// A killed child stays a zombie until its parent is reaped; both
		// count as gone once the process no longer runs.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
}

func TestProgramThatDiesMidJobFailsTheJob(t *testing.T) {
	t.Parallel()
	for _, job := range []string{"crash", "exit"} {
		t.Run(job, func(t *testing.T) {
			t.Parallel()
			_, _, err := execute(t, start(t, "behave"), context.Background(), job)
			if err == nil || !strings.Contains(err.Error(), "exited") {
				t.Fatalf("err = %v, want the program's exit", err)
			}
			if job == "crash" && !strings.Contains(err.Error(), "panic: giving up") {
				t.Fatalf("err = %v, want the panic from its stderr", err)
			}
			if job == "exit" && !strings.Contains(err.Error(), "exit status 3") {
				t.Fatalf("err = %v, want the exit status", err)
			}
		})
	}
}

func TestProgramWritingToStdoutIsRefusedClearly(t *testing.T) {
	t.Parallel()
	path := programs["noisy"]
	_, err := Start(context.Background(), Config{Path: path, Digest: digestOf(t, path)})
	if !errors.Is(err, ErrStdout) || !strings.Contains(err.Error(), "starting up!") {
		t.Fatalf("err = %v, want ErrStdout quoting the line", err)
	}
}

func TestWrongDigestIsRefused(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Config{Path: programs["behave"],
		Digest: "sha256:" + strings.Repeat("0", 64)})
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("err = %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWhatAProgramPrintsReachesItsOutput(t *testing.T) {
	t.Parallel()
	path := programs["behave"]
	var out lockedBuffer
	p, err := Start(context.Background(), Config{Path: path, Digest: digestOf(t, path), Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if _, _, err := execute(t, p, context.Background(), "print"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		s := out.String()
		return strings.Contains(s, "hello on stdout") && strings.Contains(s, "hello on stderr")
	})
}

func TestPanicStackGoesToTheLogAndTheErrorStaysShort(t *testing.T) {
	t.Parallel()
	res, log, err := execute(t, start(t, "behave"), context.Background(), "panic")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Error, "goroutine") || !strings.Contains(log, "goroutine") {
		t.Fatalf("error = %q; log = %q: want the stack in the log only", res.Error, log)
	}
}
