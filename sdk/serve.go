package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kilnci/kiln/proto/pluginpb"
)

// Handshake is the go-plugin handshake between a worker and a pipeline
// program. The cookie only keeps the program from being started by hand by
// mistake; it is not a secret.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "KILN_PIPELINE",
	MagicCookieValue: "a1f0c3d2-kiln-pipeline",
}

// PluginName is the name the program's service is dispensed under.
const PluginName = "pipeline"

// logChunk bounds one log message so that a single huge write never
// exceeds gRPC's message limit.
const logChunk = 256 << 10

// Serve serves the pipeline to a Kiln worker and never returns. Started by
// hand, it prints how to run a pipeline and exits with status 2.
func Serve(p Pipeline) {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s is a Kiln pipeline program: run it with `ci exec` "+
			"or register it with `ci pipeline create`\n", os.Args[0])
		os.Exit(2)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Pipeline: p}},
		GRPCServer:      plugin.DefaultGRPCServer,
		// go-plugin's own debug lines would bury what the program prints
		// to stderr, which is what a worker shows when it dies.
		Logger: hclog.NewNullLogger(),
	})
}

// GRPCPlugin adapts a Pipeline to go-plugin. The worker uses its client
// half, the pipeline program its server half.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Pipeline Pipeline
}

// GRPCServer registers the pipeline's service.
func (g *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPipelineServer(s, &server{p: g.Pipeline})
	return nil
}

// GRPCClient returns a pluginpb.PipelineClient.
func (g *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker,
	c *grpc.ClientConn) (any, error) {
	return pluginpb.NewPipelineClient(c), nil
}

type server struct {
	pluginpb.UnimplementedPipelineServer
	p Pipeline
}

func (s *server) Describe(context.Context,
	*pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return Describe(s.p), nil
}

// Describe turns a Pipeline into its protocol description.
func Describe(p Pipeline) *pluginpb.Description {
	d := &pluginpb.Description{
		Name:        p.Name,
		Description: p.Description,
		SdkProtocol: ProtocolVersion,
		SdkVersion:  Version,
	}
	for _, pa := range p.Params {
		t := pa.Type
		if t == "" {
			t = String
		}
		d.Params = append(d.Params, &pluginpb.Param{
			Name: pa.Name, Type: string(t), Default: pa.Default,
			Description: pa.Description, Choices: pa.Choices,
		})
	}
	for _, j := range p.Jobs {
		d.Jobs = append(d.Jobs, &pluginpb.JobSpec{
			Name: j.Name, Description: j.Description, DependsOn: j.DependsOn,
			TimeoutMs: j.Timeout.Milliseconds(), Retries: int32(j.Retries),
			Labels: j.Labels,
		})
	}
	return d
}

func (s *server) Execute(stream pluginpb.Pipeline_ExecuteServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetStart()
	if req == nil {
		return errors.New("execute: the first input must start a job")
	}
	job, ok := s.find(req.Job)
	if !ok {
		return fmt.Errorf("pipeline %q has no job %q", s.p.Name, req.Job)
	}

	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	go watchCancel(stream, cancel)
	if job.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, job.Timeout,
			fmt.Errorf("timed out after %s", job.Timeout))
		defer stop()
	}

	j := newJ(req, &streamWriter{stream: stream})
	err = runJob(ctx, job, j)
	res := &pluginpb.Result{Ok: err == nil, Outputs: j.outputsCopy()}
	if err != nil {
		res.Error = err.Error()
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			res.Error = fmt.Sprintf("%s (%v)", res.Error, cause)
		}
	}
	return stream.Send(&pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: res}})
}

// watchCancel cancels the job when the worker asks, or when the worker
// closes its side of the stream.
func watchCancel(stream pluginpb.Pipeline_ExecuteServer, cancel context.CancelCauseFunc) {
	for {
		in, err := stream.Recv()
		if err != nil {
			cancel(errors.New("the worker closed the job's stream"))
			return
		}
		if c := in.GetCancel(); c != nil {
			cancel(errors.New(c.Reason))
			return
		}
	}
}

func (s *server) find(name string) (Job, bool) {
	for _, j := range s.p.Jobs {
		if j.Name == name {
			return j, true
		}
	}
	return Job{}, false
}

// runJob calls the job's function and turns a panic into the job's error;
// the stack goes to the job's log, where it can be read whole.
func runJob(ctx context.Context, job Job, j *J) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("job %q panicked: %v", job.Name, r)
			if j.log != nil {
				fmt.Fprintf(j.log, "panic: %v\n\n%s", r, debug.Stack())
			}
		}
	}()
	if job.Run == nil {
		return fmt.Errorf("job %q has no Run function", job.Name)
	}
	start := time.Now()
	err = job.Run(ctx, j)
	if err == nil && ctx.Err() != nil {
		// A job that ignores its context must not pass for one that
		// finished in time.
		err = fmt.Errorf("job returned after its context ended (%s): %w",
			time.Since(start).Round(time.Millisecond), ctx.Err())
	}
	return err
}

func newJ(req *pluginpb.ExecuteRequest, log *streamWriter) *J {
	inputs := make(map[string]map[string]string, len(req.Inputs))
	for name, o := range req.Inputs {
		inputs[name] = o.GetValues()
	}
	r := req.GetRun()
	return &J{
		name:      req.Job,
		params:    req.Params,
		inputs:    inputs,
		workspace: req.Workspace,
		log:       log,
		outputs:   map[string]string{},
		run: RunFacts{
			RunID: r.GetRunId(), Pipeline: r.GetPipeline(), Version: r.GetVersion(),
			Source: r.GetSource(), Dir: r.GetDir(), Ref: r.GetRef(), Commit: r.GetCommit(),
			Attempt: r.GetAttempt(), Worker: r.GetWorker(),
		},
	}
}
