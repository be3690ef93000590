package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/store"
)

// master serves the CLI.
type master struct {
	kilnpb.UnimplementedMasterServer
	s *Server
}

// userError turns an error into a gRPC status whose message is the
// sentence for the user.
func userError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, registry.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, store.ErrNotFound),
		errors.Is(err, scheduler.ErrNoWorker):
		code = codes.NotFound
	case errors.Is(err, registry.ErrNoVersion):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = codes.Canceled
	default:
		code = codes.InvalidArgument
	}
	return status.Error(code, err.Error())
}

// buildStream sends a build's progress and its version to the client.
type buildStream interface {
	Send(*kilnpb.BuildEvent) error
	Context() context.Context
}

func progress(stream buildStream) func(string) {
	return func(line string) {
		_ = stream.Send(&kilnpb.BuildEvent{Event: &kilnpb.BuildEvent_Progress{Progress: line}})
	}
}

func sendVersion(stream buildStream, v *kilnpb.Version, err error) error {
	if v != nil {
		if serr := stream.Send(&kilnpb.BuildEvent{Event: &kilnpb.BuildEvent_Version{Version: v}}); serr != nil {
			return serr
		}
	}
	return userError(err)
}

func (m *master) CreatePipeline(req *kilnpb.CreatePipelineRequest,
	stream kilnpb.Master_CreatePipelineServer) error {
	tr := cloneTriggers(req.Triggers)
	tr.Webhook = false // records leave it unset: public derives it from the secret
	if err := m.s.checkTriggers(req.Name, req.Ref, tr, req.WebhookSecret); err != nil {
		return userError(err)
	}
	_, v, err := m.s.reg.Create(stream.Context(), registry.CreateRequest{
		Name: req.Name, Source: req.Source, Ref: req.Ref, Dir: req.Dir,
		Triggers: tr, WebhookSecret: req.WebhookSecret,
	}, progress(stream))
	if err == nil {
		m.s.triggersSet(req.Name, nil, tr)
	}
	return sendVersion(stream, v, err)
}

func (m *master) Recompile(req *kilnpb.RecompileRequest,
	stream kilnpb.Master_RecompileServer) error {
	// The registry logs the version it records.
	v, err := m.s.reg.Build(stream.Context(), req.Name, req.Ref, progress(stream))
	return sendVersion(stream, v, err)
}

func (m *master) Pin(req *kilnpb.PinRequest, stream kilnpb.Master_PinServer) error {
	v, err := m.s.reg.Pin(stream.Context(), req.Name, req.Ref, progress(stream))
	if err == nil {
		// Polls of the new ref count from the version just built; it has
		// not run, so a push of it still runs.
		m.s.trig.setState(req.Name, func(st *kilnpb.TriggerState) {
			st.PollCommit = v.Commit
		})
	}
	return sendVersion(stream, v, err)
}

func (m *master) ListPipelines(context.Context,
	*kilnpb.ListPipelinesRequest) (*kilnpb.ListPipelinesResponse, error) {
	ps, err := m.s.reg.List()
	if err != nil {
		return nil, userError(err)
	}
	for i, p := range ps {
		ps[i] = m.s.public(p, 0)
	}
	return &kilnpb.ListPipelinesResponse{Pipelines: ps}, nil
}

func (m *master) GetPipeline(_ context.Context,
	req *kilnpb.GetPipelineRequest) (*kilnpb.Pipeline, error) {
	p, err := m.s.reg.Get(req.Name)
	if err != nil {
		return nil, userError(err)
	}
	return m.s.public(p, 10), nil
}

func (m *master) UpdatePipeline(_ context.Context,
	req *kilnpb.UpdatePipelineRequest) (*kilnpb.Pipeline, error) {
	p, err := m.s.updateTriggers(req)
	return p, userError(err)
}

func (m *master) DeletePipeline(_ context.Context,
	req *kilnpb.DeletePipelineRequest) (*kilnpb.DeletePipelineResponse, error) {
	// Held to the end, so that no pipeline names this one as its upstream
	// between the check and the deletion.
	m.s.trig.setMu.Lock()
	defer m.s.trig.setMu.Unlock()
	if err := m.s.checkNoDownstream(req.Name); err != nil {
		return nil, err
	}
	if n := m.s.activeRuns(req.Name); n > 0 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"pipeline %q has %s in progress: cancel them first (ci runs cancel ID)", req.Name,
			plural(n, "run"))
	}
	if err := m.s.reg.Delete(req.Name); err != nil {
		return nil, userError(err)
	}
	if err := m.s.store.ForgetTriggers(req.Name); err != nil {
		return nil, userError(err)
	}
	// The runs go with their pipeline, so that one created again under the
	// name starts a history of its own.
	ids, err := m.s.store.DeleteRuns(req.Name)
	if err != nil {
		return nil, userError(err)
	}
	m.s.mu.Lock()
	for _, id := range ids {
		delete(m.s.ended, id)
	}
	m.s.mu.Unlock()
	for _, id := range ids {
		if err := m.s.logs.RemoveRun(id); err != nil {
			m.s.log.Warn("remove logs", "run_id", id, "err", err)
		}
	}
	m.s.log.Info("pipeline deleted", "pipeline", req.Name, "runs", len(ids))
	return &kilnpb.DeletePipelineResponse{}, nil
}

