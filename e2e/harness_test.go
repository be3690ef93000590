package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnci/kiln/internal/gitrepo"
)

// ciBin is the ci binary every test runs, built once.
var ciBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		panic(err)
	}
	ciBin = filepath.Join(dir, "ci")
	build := exec.Command("go", "build", "-o", ciBin, "./cmd/ci")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build ci: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	writeFigures()
	os.Exit(code)
}

// proc is a ci process a test started.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(ciBin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, out.String())
		}
	})
	return p
}

func (p *proc) signal(s syscall.Signal) {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(s)
	}
}

func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// waitOutput waits until the process printed s.
func (p *proc) waitOutput(s string, d time.Duration) {
	p.t.Helper()
	eventually(p.t, d, func() bool { return strings.Contains(p.out.String(), s) },
		"%s to print %q; it printed:\n%s", p.name, s, p.out)
}

// fleet is a master with its workers.
type fleet struct {
	t       *testing.T
	dir     string
	addr    string
	http    string // the master's HTTP address
	master  *proc
	workers map[string]*proc
}

const heartbeat = 500 * time.Millisecond

func newFleet(t *testing.T, workers ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: t.TempDir(), addr: freeAddr(t), http: freeAddr(t),
		workers: map[string]*proc{}}
	f.startMaster()
	for _, w := range workers {
		f.startWorker(w)
	}
	for _, w := range workers {
		f.waitWorker(w, "ready")
	}
	return f
}

func (f *fleet) startMaster() {
	f.master = start(f.t, "master", "server", "--data", filepath.Join(f.dir, "master"),
		"--grpc-addr", f.addr, "--http-addr", f.http,
		"--heartbeat-interval", heartbeat.String(), "--log-level", "debug")
	f.master.waitOutput("join a worker", 30*time.Second)
}

func (f *fleet) startWorker(name string, extra ...string) *proc {
	args := append([]string{"worker", "--master", f.addr,
		"--secret-file", filepath.Join(f.dir, "master", "worker.secret"),
		"--name", name, "--data", filepath.Join(f.dir, name), "--log-level", "debug",
		"--grace", "1s"}, extra...)
	p := start(f.t, name, args...)
	f.workers[name] = p
	return p
}

// ci runs a client command against the fleet's master.
func (f *fleet) ci(args ...string) (string, error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ciBin, args...)
	cmd.Env = append(os.Environ(), "KILN_MASTER="+f.addr,
		"KILN_TOKEN_FILE="+filepath.Join(f.dir, "master", "admin.token"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("ci %s: %v: %s", strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (f *fleet) mustCI(args ...string) string {
	f.t.Helper()
	out, err := f.ci(args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// jsonOf runs a client command with -o json and decodes its answer.
func (f *fleet) jsonOf(v any, args ...string) {
	f.t.Helper()
	out := f.mustCI(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		f.t.Fatalf("ci %v: %v\n%s", args, err, out)
	}
}

type workerJSON struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

func (f *fleet) waitWorker(name, state string) {
	f.t.Helper()
	eventually(f.t, 30*time.Second, func() bool {
		var ws []workerJSON
		out, err := f.ci("workers", "list", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &ws) != nil {
			return false
		}
		for _, w := range ws {
			if w.Name == name && w.State == state {
				return true
			}
		}
		return false
	}, "worker %s to be %s", name, state)
}

type runJSON struct {
	ID       uint64    `json:"id"`
	Pipeline string    `json:"pipeline"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason"`
	Jobs     []jobJSON `json:"jobs"`
}

type jobJSON struct {
	Name     string        `json:"name"`
	Status   string        `json:"status"`
	Worker   string        `json:"worker"`
	Attempts int           `json:"attempts"`
	Error    string        `json:"error"`
	History  []attemptJSON `json:"history"`
}

type attemptJSON struct {
	ID     uint64 `json:"id"`
	Worker string `json:"worker"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

func (r runJSON) job(name string) jobJSON {
	for _, j := range r.Jobs {
		if j.Name == name {
			return j
		}
	}
	return jobJSON{}
}

func (f *fleet) run(id uint64) runJSON {
	f.t.Helper()
	var r runJSON
	f.jsonOf(&r, "runs", "show", fmt.Sprint(id))
	return r
}

// waitJob waits until a job of a run reaches the status and returns the run.
func (f *fleet) waitJob(id uint64, job, status string) runJSON {
	f.t.Helper()
	var r runJSON
	eventually(f.t, time.Minute, func() bool {
		r = f.run(id)
		return r.job(job).Status == status
	}, "job %s of run %d to be %s", job, id, status)
	return r
}

func (f *fleet) waitRun(id uint64, d time.Duration) runJSON {
	f.t.Helper()
	var r runJSON
	eventually(f.t, d, func() bool {
		r = f.run(id)
		return r.Status == "succeeded" || r.Status == "failed" || r.Status == "cancelled"
	}, "run %d to end", id)
	return r
}

// createPipeline makes a git repository of a pipeline in testdata and
// registers it.
func (f *fleet) createPipeline(name, example string) string {
	f.t.Helper()
	repo := gitRepo(f.t, filepath.Join("..", "testdata", "pipelines", example))
	f.mustCI("pipeline", "create", name, "--source", "file://"+repo)
	return repo
}

func gitRepo(t *testing.T, src string) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "repo")
	if err := gitrepo.FromDir(src, repo, "pipeline"); err != nil {
		t.Fatal(err)
	}
	return repo
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitrepo.Git(dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func eventually(t *testing.T, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for "+format, append([]any{d}, args...)...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lines returns the lines of s that contain sub.
func lines(s, sub string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return out
}
