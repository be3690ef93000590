package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
)

type runOptions struct {
	clientOptions
	params []string
	wait   bool
}

func newRunCommand(e *env) *cobra.Command {
	o := &runOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "Start a run of a pipeline's current version",
		Long: "Start a run of a pipeline's current version. With --wait, follow it, print\n" +
			"each job's changes and exit 1 unless the run succeeds.",
		Example: "  ci run build --param target=linux --wait",
		Args:    wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	fs := cmd.Flags()
	// A string array, not a slice: a value may hold commas.
	fs.StringArrayVarP(&o.params, "param", "p", nil, "parameter NAME=VALUE; repeat for more")
	fs.BoolVarP(&o.wait, "wait", "w", false, "follow the run until it ends")
	return cmd
}

func (o *runOptions) run(cmd *cobra.Command, name string) error {
	params, err := parseParams(o.params)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	r, err := c.StartRun(ctx, &kilnpb.StartRunRequest{Name: name, Params: params})
	if err != nil {
		return c.callError(ctx, err)
	}
	if !o.wait {
		return o.printStarted(cmd, r)
	}

	r, err = o.follow(cmd, c, r)
	if err != nil {
		return err
	}
	return o.printOutcome(cmd, r)
}

// parseParams turns --param NAME=VALUE flags into a run's parameters. The
// value is all after the first "=", so it may hold "=" or be empty. A name
// given twice is refused rather than silently overridden.
func parseParams(flags []string) (map[string]string, error) {
	params := make(map[string]string, len(flags))
	for _, f := range flags {
		name, value, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("--param %q: want NAME=VALUE", f)
		case name == "":
			return nil, fmt.Errorf("--param %q: missing name before \"=\"", f)
		case strings.IndexFunc(name, unicode.IsSpace) >= 0:
			return nil, fmt.Errorf("--param %q: the name holds a space", f)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("--param %q: %q is given twice", f, name)
		}
		params[name] = value
	}
	return params, nil
}

// printStarted prints the run that StartRun answered.
func (o *runOptions) printStarted(cmd *cobra.Command, r *kilnpb.Run) error {
	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, newRunJSON(r))
	}
	_, err := fmt.Fprintf(out, "run %d of %s (version %d) %s\n", r.Id, r.Pipeline, r.Version,
		r.Status)
	return err
}

// follow watches the run until it is final and returns it then. People see
// each change as it comes; scripts (-o json) only the final run.
func (o *runOptions) follow(cmd *cobra.Command, c *client, r *kilnpb.Run) (*kilnpb.Run, error) {
	ctx := cmd.Context()
	var p *runPrinter
	if !o.wantJSON() {
		p = &runPrinter{w: cmd.OutOrStdout(), now: o.now, jobs: map[string]string{}}
		p.update(r)
	}

	// A master that restarts ends the stream; the run goes on, so the
	// watch does too, once the master is back.
	deadline := time.Now().Add(reconnectFor)
	for !isFinal(r.Status) {
		err := o.watch(ctx, c, r.Id, func(next *kilnpb.Run) {
			r = next
			p.update(r)
			deadline = time.Now().Add(reconnectFor)
		})
		if err == nil || isFinal(r.Status) {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return nil, watchError(c, cmd, r, err)
		}
		select {
		case <-ctx.Done():
			return nil, watchError(c, cmd, r, ctx.Err())
		case <-time.After(time.Second):
		}
	}

	if !isFinal(r.Status) {
		return nil, fmt.Errorf("run %d: the master stopped sending updates while the run was %s",
			r.Id, r.Status)
	}
	return r, nil
}

// reconnectFor is how long --wait keeps trying to reach a master that went
// away before it gives up.
const reconnectFor = 2 * time.Minute

// watch follows a run until its stream ends, passing each state to seen.
func (o *runOptions) watch(ctx context.Context, c *client, id uint64,
	seen func(*kilnpb.Run)) error {
	stream, err := c.WatchRun(ctx, &kilnpb.GetRunRequest{Id: id})
	if err != nil {
		return err
	}
	for {
		next, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		seen(next)
	}
}

// watchError says that the run goes on when the user stopped watching it.
func watchError(c *client, cmd *cobra.Command, r *kilnpb.Run, err error) error {
	if cmd.Context().Err() != nil {
		return fmt.Errorf("interrupted; run %d goes on (ci runs cancel %d stops it)", r.Id, r.Id)
	}
	return c.callError(cmd.Context(), err)
}

