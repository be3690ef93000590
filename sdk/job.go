package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// J is the handle a running job gets: its log, the run's parameters, the
// outputs of the jobs it depends on, its own outputs and its workspace.
type J struct {
	name      string
	params    map[string]string
	inputs    map[string]map[string]string
	workspace string
	run       RunFacts
	log       io.Writer

	mu      sync.Mutex
	outputs map[string]string // guarded by mu
}

// RunFacts says which run, pipeline and commit a job belongs to.
type RunFacts struct {
	RunID    uint64
	Pipeline string
	Version  uint64
	// Source is the git URL the pipeline was fetched from, Dir the folder
	// in it that holds the pipeline program.
	Source string
	Dir    string
	Ref    string
	Commit string
	// Attempt counts from 1.
	Attempt uint32
	Worker  string
}

// Name returns the job's name.
func (j *J) Name() string { return j.name }

// Log returns the writer for the job's log. It is safe for concurrent use.
func (j *J) Log() io.Writer { return j.log }

// Logf writes one line to the job's log.
func (j *J) Logf(format string, args ...any) {
	fmt.Fprintf(j.log, format+"\n", args...)
}

// Param returns the value of a run parameter, or its default.
func (j *J) Param(name string) string { return j.params[name] }

// Input returns the output key of the job named job, which this job must
// depend on. It returns "" when that job did not set the key.
func (j *J) Input(job, key string) string { return j.inputs[job][key] }

// SetOutput records an output for the jobs that depend on this one.
func (j *J) SetOutput(key, value string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.outputs[key] = value
}

// Workspace returns the job's own folder, empty when the job starts.
func (j *J) Workspace() string { return j.workspace }

// Run returns the facts of the run this job belongs to.
func (j *J) Run() RunFacts { return j.run }

// Exec runs a command in the workspace with its output streamed into the
// job's log. See ExecIn.
func (j *J) Exec(ctx context.Context, name string, args ...string) error {
	return j.ExecIn(ctx, j.workspace, name, args...)
}

// ExecIn runs a command in dir with its stdout and stderr streamed into the
// job's log. The command is killed when ctx is done. It stays in the
// pipeline program's process group, which the worker kills as a whole when
// it stops the program, so that no child of a job outlives it.
func (j *J) ExecIn(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = j.log
	cmd.Stderr = j.log
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(j.log, "$ %s\n", strings.Join(append([]string{name}, args...), " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Checkout clones the pipeline's source at the run's commit into the
// workspace and returns the clone's root folder.
func (j *J) Checkout(ctx context.Context) (string, error) {
	if j.run.Source == "" || j.run.Commit == "" {
		return "", errors.New("checkout: this run has no source to check out " +
			"(ci exec outside a git repository?)")
	}
	dir := filepath.Join(j.workspace, "src")
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("checkout: %w", err)
	}
	steps := [][]string{
		{"git", "init", "--quiet", dir},
		{"git", "-C", dir, "fetch", "--quiet", "--", j.run.Source, j.run.Commit},
		{"git", "-C", dir, "checkout", "--quiet", "--detach", j.run.Commit},
	}
	for _, s := range steps {
		if err := j.ExecIn(ctx, j.workspace, s[0], s[1:]...); err != nil {
			return "", fmt.Errorf("checkout of %s at %s: %w", j.run.Source, j.run.Commit, err)
		}
	}
	return dir, nil
}

func (j *J) outputsCopy() map[string]string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make(map[string]string, len(j.outputs))
	for k, v := range j.outputs {
		out[k] = v
	}
	return out
}
