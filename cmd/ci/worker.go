package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/worker"
)

type workerOptions struct {
	master      string
	secretFile  string
	name        string
	data        string
	labels      string
	slots       int
	minFreeDisk uint64
	grace       time.Duration
	logLevel    string
}

func newWorkerCommand(*env) *cobra.Command {
	o := &workerOptions{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker that takes jobs from a master",
		Long: "Run a worker that takes jobs from a master.\n\n" +
			"The first SIGTERM or interrupt drains the worker: it takes no new jobs, " +
			"finishes the ones it runs, and exits. A second one stops it at once.",
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	host, _ := os.Hostname()
	fs := cmd.Flags()
	fs.StringVar(&o.master, "master", defaultMaster, "address of the master's API")
	fs.StringVar(&o.secretFile, "secret-file", "",
		"file holding the master's worker secret (DATA/worker.secret)")
	fs.StringVar(&o.name, "name", host, "the worker's name, unique among the master's workers")
	fs.StringVar(&o.data, "data", "kiln-worker", "folder for binaries, workspaces and log spools")
	fs.StringVar(&o.labels, "labels", "", "labels jobs can ask for, as k=v,k2=v2")
	fs.IntVar(&o.slots, "slots", 1, "how many jobs run at once")
	fs.Uint64Var(&o.minFreeDisk, "min-free-disk", 512<<20,
		"bytes free in the data folder below which the worker reports itself unhealthy")
	fs.DurationVar(&o.grace, "grace", 10*time.Second,
		"how long a cancelled or timed-out job gets to stop before its program is killed")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	for flag, v := range map[string]string{"master": "KILN_MASTER", "secret-file": "KILN_SECRET_FILE",
		"name": "KILN_WORKER_NAME", "data": "KILN_WORKER_DATA", "labels": "KILN_LABELS",
		"log-level": "KILN_LOG_LEVEL"} {
		bindEnv(fs, flag, v)
	}
	return cmd
}

func (o *workerOptions) run(cmd *cobra.Command) error {
	if o.secretFile == "" {
		return usageErrorf(cmd, "--secret-file is required: the master writes it to DATA/worker.secret")
	}
	if o.slots < 1 {
		return usageErrorf(cmd, "--slots must be at least 1")
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	secret, err := readSecret(o.secretFile, "secret")
	if err != nil {
		return fmt.Errorf("%v: pass the master's DATA/worker.secret with --secret-file", err)
	}
	if err := scheduler.CheckWorkerName(o.name); err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	data, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Config{
		Master: o.master, Secret: secret, Name: o.name, DataDir: data, Labels: labels,
		Slots: o.slots, MinFreeDisk: o.minFreeDisk, Grace: o.grace,
		Logger: logger.With("worker", o.name),
	})
	if err != nil {
		return err
	}
	ctx, stop := drainOnSignal(w)
	defer stop()
	err = w.Run(ctx)
	if errors.Is(err, worker.ErrSecret) {
		return fmt.Errorf("%v: pass the master's DATA/worker.secret with --secret-file", err)
	}
	return err
}

// drainOnSignal returns a context that ends at the first SIGTERM or
// interrupt, and kills the worker at the second.
func drainOnSignal(w *worker.Worker) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sig; !ok {
			return
		}
		cancel()
		if _, ok := <-sig; ok {
			w.Kill()
		}
	}()
	return ctx, func() { signal.Stop(sig); close(sig); cancel() }
}

// parseLabels reads k=v,k2=v2.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return labels, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not key=value", kv)
		}
		labels[k] = v
	}
	return labels, nil
}
