// Command bench measures what Kiln's users feel and prints one figure a
// line as `name value unit`. Run it from the repository's root (make
// bench). It reports; it never fails on a figure.
//
// The master and the workers run in this process over real gRPC on
// loopback, with real pipeline programs; the worker whose death is timed
// is a real `ci worker` process killed with SIGKILL.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/kilnci/kiln/internal/gitrepo"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/server"
	"github.com/kilnci/kiln/worker"
)

var (
	samples   = flag.Int("runs", 30, "runs of the one-job pipeline timed for latency")
	wideRuns  = flag.Int("wide-runs", 10, "runs of the 100-job pipeline for throughput")
	heartbeat = flag.Duration("heartbeat", 500*time.Millisecond, "the master's heartbeat interval")
	verbose   = flag.Bool("v", false, "show the master's and workers' logs")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	dir    string
	srv    *server.Server
	api    kilnpb.MasterClient
	ctx    context.Context
	logger *slog.Logger
}

func run() error {
	dir, err := os.MkdirTemp("", "kiln-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, logger: slog.New(slog.DiscardHandler)}
	if *verbose {
		b.logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	b.srv, err = server.New(server.Config{DataDir: filepath.Join(dir, "master"),
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", HeartbeatInterval: *heartbeat,
		Logger: b.logger})
	if err != nil {
		return err
	}
	defer b.srv.Close()
	go b.srv.Serve(ctx)
	conn, err := grpc.NewClient(b.srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	b.api = kilnpb.NewMasterClient(conn)
	b.ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+b.srv.AdminToken())

	steps := []func() error{b.latency, b.recompile, b.throughput, b.dashboard, b.workerDeath}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) latency() error {
	stop := b.workers(1, 1)
	defer stop()
	if err := b.create("noop"); err != nil {
		return err
	}
	if _, err := b.runOnce("noop"); err != nil { // pulls the binary
		return err
	}
	var times []time.Duration
	for range *samples {
		// Runs come apart in real life; the pause lets the worker start the
		// spare program that the next run takes.
		time.Sleep(200 * time.Millisecond)
		d, err := b.runOnce("noop")
		if err != nil {
			return err
		}
		times = append(times, d)
	}
	slices.Sort(times)
	fmt.Printf("run_latency_median %.1f ms\n", ms(times[len(times)/2]))
	fmt.Printf("run_latency_p90 %.1f ms\n", ms(times[len(times)*9/10]))
	return nil
}

func (b *bench) recompile() error {
	var times []time.Duration
	for range 5 {
		begin := time.Now()
		v, err := b.build(b.api.Recompile(b.ctx, &kilnpb.RecompileRequest{Name: "noop"}))
		if err != nil {
			return err
		}
		times = append(times, time.Since(begin))
		if !v.Reused {
			return fmt.Errorf("recompile of an unchanged pipeline ran the compiler")
		}
	}
	slices.Sort(times)
	fmt.Printf("recompile_unchanged_median %.1f ms\n", ms(times[len(times)/2]))
	return nil
}

func (b *bench) throughput() error {
	stop := b.workers(4, 4)
	defer stop()
	if err := b.create("wide"); err != nil {
		return err
	}
	if _, err := b.runOnce("wide"); err != nil { // warm every worker
		return err
	}
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, *wideRuns)
	for range *wideRuns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.runOnce("wide"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	elapsed := time.Since(begin)
	jobs := *wideRuns * 100
	fmt.Printf("jobs_per_second %.0f jobs/s\n", float64(jobs)/elapsed.Seconds())
	fmt.Printf("jobs_total %d jobs\n", jobs)
	return nil
}

// dashboardPipelines is how many pipelines the dashboard's figures are
// taken with.
const dashboardPipelines = 200

// dashboard times the dashboard's pages as a browser asks for them, with
// two hundred pipelines registered and the runs of the steps before: the
// pipelines page, a pipeline's page with its runs and versions, and the
// page of a run of a hundred jobs.
func (b *bench) dashboard() error {
	repo := filepath.Join(b.dir, "noop.git")
	for i := range dashboardPipelines {
		_, err := b.build(b.api.CreatePipeline(b.ctx, &kilnpb.CreatePipelineRequest{
			Name: fmt.Sprintf("p-%03d", i), Source: "file://" + repo}))
		if err != nil {
			return err
		}
	}
	runs, err := b.api.ListRuns(b.ctx, &kilnpb.ListRunsRequest{Pipeline: "wide", Limit: 1})
	if err != nil || len(runs.Runs) == 0 {
		return fmt.Errorf("no run of wide: %v", err)
	}
	pages := []struct{ name, path string }{
		{"dashboard_pipelines_page", "/pipelines"},
		{"dashboard_pipeline_page", "/pipelines/wide"},
		{"dashboard_run_page_100_jobs", fmt.Sprintf("/runs/%d", runs.Runs[0].Id)},
	}
	for _, p := range pages {
		var times []time.Duration
		for range *samples {
			start := time.Now()
			resp, err := http.Get("http://" + b.srv.HTTPAddr() + p.path)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %d %v", p.path, resp.StatusCode, err)
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		fmt.Printf("%s_median %.1f ms\n", p.name, ms(times[len(times)/2]))
	}
	fmt.Printf("dashboard_pipelines %d pipelines\n", dashboardPipelines+3)
	return nil
}

// workerDeath times how long a killed worker process stays in dispatch, and
// how long a frozen one does.
func (b *bench) workerDeath() error {
	ci := filepath.Join(b.dir, "ci")
	build := exec.Command("go", "build", "-o", ci, "./cmd/ci")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build ci: %w", err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		d, err := b.exclusion(ci, sig)
		if err != nil {
			return err
		}
		name := map[syscall.Signal]string{syscall.SIGKILL: "worker_killed", syscall.SIGSTOP: "worker_frozen"}[sig]
		fmt.Printf("%s_to_exclusion %.0f ms\n", name, ms(d))
		fmt.Printf("%s_to_exclusion_in_heartbeats %.2f intervals\n", name, float64(d)/float64(*heartbeat))
	}
	return nil
}

func (b *bench) exclusion(ci string, sig syscall.Signal) (time.Duration, error) {
	name := fmt.Sprintf("victim-%d", sig)
	cmd := exec.Command(ci, "worker", "--master", b.srv.GRPCAddr(), "--name", name,
		"--secret-file", filepath.Join(b.dir, "master", "worker.secret"),
		"--data", filepath.Join(b.dir, name))
	if *verbose {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := b.waitState(name, func(s string) bool { return s == "ready" }, 30*time.Second); err != nil {
		return 0, err
	}
	time.Sleep(*heartbeat / 3) // die somewhere between two heartbeats
	begin := time.Now()
	cmd.Process.Signal(sig)
	err := b.waitState(name, func(s string) bool { return s != "ready" }, 10**heartbeat)
	return time.Since(begin), err
}

func (b *bench) waitState(name string, ok func(string) bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := b.api.ListWorkers(b.ctx, &kilnpb.ListWorkersRequest{})
		if err != nil {
			return err
		}
		for _, w := range resp.Workers {
			if w.Name == name && ok(w.State) {
				return nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("worker %s did not change state within %s", name, limit)
}

// workers starts n in-process workers with the slots each, and returns
// what stops them.
func (b *bench) workers(n, slots int) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprintf("w%d-of-%d", i+1, n)
		w, err := worker.New(worker.Config{Master: b.srv.GRPCAddr(), Secret: b.srv.WorkerSecret(),
			Name: name, DataDir: filepath.Join(b.dir, name), Slots: slots, Logger: b.logger})
		if err != nil {
			panic(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(ctx) }()
		b.waitState(name, func(s string) bool { return s == "ready" }, 30*time.Second)
	}
	return func() { cancel(); wg.Wait() }
}

func (b *bench) create(name string) error {
	repo := filepath.Join(b.dir, name+".git")
	if err := gitrepo.FromDir(filepath.Join("testdata", "pipelines", name), repo, "bench"); err != nil {
		return err
	}
	_, err := b.build(b.api.CreatePipeline(b.ctx, &kilnpb.CreatePipelineRequest{
		Name: name, Source: "file://" + repo}))
	return err
}

func (b *bench) build(stream grpc.ServerStreamingClient[kilnpb.BuildEvent],
	err error) (*kilnpb.Version, error) {
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("build ended without a version")
		}
		if err != nil {
			return nil, err
		}
		if v := ev.GetVersion(); v != nil {
			if v.Status != "ready" {
				return nil, fmt.Errorf("build failed: %s", v.Error)
			}
			return v, nil
		}
	}
}

// runOnce starts a run and waits for its end, returning the time between.
func (b *bench) runOnce(name string) (time.Duration, error) {
	begin := time.Now()
	r, err := b.api.StartRun(b.ctx, &kilnpb.StartRunRequest{Name: name})
	if err != nil {
		return 0, err
	}
	stream, err := b.api.WatchRun(b.ctx, &kilnpb.GetRunRequest{Id: r.Id})
	if err != nil {
		return 0, err
	}
	for {
		next, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		r = next
	}
	if r.Status != "succeeded" {
		return 0, fmt.Errorf("run %d of %s %s: %s", r.Id, name, r.Status, r.Reason)
	}
	return time.Since(begin), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
