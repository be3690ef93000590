package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func newPipelineCommand(e *env) *cobra.Command {
	return newGroupCommand("pipeline", "Create, list, show and delete pipelines",
		newPipelineCreateCommand(e),
		newPipelineListCommand(e),
		newPipelineShowCommand(e),
		newPipelineDeleteCommand(e),
	)
}

type pipelineCreateOptions struct {
	clientOptions
	source string
	ref    string
	dir    string
}

func newPipelineCreateCommand(e *env) *cobra.Command {
	o := &pipelineCreateOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "create NAME --source URL",
		Short: "Register a pipeline and build its first version",
		Long: "Register a pipeline and build its first version. The build's progress goes\n" +
			"to stderr while it runs; the version built goes to stdout.",
		Example: "  ci pipeline create build --source file:///srv/git/app.git --dir ci --ref main",
		Args:    wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.source, "source", "", "git URL of the repository (go-getter form)")
	fs.StringVar(&o.ref, "ref", "",
		"ref to follow: branch, tag, commit or semver constraint (empty: the master chooses)")
	fs.StringVar(&o.dir, "dir", "", "folder of the pipeline program in the repository")
	return cmd
}

func (o *pipelineCreateOptions) run(cmd *cobra.Command, name string) error {
	if o.source == "" {
		return usageErrorf(cmd, "--source is required")
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	stream, err := c.CreatePipeline(ctx, &kilnpb.CreatePipelineRequest{
		Name:   name,
		Source: o.source,
		Ref:    o.ref,
		Dir:    o.dir,
	})
	if err != nil {
		return c.callError(ctx, err)
	}
	return o.finishBuild(cmd, c, name, stream)
}

type pipelineListOptions struct {
	clientOptions
}

func newPipelineListCommand(e *env) *cobra.Command {
	o := &pipelineListOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List pipelines",
		Args:    wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *pipelineListOptions) run(cmd *cobra.Command) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	resp, err := c.ListPipelines(ctx, &kilnpb.ListPipelinesRequest{})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		list := make([]pipelineJSON, 0, len(resp.Pipelines))
		for _, p := range resp.Pipelines {
			list = append(list, newPipelineJSON(p))
		}
		return writeJSON(out, list)
	}

	t := newTable(out, "NAME", "REF", "VERSION", "LAST RUN", "SOURCE", "DIR")
	for _, p := range resp.Pipelines {
		t.row(p.Name, p.Ref, version(p.CurrentVersion), o.lastRun(p), p.Source, p.Dir)
	}
	return t.flush()
}

// lastRun shows a pipeline's latest run as "#12 failed 2m ago".
func (o *clientOptions) lastRun(p *kilnpb.Pipeline) string {
	if p.LastRunId == 0 {
		return ""
	}
	return fmt.Sprintf("#%d %s %s", p.LastRunId, p.LastRunStatus, ago(p.LastRunAt, o.now()))
}

type pipelineShowOptions struct {
	clientOptions
}

func newPipelineShowCommand(e *env) *cobra.Command {
	o := &pipelineShowOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a pipeline: its source, ref policy, current version and last run",
		Args:  wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *pipelineShowOptions) run(cmd *cobra.Command, name string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	p, err := c.GetPipeline(ctx, &kilnpb.GetPipelineRequest{Name: name})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, newPipelineJSON(p))
	}

	now := o.now()
	t := newTable(out)
	t.row("id:", fmt.Sprint(p.Id))
	t.row("name:", p.Name)
	t.row("description:", p.Description)
	t.row("source:", p.Source)
	t.row("dir:", p.Dir)
	t.row("ref:", p.Ref)
	t.row("current version:", version(p.CurrentVersion))
	t.row("created:", when(p.Created, now))
	t.row("modified:", when(p.Modified, now))
	t.row("last run:", o.lastRunBy(p))
	return t.flush()
}

// lastRunBy shows a pipeline's latest run and who started it.
func (o *clientOptions) lastRunBy(p *kilnpb.Pipeline) string {
	s := o.lastRun(p)
	if s != "" && p.LastRunBy != "" {
		s += " by " + p.LastRunBy
	}
	return s
}

type pipelineDeleteOptions struct {
	clientOptions
}

func newPipelineDeleteCommand(e *env) *cobra.Command {
	o := &pipelineDeleteOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a pipeline",
		Args:    wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *pipelineDeleteOptions) run(cmd *cobra.Command, name string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	_, err = c.DeletePipeline(ctx, &kilnpb.DeletePipelineRequest{Name: name})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, deletedJSON{Name: name, Deleted: true})
	}
	_, err = fmt.Fprintf(out, "deleted pipeline %q\n", name)
	return err
}

// version shows a version number; 0 means none yet.
func version(n uint64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

// pipelineJSON is a pipeline for scripts (see doc.go).
type pipelineJSON struct {
	ID             uint64       `json:"id"`
	Name           string       `json:"name"`
	Description    string       `json:"description"`
	Source         string       `json:"source"`
	Dir            string       `json:"dir"`
	Ref            string       `json:"ref"`
	CurrentVersion uint64       `json:"current_version"`
	Created        timestamp    `json:"created"`
	Modified       timestamp    `json:"modified"`
	LastRun        *lastRunJSON `json:"last_run"` // null when never run
}

type lastRunJSON struct {
	ID     uint64    `json:"id"`
	Status string    `json:"status"`
	At     timestamp `json:"at"`
	By     string    `json:"by"`
}

func newPipelineJSON(p *kilnpb.Pipeline) pipelineJSON {
	j := pipelineJSON{
		ID:             p.Id,
		Name:           p.Name,
		Description:    p.Description,
		Source:         p.Source,
		Dir:            p.Dir,
		Ref:            p.Ref,
		CurrentVersion: p.CurrentVersion,
		Created:        timestamp(p.Created),
		Modified:       timestamp(p.Modified),
	}
	if p.LastRunId != 0 {
		j.LastRun = &lastRunJSON{
			ID:     p.LastRunId,
			Status: p.LastRunStatus,
			At:     timestamp(p.LastRunAt),
			By:     p.LastRunBy,
		}
	}
	return j
}

// deletedJSON confirms a deletion to scripts.
type deletedJSON struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}