func (m *master) ListVersions(_ context.Context,
	req *kilnpb.ListVersionsRequest) (*kilnpb.ListVersionsResponse, error) {
	vs, err := m.s.reg.Versions(req.Name)
	if err != nil {
		return nil, userError(err)
	}
	return &kilnpb.ListVersionsResponse{Versions: vs}, nil
}

func (m *master) StartRun(ctx context.Context, req *kilnpb.StartRunRequest) (*kilnpb.Run, error) {
	detail := "started through the API"
	if md, _ := metadata.FromIncomingContext(ctx); slices.Contains(md.Get("kiln-client"), "dashboard") {
		detail = "started from the dashboard"
	}
	r, err := m.s.startRun(req.Name, req.Params, scheduler.Trigger{Kind: triggerManual,
		By: adminName, Detail: detail})
	return publicRun(r), userError(err)
}

func (m *master) GetRun(_ context.Context, req *kilnpb.GetRunRequest) (*kilnpb.Run, error) {
	r, err := m.s.run(req.Id)
	return publicRun(r), userError(err)
}

func (m *master) WatchRun(req *kilnpb.GetRunRequest, stream kilnpb.Master_WatchRunServer) error {
	for {
		changed := m.s.watch(req.Id)
		r, err := m.s.run(req.Id)
		if err != nil {
			return userError(err)
		}
		if err := stream.Send(publicRun(r)); err != nil {
			return err
		}
		if scheduler.Status(r.Status).Final() {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-m.s.stopping:
			return errStopping
		case <-changed:
		}
	}
}

func (m *master) ListRuns(_ context.Context,
	req *kilnpb.ListRunsRequest) (*kilnpb.ListRunsResponse, error) {
	limit := int(req.Limit)
	if limit == 0 {
		limit = 50
	}
	runs, err := m.s.store.Runs(req.Pipeline, limit, req.Before)
	if err != nil {
		return nil, userError(err)
	}
	if len(runs) == 0 && req.Pipeline != "" {
		if _, err := m.s.reg.Get(req.Pipeline); err != nil {
			return nil, userError(err)
		}
	}
	for i, r := range runs {
		if fresh, err := m.s.run(r.Id); err == nil {
			r = fresh
		}
		runs[i] = publicRun(r)
	}
	return &kilnpb.ListRunsResponse{Runs: runs}, nil
}

func (m *master) CancelRun(_ context.Context, req *kilnpb.CancelRunRequest) (*kilnpb.Run, error) {
	s := m.s
	s.mu.Lock()
	err := s.eng.Cancel(req.Id, "cancelled by admin", s.now())
	gen := s.applyLocked()
	s.mu.Unlock()
	if errors.Is(err, scheduler.ErrNoRun) {
		r, gerr := s.run(req.Id)
		if gerr != nil {
			return nil, userError(gerr)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "run %d already %s", r.Id, r.Status)
	}
	if err != nil {
		return nil, userError(err)
	}
	s.saver.wait(gen)
	s.log.Info("run cancelled", "run_id", req.Id)
	r, err := s.run(req.Id)
	return publicRun(r), userError(err)
}

func (m *master) ListWorkers(context.Context,
	*kilnpb.ListWorkersRequest) (*kilnpb.ListWorkersResponse, error) {
	s := m.s
	s.mu.Lock()
	ws := s.eng.Workers()
	s.mu.Unlock()
	now := s.now()
	out := &kilnpb.ListWorkersResponse{}
	for _, w := range ws {
		out.Workers = append(out.Workers, workerToProto(w, now, s.eng.TTL()))
	}
	return out, nil
}

func (m *master) SuspendWorker(_ context.Context,
	req *kilnpb.WorkerRequest) (*kilnpb.Worker, error) {
	return m.s.setSuspended(req.Name, true)
}

func (m *master) ResumeWorker(_ context.Context,
	req *kilnpb.WorkerRequest) (*kilnpb.Worker, error) {
	return m.s.setSuspended(req.Name, false)
}