// printOutcome prints a final run, and fails unless it succeeded.
func (o *runOptions) printOutcome(cmd *cobra.Command, r *kilnpb.Run) error {
	out := cmd.OutOrStdout()
	var err error
	if o.wantJSON() {
		err = writeJSON(out, newRunJSON(r))
	} else {
		_, err = fmt.Fprintf(out, "run %d %s in %s\n", r.Id, r.Status,
			span(r.Started, r.Finished, o.now()))
	}
	if err != nil || r.Status == "succeeded" {
		return err
	}

	msg := fmt.Sprintf("run %d %s", r.Id, r.Status)
	if r.Reason != "" {
		msg += ": " + r.Reason
	}
	return errors.New(msg)
}

// isFinal reports whether a run's status can change no more.
func isFinal(status string) bool {
	switch status {
	case "succeeded", "failed", "cancelled":
		return true
	}
	return false
}

// runPrinter prints what changed between the snapshots of a run that
// WatchRun sends, one line per change, so that a terminal and a CI log read
// alike. A nil runPrinter prints nothing.
type runPrinter struct {
	w      io.Writer
	now    func() time.Time
	status string            // the run's status as last printed
	jobs   map[string]string // each job's state as last printed
}

func (p *runPrinter) update(r *kilnpb.Run) {
	if p == nil {
		return
	}
	// The final status is printOutcome's line, with the run's duration.
	if r.Status != p.status && !isFinal(r.Status) {
		if p.status == "" {
			fmt.Fprintf(p.w, "run %d of %s (version %d) %s\n", r.Id, r.Pipeline, r.Version,
				r.Status)
		} else {
			fmt.Fprintf(p.w, "run %d %s\n", r.Id, r.Status)
		}
	}
	p.status = r.Status

	width := 0
	for _, j := range r.Jobs {
		width = max(width, len(j.Name))
	}
	for _, j := range r.Jobs {
		state := fmt.Sprint(j.Status, j.Worker, j.Attempts, j.Waiting, j.Error)
		if p.jobs[j.Name] == state {
			continue
		}
		p.jobs[j.Name] = state
		fmt.Fprintf(p.w, "  %-*s  %s\n", width, j.Name, describeJob(j, p.now()))
	}
}

// describeJob tells a job's state in one phrase: "failed in 340ms on w2
// (attempt 2): exit status 1", "queued: no worker with label gpu".
func describeJob(j *kilnpb.Job, now time.Time) string {
	var b strings.Builder
	b.WriteString(j.Status)
	if j.Finished != 0 && j.Started != 0 {
		b.WriteString(" in " + span(j.Started, j.Finished, now))
	}
	if j.Worker != "" {
		b.WriteString(" on " + j.Worker)
	}
	if j.Attempts > 1 {
		fmt.Fprintf(&b, " (attempt %d)", j.Attempts)
	}
	if j.Error != "" {
		b.WriteString(": " + oneLine(j.Error))
	}
	if j.Status == "queued" && j.Waiting != "" {
		b.WriteString(": " + j.Waiting)
	}
	return b.String()
}

func newRunsCommand(e *env) *cobra.Command {
	return newGroupCommand("runs", "List, show and cancel runs",
		newRunsListCommand(e),
		newRunsShowCommand(e),
		newRunsCancelCommand(e),
	)
}

type runsListOptions struct {
	clientOptions
	limit uint32
}

func newRunsListCommand(e *env) *cobra.Command {
	o := &runsListOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:     "list [NAME]",
		Aliases: []string{"ls"},
		Short:   "List the latest runs, of every pipeline or of one",
		Args:    wantArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return o.run(cmd, name)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().Uint32Var(&o.limit, "limit", 0, "how many runs at most (0: the master's default)")
	return cmd
}

func (o *runsListOptions) run(cmd *cobra.Command, name string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	resp, err := c.ListRuns(ctx, &kilnpb.ListRunsRequest{Pipeline: name, Limit: o.limit})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		list := make([]runJSON, 0, len(resp.Runs))
		for _, r := range resp.Runs {
			list = append(list, newRunJSON(r))
		}
		return writeJSON(out, list)
	}

	now := o.now()
	t := newTable(out, "ID", "PIPELINE", "VERSION", "STATUS", "CREATED", "DURATION", "BY")
	for _, r := range resp.Runs {
		t.row(fmt.Sprint(r.Id), r.Pipeline, version(r.Version), r.Status, ago(r.Created, now),
			span(r.Started, r.Finished, now), startedBy(r))
	}
	return t.flush()
}

type runsShowOptions struct {
	clientOptions
}

func newRunsShowCommand(e *env) *cobra.Command {
	o := &runsShowOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a run and each of its jobs",
		Args:  wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *runsShowOptions) run(cmd *cobra.Command, arg string) error {
	r, err := o.callRun(cmd, arg,
		func(ctx context.Context, c *client, id uint64) (*kilnpb.Run, error) {
			return c.GetRun(ctx, &kilnpb.GetRunRequest{Id: id})
		})
	if err != nil {
		return err
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, newRunJSON(r))
	}
	if err := o.printRun(out, r); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return o.printJobs(out, r)
}

