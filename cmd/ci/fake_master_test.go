package main

import (
	"bytes"
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// fakeMaster answers the Master API from canned data and records what it
// was asked, so that tests can check what ci sent over a real gRPC
// connection. The real master is tested in its own package.
type fakeMaster struct {
	kilnpb.UnimplementedMasterServer

	// token is what mutating calls need; empty accepts any call.
	token string

	pipelines []*kilnpb.Pipeline
	versions  []*kilnpb.Version
	progress  []string        // the lines a build streams before its version
	built     *kilnpb.Version // the version every build ends with
	run       *kilnpb.Run     // what StartRun, GetRun and CancelRun answer
	watch     []*kilnpb.Run   // what WatchRun streams after the run
	runs      []*kilnpb.Run
	logs      []*kilnpb.LogLine
	workers   []*kilnpb.Worker

	mu       sync.Mutex
	auth     map[string]string        // method → authorization metadata
	requests map[string]proto.Message // method → latest request
}

// startFake serves f on a loopback port until the test ends and returns
// its address.
func startFake(t *testing.T, f *fakeMaster) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	kilnpb.RegisterMasterServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// saw records a call and its token, and refuses a mutating call whose
// token is wrong, as the master does.
func (f *fakeMaster) saw(ctx context.Context, method string, req proto.Message,
	mutating bool) error {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := ""
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth == nil {
		f.auth = map[string]string{}
		f.requests = map[string]proto.Message{}
	}
	f.auth[method] = auth
	f.requests[method] = req

	if !mutating || f.token == "" {
		return nil
	}
	if auth == "" {
		return status.Error(codes.Unauthenticated, "this call needs the admin token")
	}
	if auth != "Bearer "+f.token {
		return status.Error(codes.Unauthenticated, "wrong admin token")
	}
	return nil
}

// authSeen is the authorization metadata of the latest call of method.
func (f *fakeMaster) authSeen(method string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth[method]
}

// request is the latest request of method.
func (f *fakeMaster) request(method string) proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[method]
}

func (f *fakeMaster) CreatePipeline(req *kilnpb.CreatePipelineRequest,
	s grpc.ServerStreamingServer[kilnpb.BuildEvent]) error {
	if err := f.saw(s.Context(), "CreatePipeline", req, true); err != nil {
		return err
	}
	return f.build(s)
}

func (f *fakeMaster) Recompile(req *kilnpb.RecompileRequest,
	s grpc.ServerStreamingServer[kilnpb.BuildEvent]) error {
	if err := f.saw(s.Context(), "Recompile", req, true); err != nil {
		return err
	}
	return f.build(s)
}

func (f *fakeMaster) Pin(req *kilnpb.PinRequest,
	s grpc.ServerStreamingServer[kilnpb.BuildEvent]) error {
	if err := f.saw(s.Context(), "Pin", req, true); err != nil {
		return err
	}
	return f.build(s)
}

// build streams the progress lines, then the version built.
func (f *fakeMaster) build(s grpc.ServerStreamingServer[kilnpb.BuildEvent]) error {
	for _, line := range f.progress {
		ev := &kilnpb.BuildEvent{Event: &kilnpb.BuildEvent_Progress{Progress: line}}
		if err := s.Send(ev); err != nil {
			return err
		}
	}
	if f.built == nil {
		return nil
	}
	return s.Send(&kilnpb.BuildEvent{Event: &kilnpb.BuildEvent_Version{Version: f.built}})
}

func (f *fakeMaster) ListPipelines(ctx context.Context,
	req *kilnpb.ListPipelinesRequest) (*kilnpb.ListPipelinesResponse, error) {
	if err := f.saw(ctx, "ListPipelines", req, false); err != nil {
		return nil, err
	}
	return &kilnpb.ListPipelinesResponse{Pipelines: f.pipelines}, nil
}

