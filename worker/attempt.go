package worker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
)

// attempt is one assignment this worker accepted.
type attempt struct {
	a      *kilnpb.Assignment
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// start takes an assignment, unless the worker drains: then the master
// gives it to another worker at the accept timeout.
func (w *Worker) start(a *kilnpb.Assignment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining || w.attempts[a.AttemptId] != nil {
		return
	}
	ctx, cancel := context.WithCancelCause(w.life)
	at := &attempt{a: a, ctx: ctx, cancel: cancel}
	w.attempts[a.AttemptId] = at
	w.wakeLocked()
	w.wg.Add(1)
	go w.run(at)
}

// revoke stops an attempt the master took back.
func (w *Worker) revoke(id uint64, reason string) {
	w.mu.Lock()
	at := w.attempts[id]
	w.mu.Unlock()
	if at != nil {
		w.log.Info("attempt revoked", "attempt", id, "job", at.a.Job, "reason", reason)
		at.cancel(errors.New(reason))
	}
}

// stopAll cancels every attempt, when the worker must stop at once.
func (w *Worker) stopAll(reason string) {
	w.mu.Lock()
	for _, at := range w.attempts {
		at.cancel(errors.New(reason))
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *Worker) run(at *attempt) {
	defer w.wg.Done()
	defer func() {
		w.mu.Lock()
		delete(w.attempts, at.a.AttemptId)
		w.wakeLocked()
		w.mu.Unlock()
	}()
	log := w.log.With("run_id", at.a.Run.GetRunId(), "job", at.a.Job, "attempt", at.a.AttemptId)

	if err := w.call(at.ctx, func(ctx context.Context) error {
		_, err := w.link.Accept(ctx, &kilnpb.AttemptRequest{AttemptId: at.a.AttemptId})
		return err
	}); err != nil {
		log.Info("assignment not taken", "err", err)
		return
	}
	log.Info("job started")
	res, logBytes := w.execute(at, log)
	log.Info("job ended", "ok", res.Ok, "error", oneLine(res.Error))
	w.finish(at, res, logBytes, log)
}

// execute runs the job and uploads its log. It never fails: what goes
// wrong becomes the job's error.
func (w *Worker) execute(at *attempt,
	log interface{ Info(string, ...any) }) (*pluginpb.Result, int64) {
	a := at.a
	up := newUploader(w, a.AttemptId, filepath.Join(w.cfg.DataDir, "spool",
		strconv.FormatUint(a.AttemptId, 10)+".log"))
	defer up.remove()
	if err := up.open(); err != nil {
		return failed("open log spool: %v", err), 0
	}
	go up.run()

	res := w.runJob(at, up)
	if !res.Ok && at.ctx.Err() != nil {
		fmt.Fprintf(up, "\n[kiln: job stopped: %v]\n", context.Cause(at.ctx))
	}
	n, err := up.close()
	if err != nil {
		log.Info("log upload incomplete", "err", err)
	}
	return res, n
}

func (w *Worker) runJob(at *attempt, up *uploader) *pluginpb.Result {
	a := at.a
	path, digest, err := w.bins.get(at.ctx, a)
	if err != nil {
		return failed("%v", err)
	}
	ws, err := w.workspace(a)
	if err != nil {
		return failed("workspace: %v", err)
	}
	defer func() {
		os.RemoveAll(ws)
		// The run's folder goes once its last job is done; under wsMu, so
		// that it cannot vanish between another job's making of it and of
		// that job's own folder inside.
		w.wsMu.Lock()
		os.Remove(filepath.Dir(ws))
		w.wsMu.Unlock()
	}()

	sess, err := w.acquire(a.Run.GetRunId(), digest, path)
	if err != nil {
		return failed("%v", err)
	}
	ctx := at.ctx
	if a.TimeoutMs > 0 {
		d := time.Duration(a.TimeoutMs) * time.Millisecond
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("timed out after %s", d))
		defer cancel()
	}
	facts := a.Run
	facts.Worker = w.cfg.Name
	sess.out.attach(a.Run.GetRunId(), a.AttemptId, up)
	res, err := sess.plugin.Execute(ctx, &pluginpb.ExecuteRequest{
		Job: a.Job, Params: a.Params, Inputs: a.Inputs, Workspace: ws, Run: facts,
	}, up, w.cfg.Grace)
	sess.out.detach(a.AttemptId)
	w.release(a.Run.GetRunId(), sess, err != nil || ctx.Err() != nil)
	if err != nil {
		return failed("%v", err)
	}
	return res
}

func failed(format string, args ...any) *pluginpb.Result {
	return &pluginpb.Result{Ok: false, Error: fmt.Sprintf(format, args...)}
}

// workspace makes a fresh, empty folder for the attempt.
func (w *Worker) workspace(a *kilnpb.Assignment) (string, error) {
	dir := filepath.Join(w.cfg.DataDir, "work", strconv.FormatUint(a.Run.GetRunId(), 10),
		url.PathEscape(a.Job)+"-"+strconv.FormatUint(a.AttemptId, 10))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	w.wsMu.Lock()
	defer w.wsMu.Unlock()
	return dir, os.MkdirAll(dir, 0o755)
}

// finish reports the result until the master takes or refuses it. A
// worker that stops meanwhile keeps trying while it drains.
func (w *Worker) finish(at *attempt, res *pluginpb.Result, logBytes int64,
	log interface{ Info(string, ...any) }) {
	err := w.call(w.life, func(ctx context.Context) error {
		_, err := w.link.Finish(ctx, &kilnpb.FinishRequest{
			AttemptId: at.a.AttemptId, Ok: res.Ok, Error: res.Error, Outputs: res.Outputs,
			LogBytes: logBytes,
		})
		return err
	})
	if status.Code(err) == codes.FailedPrecondition {
		log.Info("result refused", "reason", status.Convert(err).Message())
	}
}

// call makes a worker call, retrying what may succeed later until ctx
// ends. Retries wait for the session to come back after a rejoin.
func (w *Worker) call(ctx context.Context, f func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(w.auth(ctx), 30*time.Second)
		err := f(cctx)
		cancel()
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