func (s *Server) setSuspended(name string, on bool) (*kilnpb.Worker, error) {
	// The record is written under the lock, so that two operators who
	// suspend and resume at once leave the record as the table is.
	s.mu.Lock()
	defer s.mu.Unlock()
	var w scheduler.Worker
	var err error
	if on {
		w, err = s.eng.Suspend(name)
	} else {
		w, err = s.eng.Resume(name, s.now())
	}
	s.applyLocked()
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "no worker named %q: see ci workers list", name)
	}
	if err := s.store.SetSuspended(name, on); err != nil {
		return nil, status.Errorf(codes.Internal, "record the suspension of %q: %v", name, err)
	}
	s.log.Info("worker suspension changed", "worker", name, "suspended", on)
	return workerToProto(w, s.now(), s.eng.TTL()), nil
}

// startRun queues a run of the pipeline's current version.
func (s *Server) startRun(name string, params map[string]string,
	t scheduler.Trigger) (*kilnpb.Run, error) {
	v, err := s.reg.Current(name)
	if err != nil {
		return nil, err
	}
	run, err := s.newRun(v, params, t)
	if err != nil {
		return nil, err
	}
	id, err := s.createRun(run, s.store.CreateRun)
	if err != nil {
		return nil, err
	}
	return s.run(id)
}

// newRun makes the engine's run of version v, with params checked against
// what the version declares.
func (s *Server) newRun(v *kilnpb.Version, params map[string]string,
	t scheduler.Trigger) (*scheduler.Run, error) {
	d := v.Description
	resolved, err := ResolveParams(v.Pipeline, d.GetParams(), params)
	if err != nil {
		return nil, err
	}
	p, err := s.reg.Get(v.Pipeline)
	if err != nil {
		return nil, err
	}
	run := &scheduler.Run{
		Pipeline: v.Pipeline, Version: v.Version, Digest: v.Digest, OS: v.Goos, Arch: v.Goarch,
		Source: registry.GitURL(p.Source), Dir: p.Dir, Ref: v.Ref, Commit: v.Commit,
		Params: resolved, StartedBy: startedBy(t), Trigger: t, Status: scheduler.Queued,
		Created: s.now(),
	}
	for _, j := range d.GetJobs() {
		run.Jobs = append(run.Jobs, &scheduler.Job{
			Name: j.Name, DependsOn: j.DependsOn, Labels: j.Labels, Retries: int(j.Retries),
			Timeout: time.Duration(j.TimeoutMs) * time.Millisecond, Status: scheduler.Queued,
		})
	}
	return run, nil
}

// startedBy is the short "who" of a run that tables show.
func startedBy(t scheduler.Trigger) string {
	switch t.Kind {
	case triggerManual:
		return t.By
	case triggerUpstream:
		return fmt.Sprintf("upstream %s#%d", t.UpstreamPipeline, t.UpstreamRun)
	case triggerWebhook:
		if t.By != "" {
			return "webhook " + t.By
		}
	}
	return t.Kind
}

// createRun saves the run through save, which gives it its ID on disk,
// records it as its pipeline's last run, then hands it to the engine. The
// engine owns run afterwards.
func (s *Server) createRun(run *scheduler.Run, save func(*kilnpb.Run) error) (uint64, error) {
	p := RunProto(run)
	if err := save(p); err != nil {
		return 0, fmt.Errorf("record run: %w", err)
	}
	id := p.Id
	run.ID = id
	err := s.reg.Update(run.Pipeline, func(q *kilnpb.Pipeline) error {
		q.LastRunId, q.LastRunAt, q.LastRunBy = id, ms(run.Created), run.StartedBy
		q.LastRunStatus = string(scheduler.Queued)
		return nil
	})
	if err != nil {
		s.log.Warn("record last run", "pipeline", run.Pipeline, "err", err)
	}
	s.mu.Lock()
	s.eng.AddRun(run, s.now())
	gen := s.applyLocked()
	s.mu.Unlock()
	s.saver.wait(gen)
	s.log.Info("run started", "run_id", id, "pipeline", run.Pipeline, "version", run.Version,
		"by", run.StartedBy)
	return id, nil
}

// run returns the newest state of a run.
func (s *Server) run(id uint64) (*kilnpb.Run, error) {
	s.mu.Lock()
	if r, ok := s.eng.Run(id); ok {
		s.mu.Unlock()
		return RunProto(r), nil
	}
	if r, ok := s.ended[id]; ok {
		s.mu.Unlock()
		return r, nil
	}
	s.mu.Unlock()
	r, err := s.store.Run(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no run %d: see ci runs list", id)
	}
	return r, err
}

// activeRuns counts a pipeline's runs that have not ended.
func (s *Server) activeRuns(pipeline string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range s.eng.Runs() {
		if r, ok := s.eng.Run(id); ok && r.Pipeline == pipeline {
			n++
		}
	}
	return n
}

// plural says "1 run" or "2 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
