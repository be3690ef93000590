package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
)

func newPipelineCommand(e *env) *cobra.Command {
	return newGroupCommand("pipeline", "Create, list, show, update and delete pipelines",
		newPipelineCreateCommand(e),
		newPipelineListCommand(e),
		newPipelineShowCommand(e),
		newPipelineUpdateCommand(e),
		newPipelineDeleteCommand(e),
	)
}

type pipelineCreateOptions struct {
	clientOptions
	triggers triggerFlags
	source   string
	ref      string
	dir      string
}

func newPipelineCreateCommand(e *env) *cobra.Command {
	o := &pipelineCreateOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "create NAME --source URL",
		Short: "Register a pipeline and build its first version",
		Long: "Register a pipeline and build its first version. The build's progress goes\n" +
			"to stderr while it runs; the version built goes to stdout.\n\n" +
			triggersHelp,
		Example: "  ci pipeline create build --source file:///srv/git/app.git --dir ci --ref main\n" +
			"  ci pipeline create app --source file:///srv/git/app.git --ref main \\\n" +
			"      --webhook-secret-file hook.secret --poll 5m\n" +
			"  ci pipeline create nightly --source file:///srv/git/app.git \\\n" +
			"      --schedule \"0 3 * * *\" --timezone Europe/Paris --depends-on build,lint",
		Args: wantArgs(1, 1),
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
	o.triggers.addFlags(fs)
	return cmd
}

// triggersHelp tells what the trigger flags of create and update do.
const triggersHelp = "Besides `ci run`, runs start on a push (--webhook-secret-file: the master\n" +
	"then takes deliveries at POST /hooks/NAME on its HTTP port, 7071 unless\n" +
	"`ci server --http-addr` says otherwise), when a poll sees the followed ref move\n" +
	"(--poll), on cron schedules (--schedule, --timezone), and after each successful\n" +
	"run of another pipeline (--depends-on). The master checks these settings."