func (f *fakeMaster) GetPipeline(ctx context.Context,
	req *kilnpb.GetPipelineRequest) (*kilnpb.Pipeline, error) {
	if err := f.saw(ctx, "GetPipeline", req, false); err != nil {
		return nil, err
	}
	for _, p := range f.pipelines {
		if p.Name == req.Name {
			return p, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "pipeline %q does not exist", req.Name)
}

// UpdatePipeline answers the named pipeline with the settings of req
// applied, as the master would, without keeping them.
func (f *fakeMaster) UpdatePipeline(ctx context.Context,
	req *kilnpb.UpdatePipelineRequest) (*kilnpb.Pipeline, error) {
	if err := f.saw(ctx, "UpdatePipeline", req, true); err != nil {
		return nil, err
	}
	i := slices.IndexFunc(f.pipelines, func(p *kilnpb.Pipeline) bool { return p.Name == req.Name })
	if i < 0 {
		return nil, status.Errorf(codes.NotFound, "pipeline %q does not exist", req.Name)
	}

	p := proto.Clone(f.pipelines[i]).(*kilnpb.Pipeline)
	if p.Triggers == nil {
		p.Triggers = &kilnpb.Triggers{}
	}
	tr := p.Triggers
	if req.WebhookSecret != nil {
		tr.Webhook = *req.WebhookSecret != ""
	}
	if req.PollMs != nil {
		tr.PollMs = *req.PollMs
	}
	if req.Schedules != nil {
		tr.Schedules = req.Schedules.Values
	}
	if req.Timezone != nil {
		tr.Timezone = *req.Timezone
	}
	if req.DependsOn != nil {
		tr.DependsOn = req.DependsOn.Values
	}
	return p, nil
}

func (f *fakeMaster) DeletePipeline(ctx context.Context,
	req *kilnpb.DeletePipelineRequest) (*kilnpb.DeletePipelineResponse, error) {
	if err := f.saw(ctx, "DeletePipeline", req, true); err != nil {
		return nil, err
	}
	return &kilnpb.DeletePipelineResponse{}, nil
}

func (f *fakeMaster) ListVersions(ctx context.Context,
	req *kilnpb.ListVersionsRequest) (*kilnpb.ListVersionsResponse, error) {
	if err := f.saw(ctx, "ListVersions", req, false); err != nil {
		return nil, err
	}
	return &kilnpb.ListVersionsResponse{Versions: f.versions}, nil
}

func (f *fakeMaster) StartRun(ctx context.Context,
	req *kilnpb.StartRunRequest) (*kilnpb.Run, error) {
	if err := f.saw(ctx, "StartRun", req, true); err != nil {
		return nil, err
	}
	return f.run, nil
}

func (f *fakeMaster) WatchRun(req *kilnpb.GetRunRequest,
	s grpc.ServerStreamingServer[kilnpb.Run]) error {
	if err := f.saw(s.Context(), "WatchRun", req, false); err != nil {
		return err
	}
	for _, r := range f.watch {
		if err := s.Send(r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeMaster) ListRuns(ctx context.Context,
	req *kilnpb.ListRunsRequest) (*kilnpb.ListRunsResponse, error) {
	if err := f.saw(ctx, "ListRuns", req, false); err != nil {
		return nil, err
	}
	return &kilnpb.ListRunsResponse{Runs: f.runs}, nil
}

func (f *fakeMaster) GetRun(ctx context.Context, req *kilnpb.GetRunRequest) (*kilnpb.Run, error) {
	if err := f.saw(ctx, "GetRun", req, false); err != nil {
		return nil, err
	}
	if f.run == nil || f.run.Id != req.Id {
		return nil, status.Errorf(codes.NotFound, "run %d does not exist", req.Id)
	}
	return f.run, nil
}

func (f *fakeMaster) CancelRun(ctx context.Context,
	req *kilnpb.CancelRunRequest) (*kilnpb.Run, error) {
	if err := f.saw(ctx, "CancelRun", req, true); err != nil {
		return nil, err
	}
	return f.run, nil
}

func (f *fakeMaster) Logs(req *kilnpb.LogsRequest,
	s grpc.ServerStreamingServer[kilnpb.LogLine]) error {
	if err := f.saw(s.Context(), "Logs", req, false); err != nil {
		return err
	}
	for _, line := range f.logs {
		if req.Job != "" && line.Job != req.Job {
			continue
		}
		if err := s.Send(line); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeMaster) ListWorkers(ctx context.Context,
	req *kilnpb.ListWorkersRequest) (*kilnpb.ListWorkersResponse, error) {
	if err := f.saw(ctx, "ListWorkers", req, false); err != nil {
		return nil, err
	}
	return &kilnpb.ListWorkersResponse{Workers: f.workers}, nil
}

func (f *fakeMaster) SuspendWorker(ctx context.Context,
	req *kilnpb.WorkerRequest) (*kilnpb.Worker, error) {
	if err := f.saw(ctx, "SuspendWorker", req, true); err != nil {
		return nil, err
	}
	return &kilnpb.Worker{Id: 1, Name: req.Name, State: "suspended"}, nil
}

func (f *fakeMaster) ResumeWorker(ctx context.Context,
	req *kilnpb.WorkerRequest) (*kilnpb.Worker, error) {
	if err := f.saw(ctx, "ResumeWorker", req, true); err != nil {
		return nil, err
	}
	return &kilnpb.Worker{Id: 1, Name: req.Name, State: "ready"}, nil
}

// testNow is the clock of every test: "2s ago" is then exact.
var testNow = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// msBefore is the API time d before testNow.
func msBefore(d time.Duration) int64 {
	return testNow.Add(-d).UnixMilli()
}

// result is what one ci command did.
type result struct {
	stdout string
	stderr string
	code   int
}

// ci runs the command line args against a fresh root command, with env as
// the whole environment and testNow as the clock, as main would.
func ci(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCommand(nil,
		withGetenv(func(k string) string { return env[k] }),
		withClock(func() time.Time { return testNow }))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)

	code := execute(t.Context(), root, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// ciOK runs args and fails the test unless the command succeeded.
func ciOK(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	r := ci(t, env, args...)
	if r.code != exitOK {
		t.Fatalf("ci %v: exit %d, stderr:\n%s", args, r.code, r.stderr)
	}
	return r
}