// printRun prints a run's facts, one per line.
func (o *clientOptions) printRun(w io.Writer, r *kilnpb.Run) error {
	now := o.now()
	t := newTable(w)
	t.row("id:", fmt.Sprint(r.Id))
	t.row("pipeline:", r.Pipeline)
	t.row("version:", version(r.Version))
	t.row("commit:", r.Commit)
	t.row("digest:", r.Digest)
	t.row("status:", r.Status)
	t.row("reason:", r.Reason)
	t.row("params:", formatMap(r.Params))
	t.row("started by:", startedBy(r))
	t.row("trigger:", describeTrigger(r.Trigger))
	if tr := r.GetTrigger(); tr.GetKind() == "upstream" {
		t.row("upstream:", fmt.Sprintf("#%d of %s", tr.UpstreamRun, tr.UpstreamPipeline))
	}
	t.row("created:", when(r.Created, now))
	t.row("started:", when(r.Started, now))
	t.row("finished:", when(r.Finished, now))
	t.row("duration:", span(r.Started, r.Finished, now))
	return t.flush()
}

// printJobs prints a run's jobs as a table. DETAIL holds a failed job's
// error and why a queued job waits.
func (o *clientOptions) printJobs(w io.Writer, r *kilnpb.Run) error {
	now := o.now()
	t := newTable(w, "JOB", "STATUS", "DURATION", "WORKER", "ATTEMPTS", "DETAIL")
	for _, j := range r.Jobs {
		detail := j.Error
		if j.Status == "queued" && j.Waiting != "" {
			detail = j.Waiting
		}
		t.row(j.Name, j.Status, span(j.Started, j.Finished, now), j.Worker,
			fmt.Sprint(j.Attempts), detail)
	}
	return t.flush()
}

// formatMap shows a map as "a=1 b=2", sorted by key.
func formatMap(m map[string]string) string {
	pairs := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, k+"="+m[k])
	}
	return strings.Join(pairs, " ")
}

type runsCancelOptions struct {
	clientOptions
}

func newRunsCancelCommand(e *env) *cobra.Command {
	o := &runsCancelOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a run: its queued and running jobs stop",
		Args:  wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *runsCancelOptions) run(cmd *cobra.Command, arg string) error {
	r, err := o.callRun(cmd, arg,
		func(ctx context.Context, c *client, id uint64) (*kilnpb.Run, error) {
			return c.CancelRun(ctx, &kilnpb.CancelRunRequest{Id: id})
		})
	if err != nil {
		return err
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, newRunJSON(r))
	}
	_, err = fmt.Fprintf(out, "run %d %s\n", r.Id, r.Status)
	return err
}

// callRun makes one call about the run whose ID is arg: it reads the ID,
// dials the master and turns a refusal into the one line for the user.
func (o *clientOptions) callRun(cmd *cobra.Command, arg string,
	call func(context.Context, *client, uint64) (*kilnpb.Run, error)) (*kilnpb.Run, error) {
	id, err := parseRunID(arg)
	if err != nil {
		return nil, usageErrorf(cmd, "%v", err)
	}
	c, err := o.dial(cmd)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r, err := call(cmd.Context(), c, id)
	if err != nil {
		return nil, c.callError(cmd.Context(), err)
	}
	return r, nil
}

// parseRunID reads a run ID as people write it: "12" or "#12".
func parseRunID(arg string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(arg, "#"), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("run ID %q is not a positive number", arg)
	}
	return id, nil
}

type logsOptions struct {
	clientOptions
	follow bool
}

func newLogsCommand(e *env) *cobra.Command {
	o := &logsOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "logs ID [JOB]",
		Short: "Print the logs of a run's jobs, or of one job",
		Long: "Print the logs of a run's jobs as they were written, or of one job. Several\n" +
			"jobs come one after another, each after a \"==> JOB <==\" line. With -o json,\n" +
			"each chunk is one line of JSON: {\"job\", \"data\"}.",
		Args: wantArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job := ""
			if len(args) == 2 {
				job = args[1]
			}
			return o.run(cmd, args[0], job)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing until the run ends")
	return cmd
}

func (o *logsOptions) run(cmd *cobra.Command, arg, job string) error {
	id, err := parseRunID(arg)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	stream, err := c.Logs(ctx, &kilnpb.LogsRequest{RunId: id, Job: job, Follow: o.follow})
	if err != nil {
		return c.callError(ctx, err)
	}

	lw := &logWriter{w: cmd.OutOrStdout(), headers: job == "", json: o.wantJSON()}
	for {
		line, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		// Ctrl-C is how people end --follow: not a failure.
		if err != nil && o.follow && ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return c.callError(ctx, err)
		}
		if err := lw.write(line); err != nil {
			return err
		}
	}
}

