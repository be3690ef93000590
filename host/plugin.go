package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/sdk"
)

// Config says how to start a pipeline program. The zero value of each
// optional field is documented with it.
type Config struct {
	// Path is the program's binary.
	Path string
	// Digest is "sha256:<hex>" of the binary; go-plugin checks it before
	// starting the program.
	Digest string
	// Env is the program's whole environment; the host's own is never
	// inherited. Nil means an empty environment.
	Env []string
	// Dir is the program's working folder; empty means the host's.
	Dir string
	// StartTimeout bounds the handshake; zero means 30 seconds.
	StartTimeout time.Duration
	// Logger gets one line per program start and stop; nil discards.
	Logger *slog.Logger
	// Output gets what the program writes to its stdout and stderr once it
	// serves, outside any job's log (fmt.Println in a job, a crash's
	// trace); nil discards it. The last of its stderr is kept either way,
	// for the error of a program that dies.
	Output io.Writer
}

// Plugin is a started pipeline program.
type Plugin struct {
	client   *plugin.Client
	pipeline pluginpb.PipelineClient
	stderr   *tail
	pid      int
	cmd      *exec.Cmd
	log      *slog.Logger

	stopOnce sync.Once
}

// ErrStdout is returned when a program wrote to its stdout before it served:
// stdout belongs to the go-plugin handshake.
var ErrStdout = errors.New("host: the pipeline program wrote to stdout before serving")

// Start starts the program and completes the go-plugin handshake.
func Start(ctx context.Context, cfg Config) (*Plugin, error) {
	sum, err := parseDigest(cfg.Digest)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cmd := exec.Command(cfg.Path)
	cmd.Env = cfg.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = cfg.Dir
	ownProcessGroup(cmd)

	stderr := newTail(16 << 10)
	out := cfg.Output
	if out == nil {
		out = io.Discard
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{}},
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     cmp(cfg.StartTimeout, 30*time.Second),
		Stderr:           io.MultiWriter(stderr, out),
		SyncStdout:       out,
		SyncStderr:       io.MultiWriter(stderr, out),
		Logger:           hclog.NewNullLogger(),
	})
	p := &Plugin{client: client, stderr: stderr, log: log, cmd: cmd}

	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, p.startError(err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("host: dispense pipeline: %w", err)
	}
	p.pipeline = raw.(pluginpb.PipelineClient)
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	log.Debug("pipeline program started", "path", cfg.Path, "pid", p.pid)
	return p, nil
}

func (p *Plugin) startError(err error) error {
	msg := err.Error()
	// go-plugin reports unparsable handshake lines only as text; this is
	// the one place that reads it.
	if line, ok := strings.CutPrefix(msg, "Unrecognized remote plugin message: "); ok {
		line, _, _ = strings.Cut(line, "\n")
		if line == "" {
			return fmt.Errorf("host: the pipeline program exited without serving: " +
				"its main must call sdk.Serve")
		}
		return fmt.Errorf("%w (it printed %q): write logs through the job's J, not to stdout",
			ErrStdout, truncate(line, 80))
	}
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fmt.Errorf("host: binary does not match its digest: %w", err)
	}
	if s := p.stderr.String(); s != "" {
		return fmt.Errorf("host: start pipeline program: %v; its stderr ends with:\n%s", err, s)
	}
	return fmt.Errorf("host: start pipeline program: %w", err)
}

// Describe asks the program for its pipeline's description.
func (p *Plugin) Describe(ctx context.Context) (*pluginpb.Description, error) {
	d, err := p.pipeline.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return nil, p.callError("describe", err)
	}
	return d, nil
}

// Execute runs one job, copying its log to log as it arrives. When ctx ends
// before the job does, the job's context in the program is cancelled with
// ctx's cause; if the job has not answered grace later, the whole program
// is stopped.
func (p *Plugin) Execute(ctx context.Context, req *pluginpb.ExecuteRequest,
	log io.Writer, grace time.Duration) (*pluginpb.Result, error) {
	// The stream outlives ctx so that a cancelled job can still send its
	// last log lines and its result.
	callCtx, cancelCall := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCall()
	stream, err := p.pipeline.Execute(callCtx)
	if err != nil {
		return nil, p.callError("execute", err)
	}
	start := &pluginpb.ExecuteInput{Input: &pluginpb.ExecuteInput_Start{Start: req}}
	if err := stream.Send(start); err != nil {
		return nil, p.callError("execute", err)
	}
	killed := make(chan struct{})
	stopWatch := p.watch(ctx, stream, grace, killed)
	defer stopWatch()

	for {
		ev, err := stream.Recv()
		if err != nil {
			select {
			case <-killed:
				return nil, fmt.Errorf("host: job %q did not stop within %s of being "+
					"cancelled (%v); its program was killed", req.Job, grace, context.Cause(ctx))
			default:
			}
			return nil, p.callError("job "+req.Job, err)
		}
		switch e := ev.Event.(type) {
		case *pluginpb.ExecuteEvent_Log:
			if _, err := log.Write(e.Log); err != nil {
				return nil, fmt.Errorf("host: write log of job %q: %w", req.Job, err)
			}
		case *pluginpb.ExecuteEvent_Result:
			return e.Result, nil
		}
	}
}

// watch passes ctx's end on to the job, and stops the program when the job
// has not answered within grace after that. The returned func ends the watch.
func (p *Plugin) watch(ctx context.Context, stream pluginpb.Pipeline_ExecuteClient,
	grace time.Duration, killed chan<- struct{}) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		reason := context.Cause(ctx).Error()
		cancel := &pluginpb.ExecuteInput{Input: &pluginpb.ExecuteInput_Cancel{
			Cancel: &pluginpb.Cancel{Reason: reason}}}
		_ = stream.Send(cancel)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			close(killed)
			p.Stop()
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (p *Plugin) callError(what string, err error) error {
	if p.exitedSoon() {
		// Kill waits until the program's stderr is read to its end.
		p.Stop()
		exit := p.exitStatus()
		if s := p.stderr.String(); s != "" {
			return fmt.Errorf("host: %s: the pipeline program %s; its stderr ends with:\n%s",
				what, exit, s)
		}
		return fmt.Errorf("host: %s: the pipeline program %s", what, exit)
	}
	return fmt.Errorf("host: %s: %w", what, err)
}

// exitedSoon reports whether the program exits within a moment: a broken
// connection is usually a dying program whose exit is still being reaped.
func (p *Plugin) exitedSoon() bool {
	deadline := time.Now().Add(time.Second)
	for !p.client.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// exitStatus says how the program ended, once it has.
func (p *Plugin) exitStatus() string {
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return "exited"
	}
	return "exited (" + p.cmd.ProcessState.String() + ")"
}

// Exited reports whether the program has exited.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Stderr returns the last lines the program wrote to stderr.
func (p *Plugin) Stderr() string { return p.stderr.String() }

// Stop ends the program and every process in its process group.
func (p *Plugin) Stop() {
	p.stopOnce.Do(func() {
		p.client.Kill()
		killGroup(p.pid)
		p.log.Debug("pipeline program stopped", "pid", p.pid)
	})
}

func parseDigest(d string) ([]byte, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return nil, fmt.Errorf("host: digest %q is not sha256:<hex>", d)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("host: digest %q is not sha256:<hex>", d)
	}
	return b, nil
}

func cmp(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
