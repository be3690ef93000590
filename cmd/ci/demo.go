package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnci/kiln/internal/gitrepo"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/server"
	"github.com/kilnci/kiln/worker"
)

type demoOptions struct {
	clientOptions
	data     string
	example  string
	serve    bool
	logLevel string
	grpcAddr string
	httpAddr string
}

func newDemoCommand(e *env) *cobra.Command {
	o := &demoOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a master and two workers on loopback and run the example pipeline",
		Long: "Start a master and two workers on loopback with a fresh data folder, turn the " +
			"example pipeline into a local git repository, create the pipeline from it, " +
			"compile it, run it, and print each job with its status, duration and worker.",
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.data, "data", "", "data folder; default a new temporary folder, removed at the end")
	fs.StringVar(&o.example, "example", filepath.Join("testdata", "pipelines", "demo"),
		"folder of the example pipeline")
	fs.BoolVar(&o.serve, "serve", false, "keep the master and workers up after the run, until interrupted")
	fs.StringVar(&o.logLevel, "log-level", "warn", "level of the master's and workers' logs")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "",
		"the master's gRPC address; default 127.0.0.1:7070 with --serve, a free port without")
	fs.StringVar(&o.httpAddr, "http-addr", "",
		"the master's HTTP address; default 127.0.0.1:7071 with --serve, a free port without")
	return cmd
}

func (o *demoOptions) run(cmd *cobra.Command) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	logger, err := newLogger(errw, o.logLevel)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	data, cleanup, err := o.dataDir()
	if err != nil {
		return err
	}
	defer cleanup()

	repo, err := exampleRepo(o.example, filepath.Join(data, "example.git"))
	if err != nil {
		return err
	}
	srv, stop, err := startDemoFleet(ctx, data, o.addrs(), logger)
	if err != nil {
		if o.serve && strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("%w: give the demo free ports with --grpc-addr and --http-addr", err)
		}
		return err
	}
	defer stop()
	fmt.Fprintf(out, "master on %s with workers demo-1 and demo-2 (data in %s)\n", srv.GRPCAddr(), data)

	c, err := connect(srv.GRPCAddr(), srv.AdminToken())
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := o.createAndRun(cmd, c, "file://"+repo)
	if err != nil {
		return err
	}
	if err := o.printJobs(out, r); err != nil {
		return err
	}
	if r.Status != "succeeded" {
		return fmt.Errorf("demo run %d %s: %s", r.Id, r.Status, r.Reason)
	}
	fmt.Fprintf(out, "run %d succeeded in %s\n", r.Id, span(r.Started, r.Finished, o.now()))
	if o.serve {
		printJoinHelp(out, srv.GRPCAddr(), srv.HTTPAddr(), filepath.Join(data, "master"))
		fmt.Fprintln(out, "serving until interrupted")
		<-ctx.Done()
	}
	return nil
}

// addrs are where the master listens: the defaults of `ci server` when it
// serves on, so that other commands find it without flags, and free ports
// for a run that ends.
func (o *demoOptions) addrs() [2]string {
	grpcAddr, httpAddr := "127.0.0.1:0", "127.0.0.1:0"
	if o.serve {
		grpcAddr, httpAddr = "127.0.0.1:7070", "127.0.0.1:7071"
	}
	return [2]string{cmp.Or(o.grpcAddr, grpcAddr), cmp.Or(o.httpAddr, httpAddr)}
}

func (o *demoOptions) dataDir() (string, func(), error) {
	if o.data != "" {
		abs, err := filepath.Abs(o.data)
		return abs, func() {}, err
	}
	dir, err := os.MkdirTemp("", "kiln-demo-")
	return dir, func() { os.RemoveAll(dir) }, err
}

// createAndRun creates the demo pipeline, showing the build's progress,
// then runs it and follows it to its end.
func (o *demoOptions) createAndRun(cmd *cobra.Command, c *client,
	source string) (*kilnpb.Run, error) {
	ctx := cmd.Context()
	if _, err := c.GetPipeline(ctx, &kilnpb.GetPipelineRequest{Name: "demo"}); err == nil {
		// A data folder of an earlier demo: run what it has.
		fmt.Fprintln(cmd.OutOrStdout(), "pipeline demo exists in this data folder; running it")
		return o.startAndFollow(cmd, c)
	}
	stream, err := c.CreatePipeline(ctx, &kilnpb.CreatePipelineRequest{Name: "demo", Source: source})
	if err != nil {
		return nil, c.callError(ctx, err)
	}
	v, err := followBuild(stream, cmd.ErrOrStderr())
	if err != nil {
		return nil, c.callError(ctx, err)
	}
	if v == nil || v.Status != "ready" {
		return nil, buildFailure("demo", v)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "pipeline demo version %d: commit %s, %s, built in %s\n",
		v.Version, short(v.Commit, 12), shortDigest(v.Digest), buildTime(v))

	return o.startAndFollow(cmd, c)
}

func (o *demoOptions) startAndFollow(cmd *cobra.Command, c *client) (*kilnpb.Run, error) {
	ctx := cmd.Context()
	r, err := c.StartRun(ctx, &kilnpb.StartRunRequest{Name: "demo"})
	if err != nil {
		return nil, c.callError(ctx, err)
	}
	ro := &runOptions{clientOptions: o.clientOptions}
	return ro.follow(cmd, c, r)
}

// startDemoFleet starts a master on loopback ports and two workers joined
// to it, in this process. stop ends them all.
func startDemoFleet(ctx context.Context, data string, addrs [2]string,
	logger *slog.Logger) (*server.Server, func(), error) {
	srv, err := server.New(server.Config{
		DataDir: filepath.Join(data, "master"), GRPCAddr: addrs[0], HTTPAddr: addrs[1],
		HeartbeatInterval: time.Second, Logger: logger.With("process", "master"),
	})
	if err != nil {
		return nil, nil, err
	}
	// Workers stop before the master, so that none of them sees its master
	// vanish.
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(srvCtx); close(done) }()

	var workers []chan struct{}
	var kills []func()
	for _, name := range []string{"demo-1", "demo-2"} {
		w, err := worker.New(worker.Config{
			Master: srv.GRPCAddr(), Secret: srv.WorkerSecret(), Name: name,
			DataDir: filepath.Join(data, name), Slots: 2, Logger: logger.With("process", name),
		})
		if err != nil {
			cancel()
			stopSrv()
			return nil, nil, err
		}
		wdone := make(chan struct{})
		workers = append(workers, wdone)
		kills = append(kills, w.Kill)
		go func() { w.Run(ctx); close(wdone) }()
	}
	// The demo's workers do not drain: an interrupt stops the demo now,
	// and the jobs it cuts short are retried when a master on the same
	// data folder starts again.
	stop := func() {
		cancel()
		for _, kill := range kills {
			kill()
		}
		for _, w := range workers {
			<-w
		}
		stopSrv()
		<-done
		srv.Close()
	}
	return srv, stop, nil
}

// exampleRepo copies the example pipeline into a new git repository with
// one commit on main, and returns the repository's path.
func exampleRepo(example, repo string) (string, error) {
	info, err := os.Stat(filepath.Join(example, "main.go"))
	if err != nil || info.IsDir() {
		return "", fmt.Errorf("example pipeline not found in %s: run ci demo from the root of "+
			"Kiln's repository, or point --example at the folder", example)
	}
	if _, err := os.Stat(filepath.Join(repo, ".git")); err == nil {
		return repo, nil // made by an earlier demo in this data folder
	}
	return repo, gitrepo.FromDir(example, repo, "The demo pipeline")
}
