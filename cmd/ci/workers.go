package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func newWorkersCommand(e *env) *cobra.Command {
	return newGroupCommand("workers", "List, suspend and resume workers",
		newWorkersListCommand(e),
		newWorkerStateCommand(e, "suspend",
			"Stop giving jobs to a worker; its running jobs finish"),
		newWorkerStateCommand(e, "resume", "Give jobs to a suspended worker again"),
	)
}

type workersListOptions struct {
	clientOptions
}

func newWorkersListCommand(e *env) *cobra.Command {
	o := &workersListOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the workers the master knows",
		Args:    wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *workersListOptions) run(cmd *cobra.Command) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	resp, err := c.ListWorkers(ctx, &kilnpb.ListWorkersRequest{})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		list := make([]workerJSON, 0, len(resp.Workers))
		for _, w := range resp.Workers {
			list = append(list, newWorkerJSON(w))
		}
		return writeJSON(out, list)
	}

	now := o.now()
	t := newTable(out, "ID", "NAME", "HOSTNAME", "STATE", "REASON", "LAST SEEN", "SLOTS",
		"PLATFORM", "LABELS")
	for _, w := range resp.Workers {
		t.row(fmt.Sprint(w.Id), w.Name, w.Hostname, w.State, w.Reason, ago(w.LastSeen, now),
			fmt.Sprintf("%d/%d", w.Busy, w.Slots), platform(w), formatLabels(w.Labels))
	}
	return t.flush()
}

// platform shows a worker's GOOS/GOARCH.
func platform(w *kilnpb.Worker) string {
	if w.Goos == "" && w.Goarch == "" {
		return ""
	}
	return w.Goos + "/" + w.Goarch
}

// formatLabels shows labels as "gpu=true,os=linux", sorted by key.
func formatLabels(labels map[string]string) string {
	pairs := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		pairs = append(pairs, k+"="+labels[k])
	}
	return strings.Join(pairs, ",")
}

type workerStateOptions struct {
	clientOptions
	verb string // "suspend" or "resume"
}

// newWorkerStateCommand builds `ci workers suspend` and `ci workers
// resume`, which differ only in the call they make.
func newWorkerStateCommand(e *env, verb, short string) *cobra.Command {
	o := &workerStateOptions{clientOptions: newClientOptions(e), verb: verb}
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *workerStateOptions) run(cmd *cobra.Command, name string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	call := c.ResumeWorker
	if o.verb == "suspend" {
		call = c.SuspendWorker
	}
	w, err := call(ctx, &kilnpb.WorkerRequest{Name: name})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, newWorkerJSON(w))
	}
	_, err = fmt.Fprintf(out, "worker %s is %s\n", w.Name, w.State)
	return err
}

// workerJSON is a worker for scripts (see doc.go).
type workerJSON struct {
	ID       uint64            `json:"id"`
	Name     string            `json:"name"`
	Hostname string            `json:"hostname"`
	State    string            `json:"state"`
	Reason   string            `json:"reason"`
	LastSeen timestamp         `json:"last_seen"`
	Joined   timestamp         `json:"joined"`
	Goos     string            `json:"goos"`
	Goarch   string            `json:"goarch"`
	Labels   map[string]string `json:"labels"`
	Slots    uint32            `json:"slots"`
	Busy     uint32            `json:"busy"`
}

func newWorkerJSON(w *kilnpb.Worker) workerJSON {
	return workerJSON{
		ID:       w.Id,
		Name:     w.Name,
		Hostname: w.Hostname,
		State:    w.State,
		Reason:   w.Reason,
		LastSeen: timestamp(w.LastSeen),
		Joined:   timestamp(w.Joined),
		Goos:     w.Goos,
		Goarch:   w.Goarch,
		Labels:   nonNilMap(w.Labels),
		Slots:    w.Slots,
		Busy:     w.Busy,
	}
}