// logWriter copies log bytes as they are. When it shows several jobs it
// puts a "==> JOB <==" line before each change of job, as tail(1) does for
// files.
type logWriter struct {
	w       io.Writer
	headers bool
	json    bool   // one {"job", "data"} line per chunk instead
	job     string // the job of the latest chunk
	started bool
	midLine bool // the latest chunk did not end its line
}

func (l *logWriter) write(line *kilnpb.LogLine) error {
	if l.json {
		return writeJSONLine(l.w, logLineJSON{Job: line.Job, Data: string(line.Data)})
	}

	if l.headers && (!l.started || line.Job != l.job) {
		sep := ""
		if l.midLine {
			sep = "\n"
		}
		if _, err := fmt.Fprintf(l.w, "%s==> %s <==\n", sep, line.Job); err != nil {
			return err
		}
	}
	l.started, l.job = true, line.Job
	if n := len(line.Data); n > 0 {
		l.midLine = line.Data[n-1] != '\n'
	}
	_, err := l.w.Write(line.Data)
	return err
}

// logLineJSON is one chunk of log for scripts (see doc.go).
type logLineJSON struct {
	Job  string `json:"job"`
	Data string `json:"data"`
}

// runJSON is a run for scripts (see doc.go).
type runJSON struct {
	ID        uint64            `json:"id"`
	Pipeline  string            `json:"pipeline"`
	Version   uint64            `json:"version"`
	Commit    string            `json:"commit"`
	Digest    string            `json:"digest"`
	Status    string            `json:"status"`
	Reason    string            `json:"reason"`
	StartedBy string            `json:"started_by"`
	Trigger   triggerJSON       `json:"trigger"`
	Params    map[string]string `json:"params"`
	Created   timestamp         `json:"created"`
	Started   timestamp         `json:"started"`
	Finished  timestamp         `json:"finished"`
	Jobs      []jobJSON         `json:"jobs"`
}

// jobJSON is a job of a run for scripts (see doc.go).
type jobJSON struct {
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	Worker    string            `json:"worker"`
	Attempts  uint32            `json:"attempts"`
	Started   timestamp         `json:"started"`
	Finished  timestamp         `json:"finished"`
	Error     string            `json:"error"`
	Waiting   string            `json:"waiting"`
	DependsOn []string          `json:"depends_on"`
	Outputs   map[string]string `json:"outputs"`
	History   []attemptJSON     `json:"history"`
}

// attemptJSON is one try of a job: on which worker, and how it ended.
type attemptJSON struct {
	ID       uint64    `json:"id"`
	Worker   string    `json:"worker"`
	Status   string    `json:"status"`
	Started  timestamp `json:"started"`
	Finished timestamp `json:"finished"`
	Error    string    `json:"error"`
}

func newRunJSON(r *kilnpb.Run) runJSON {
	j := runJSON{
		ID:        r.Id,
		Pipeline:  r.Pipeline,
		Version:   r.Version,
		Commit:    r.Commit,
		Digest:    r.Digest,
		Status:    r.Status,
		Reason:    r.Reason,
		StartedBy: r.StartedBy,
		Trigger:   newTriggerJSON(r.Trigger),
		Params:    nonNilMap(r.Params),
		Created:   timestamp(r.Created),
		Started:   timestamp(r.Started),
		Finished:  timestamp(r.Finished),
		Jobs:      make([]jobJSON, 0, len(r.Jobs)),
	}
	for _, job := range r.Jobs {
		j.Jobs = append(j.Jobs, newJobJSON(job))
	}
	return j
}

func newJobJSON(j *kilnpb.Job) jobJSON {
	return jobJSON{
		Name:      j.Name,
		Status:    j.Status,
		Worker:    j.Worker,
		Attempts:  j.Attempts,
		Started:   timestamp(j.Started),
		Finished:  timestamp(j.Finished),
		Error:     j.Error,
		Waiting:   j.Waiting,
		DependsOn: append([]string{}, j.DependsOn...),
		Outputs:   nonNilMap(j.Outputs),
		History:   history(j.History),
	}
}

func history(as []*kilnpb.Attempt) []attemptJSON {
	out := make([]attemptJSON, 0, len(as))
	for _, a := range as {
		out = append(out, attemptJSON{ID: a.Id, Worker: a.Worker, Status: a.Status,
			Started: timestamp(a.Started), Finished: timestamp(a.Finished), Error: a.Error})
	}
	return out
}

// nonNilMap keeps an empty map {} in JSON rather than null.
func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