func (o *pipelineCreateOptions) run(cmd *cobra.Command, name string) error {
	if o.source == "" {
		return usageErrorf(cmd, "--source is required")
	}
	req := &kilnpb.CreatePipelineRequest{Name: name, Source: o.source, Ref: o.ref, Dir: o.dir}
	if err := o.triggers.createRequest(cmd, req); err != nil {
		return err
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	stream, err := c.CreatePipeline(ctx, req)
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

	t := newTable(out, "NAME", "REF", "VERSION", "LAST RUN", "TRIGGERS", "SOURCE", "DIR")
	for _, p := range resp.Pipelines {
		t.row(p.Name, p.Ref, version(p.CurrentVersion), o.lastRun(p), triggerSummary(p.Triggers),
			p.Source, p.Dir)
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
		Short: "Show a pipeline: its source, ref policy, version, last run and triggers",
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

	return o.printPipeline(cmd.OutOrStdout(), p)
}

// printPipeline prints a pipeline's facts, one per line, then its recent
// trigger events; or its JSON form.
func (o *clientOptions) printPipeline(w io.Writer, p *kilnpb.Pipeline) error {
	if o.wantJSON() {
		return writeJSON(w, newPipelineJSON(p))
	}

	now := o.now()
	t := newTable(w)
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
	paramRows(t, p.Params)
	triggerRows(t, p, now)
	if err := t.flush(); err != nil {
		return err
	}
	return printEvents(w, p.Events, now)
}

// paramRows lists the parameters a run takes: "race: bool, default false;
// test with -race".
func paramRows(t *table, params []*pluginpb.Param) {
	if len(params) == 0 {
		t.row("parameters:", "none")
		return
	}
	t.row("parameters:", fmt.Sprint(len(params)))
	for _, p := range params {
		kind := p.Type
		if p.Type == "choice" {
			kind = "one of " + strings.Join(p.Choices, ", ")
		}
		line := fmt.Sprintf("%s, default %q", kind, p.Default)
		if p.Description != "" {
			line += "; " + p.Description
		}
		t.subRow(p.Name+":", line)
	}
}

// lastRunBy shows a pipeline's latest run and who started it.
func (o *clientOptions) lastRunBy(p *kilnpb.Pipeline) string {
	s := o.lastRun(p)
	if s != "" && p.LastRunBy != "" {
		s += " by " + p.LastRunBy
	}
	return s
}

type pipelineUpdateOptions struct {
	clientOptions
	triggers    triggerFlags
	noWebhook   bool
	noSchedule  bool
	noDependsOn bool
}

// updateFlags are the flags of `pipeline update` that change something,
// in the order of its help.
var updateFlags = []string{
	"webhook-secret-file", "no-webhook", "poll", "schedule", "no-schedule", "timezone",
	"depends-on", "no-depends-on",
}

// updateConflicts are the pairs of update flags that contradict each other.
var updateConflicts = [][2]string{
	{"webhook-secret-file", "no-webhook"},
	{"schedule", "no-schedule"},
	{"depends-on", "no-depends-on"},
}

func newPipelineUpdateCommand(e *env) *cobra.Command {
	o := &pipelineUpdateOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change what starts a pipeline's runs: webhook, polling, schedules, upstreams",
		Long: "Change what starts a pipeline's runs. Only the settings of the flags given\n" +
			"change; --schedule and --depends-on replace their whole list. The master\n" +
			"changes nothing when a setting is wrong. The pipeline is printed as\n" +
			"`ci pipeline show` prints it.\n\n" +
			triggersHelp,
		Example: "  ci pipeline update app --webhook-secret-file hook.secret\n" +
			"  ci pipeline update app --poll 1m\n" +
			"  ci pipeline update nightly --schedule \"0 3 * * 1-5\" --schedule @weekly " +
			"--timezone Europe/Paris\n" +
			"  ci pipeline update deploy --depends-on build,lint\n" +
			"  ci pipeline update app --no-webhook --poll 0 --no-schedule --no-depends-on",
		Args: wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	fs := cmd.Flags()
	o.triggers.addFlags(fs)
	fs.BoolVar(&o.noWebhook, "no-webhook", false, "turn the webhook off and forget its secret")
	fs.BoolVar(&o.noSchedule, "no-schedule", false, "remove every schedule, and their time zone")
	fs.BoolVar(&o.noDependsOn, "no-depends-on", false, "stop running after other pipelines")
	return cmd
}

func (o *pipelineUpdateOptions) run(cmd *cobra.Command, name string) error {
	req, err := o.request(cmd, name)
	if err != nil {
		return err
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	p, err := c.UpdatePipeline(ctx, req)
	if err != nil {
		return c.callError(ctx, err)
	}
	return o.printPipeline(cmd.OutOrStdout(), p)
}

// request builds the UpdatePipelineRequest that sets what the flags given
// say and leaves the rest unset, so that the master keeps it.
func (o *pipelineUpdateOptions) request(cmd *cobra.Command,
	name string) (*kilnpb.UpdatePipelineRequest, error) {
	fs := cmd.Flags()
	if err := checkUpdateFlags(cmd); err != nil {
		return nil, err
	}

	req := &kilnpb.UpdatePipelineRequest{Name: name}
	if given(fs, "webhook-secret-file") {
		secret, err := o.triggers.webhookSecret(cmd)
		if err != nil {
			return nil, err
		}
		req.WebhookSecret = proto.String(secret)
	}
	if given(fs, "no-webhook") {
		req.WebhookSecret = proto.String("")
	}
	if given(fs, "poll") {
		req.PollMs = proto.Int64(pollMs(o.triggers.poll))
	}
	if given(fs, "schedule") || given(fs, "no-schedule") {
		req.Schedules = &kilnpb.Strings{Values: o.triggers.schedules}
	}
	if given(fs, "timezone") {
		req.Timezone = proto.String(o.triggers.timezone)
	}
	if given(fs, "no-schedule") && !given(fs, "timezone") {
		// The zone belongs to the schedules: one set later starts in UTC.
		req.Timezone = proto.String("")
	}
	if given(fs, "depends-on") || given(fs, "no-depends-on") {
		deps, err := o.triggers.upstreams(cmd)
		if err != nil {
			return nil, err
		}
		req.DependsOn = &kilnpb.Strings{Values: deps}
	}
	return req, nil
}

// checkUpdateFlags refuses an update that changes nothing or contradicts
// itself.
func checkUpdateFlags(cmd *cobra.Command) error {
	fs := cmd.Flags()
	for _, pair := range updateConflicts {
		if given(fs, pair[0]) && given(fs, pair[1]) {
			return usageErrorf(cmd, "give --%s or --%s, not both", pair[0], pair[1])
		}
	}
	for _, name := range updateFlags {
		if given(fs, name) {
			return nil
		}
	}
	return usageErrorf(cmd, "nothing to change: give one or more of --%s",
		strings.Join(updateFlags, ", --"))
}

// given reports whether the command line set the flag. A clear flag such
// as --no-webhook counts only when true, so that --no-webhook=false asks
// for nothing.
func given(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil || !f.Changed {
		return false
	}
	return f.Value.Type() != "bool" || f.Value.String() == "true"
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

	Triggers     triggersJSON       `json:"triggers"`
	TriggerState triggerStateJSON   `json:"trigger_state"`
	Events       []triggerEventJSON `json:"events"` // [] in lists
	Params       []paramJSON        `json:"params"` // [] in lists
}

// paramJSON is a parameter the current version declares.
type paramJSON struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Default     string   `json:"default"`
	Description string   `json:"description"`
	Choices     []string `json:"choices"`
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
		Triggers:       newTriggersJSON(p.Triggers),
		TriggerState:   newTriggerStateJSON(p.TriggerState),
		Events:         newEventsJSON(p.Events),
		Params:         []paramJSON{},
	}
	for _, q := range p.Params {
		j.Params = append(j.Params, paramJSON{Name: q.Name, Type: q.Type, Default: q.Default,
			Description: q.Description, Choices: append([]string{}, q.Choices...)})
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
