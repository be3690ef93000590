// Package local runs a pipeline on this machine without a master, for
// authors (`ci exec`). It drives the same scheduler as the master, with
// one in-process worker, so that the graph, skips and outputs behave as
// they will on a fleet.
package local

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/host"
	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/scheduler"
)

// Config says what to run. Zero fields take the documented defaults.
type Config struct {
	// Binary and Digest name the compiled pipeline program. Required.
	Binary string
	Digest string
	// Description is what the program described. Required.
	Description *pluginpb.Description
	// Params are the run's resolved parameters.
	Params map[string]string
	// Facts are passed to every job; RunID defaults to 1.
	Facts *pluginpb.RunFacts
	// Slots is how many jobs run at once; default 4.
	Slots int
	// WorkDir holds the jobs' workspaces. Required.
	WorkDir string
	// Env is the program's environment.
	Env []string
	// Out receives every job's log, each line prefixed with its job.
	Out io.Writer
	// Grace is how long a cancelled job gets to stop; default 5s.
	Grace time.Duration
	// OnChange is called after every change of the run, with a clone.
	OnChange func(*scheduler.Run)
}

// Run runs every job of the pipeline and returns the ended run. ctx
// cancels the run.
func Run(ctx context.Context, cfg Config) (*scheduler.Run, error) {
	if cfg.Slots <= 0 {
		cfg.Slots = 4
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	facts := cfg.Facts
	if facts == nil {
		facts = &pluginpb.RunFacts{}
	}
	if facts.RunId == 0 {
		facts.RunId = 1
	}
	out := &prefixer{w: cfg.Out}
	// What the program prints outside the jobs' logs is shown too, under
	// its own prefix: jobs run side by side here.
	p, err := host.Start(ctx, host.Config{Path: cfg.Binary, Digest: cfg.Digest, Env: cfg.Env,
		Output: out.job("(program)")})
	if err != nil {
		return nil, err
	}
	defer p.Stop()

	x := &executor{cfg: cfg, plugin: p, facts: facts, out: out,
		results: make(chan result, cfg.Slots)}
	return x.run(ctx)
}

type result struct {
	a   scheduler.Assignment
	res *pluginpb.Result
}

type executor struct {
	cfg     Config
	plugin  *host.Plugin
	facts   *pluginpb.RunFacts
	out     *prefixer
	results chan result
	wg      sync.WaitGroup
}

func (x *executor) run(ctx context.Context) (*scheduler.Run, error) {
	var ids uint64
	eng := scheduler.New(scheduler.Config{TTL: 24 * time.Hour, AcceptTimeout: 24 * time.Hour,
		NextAttemptID: func() uint64 { ids++; return ids }})
	now := time.Now()
	w, _, err := eng.Join(scheduler.JoinInfo{Name: "local", Slots: x.cfg.Slots, Session: "local"}, now)
	if err != nil {
		return nil, err
	}
	if err := eng.Connect(w.ID, "local", now); err != nil {
		return nil, err
	}
	run := x.newRun()
	eng.AddRun(run, now)

	cancelled := false
	for !run.Status.Final() {
		x.apply(ctx, eng, eng.Effects(), w.ID, run)
		select {
		case r := <-x.results:
			eng.Finish(r.a.Attempt, w.ID, scheduler.Result{OK: r.res.Ok, Error: r.res.Error,
				Outputs: r.res.Outputs}, time.Now())
		case <-ctx.Done():
			if !cancelled {
				cancelled = true
				eng.Cancel(run.ID, "cancelled: "+context.Cause(ctx).Error(), time.Now())
			}
		}
	}
	x.apply(ctx, eng, eng.Effects(), w.ID, run)
	x.wg.Wait()
	return run, nil
}

func (x *executor) newRun() *scheduler.Run {
	run := &scheduler.Run{ID: x.facts.RunId, Pipeline: x.facts.Pipeline, Params: x.cfg.Params}
	for _, j := range x.cfg.Description.Jobs {
		run.Jobs = append(run.Jobs, &scheduler.Job{Name: j.Name, DependsOn: j.DependsOn,
			Timeout: time.Duration(j.TimeoutMs) * time.Millisecond, Retries: -1})
	}
	return run
}

// apply starts what the engine assigned; the executor's only worker
// accepts at once.
func (x *executor) apply(ctx context.Context, eng *scheduler.Engine, eff scheduler.Effects,
	worker uint64, run *scheduler.Run) {
	for _, a := range eff.Assign {
		eng.Accept(a.Attempt, worker, time.Now())
		x.wg.Add(1)
		go x.execute(a)
	}
	if x.cfg.OnChange != nil && len(eff.Changed) > 0 {
		x.cfg.OnChange(run.Clone())
	}
}

func (x *executor) execute(a scheduler.Assignment) {
	defer x.wg.Done()
	ws := filepath.Join(x.cfg.WorkDir, a.Job+"-"+strconv.FormatUint(a.Attempt, 10))
	res := x.runJob(a, ws)
	x.results <- result{a, res}
}

func (x *executor) runJob(a scheduler.Assignment, ws string) *pluginpb.Result {
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return &pluginpb.Result{Error: err.Error()}
	}
	inputs := map[string]*pluginpb.Outputs{}
	for job, out := range a.Inputs {
		inputs[job] = &pluginpb.Outputs{Values: out}
	}
	ctx := context.Background()
	if a.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, a.Timeout,
			fmt.Errorf("timed out after %s", a.Timeout))
		defer cancel()
	}
	facts := proto.Clone(x.facts).(*pluginpb.RunFacts)
	facts.Attempt, facts.Worker = uint32(a.Number), "local"
	log := x.out.job(a.Job)
	defer log.flush()
	res, err := x.plugin.Execute(ctx, &pluginpb.ExecuteRequest{
		Job: a.Job, Params: maps.Clone(x.cfg.Params), Inputs: inputs, Workspace: ws, Run: facts,
	}, log, x.cfg.Grace)
	if err != nil {
		return &pluginpb.Result{Error: err.Error()}
	}
	return res
}
