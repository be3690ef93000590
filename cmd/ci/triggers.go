package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// triggerFlags are the flags that say what starts a pipeline's runs
// besides `ci run`, shared by `pipeline create` and `pipeline update`. The
// master checks their values; ci only reads the secret file and splits
// the names.
type triggerFlags struct {
	secretFile string
	poll       time.Duration
	schedules  []string
	timezone   string
	dependsOn  []string
}

// addFlags declares the trigger flags on fs.
func (f *triggerFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.secretFile, "webhook-secret-file", "",
		"file holding the webhook's shared secret; turns on POST /hooks/NAME")
	fs.DurationVar(&f.poll, "poll", 0,
		"how often to ask the source whether the ref moved, e.g. 1m (0: never)")
	// String arrays, not slices: "0 3,15 * * *" holds a comma, and the
	// names are split by hand so that "a, b" loses its space.
	fs.StringArrayVar(&f.schedules, "schedule", nil,
		`cron expression to run on, e.g. "0 3 * * *" or @daily; repeat for more`)
	fs.StringVar(&f.timezone, "timezone", "",
		"IANA time zone of the schedules, e.g. Europe/Paris (empty: UTC)")
	fs.StringArrayVar(&f.dependsOn, "depends-on", nil,
		"pipeline whose successful runs start this one; repeat or separate with commas")
}

// webhookSecret reads --webhook-secret-file. A missing or empty file is a
// mistake in the command line, so it is a usage error.
func (f *triggerFlags) webhookSecret(cmd *cobra.Command) (string, error) {
	if f.secretFile == "" {
		return "", usageErrorf(cmd, "--webhook-secret-file wants the name of a file")
	}
	secret, err := readSecret(f.secretFile, "webhook secret")
	if err != nil {
		return "", usageErrorf(cmd, "%v", err)
	}
	return secret, nil
}

// upstreams reads --depends-on: names from every flag, split at commas,
// without white space around them or repeats.
func (f *triggerFlags) upstreams(cmd *cobra.Command) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for _, flag := range f.dependsOn {
		for _, name := range strings.Split(flag, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				return nil, usageErrorf(cmd, "--depends-on %q: a pipeline name is empty", flag)
			}
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	return names, nil
}

// createRequest fills the trigger fields of req from the flags.
func (f *triggerFlags) createRequest(cmd *cobra.Command, req *kilnpb.CreatePipelineRequest) error {
	if cmd.Flags().Changed("webhook-secret-file") {
		secret, err := f.webhookSecret(cmd)
		if err != nil {
			return err
		}
		req.WebhookSecret = secret
	}
	deps, err := f.upstreams(cmd)
	if err != nil {
		return err
	}
	req.Triggers = &kilnpb.Triggers{
		PollMs:    pollMs(f.poll),
		Schedules: f.schedules,
		Timezone:  f.timezone,
		DependsOn: deps,
	}
	return nil
}

// pollMs converts --poll to the API's milliseconds. A positive interval
// under a millisecond becomes 1 rather than 0, which means "off": the
// master then refuses it with its own sentence instead of ci silently
// turning polling off.
func pollMs(d time.Duration) int64 {
	ms := d.Milliseconds()
	if ms == 0 && d > 0 {
		ms = 1
	}
	return ms
}

// triggerSummary is a short list of what starts a pipeline's runs besides
// `ci run`, for tables: "webhook,poll 1m,cron,after build"; "" when
// nothing does. Upstreams are joined with "/" since each one's success
// starts a run on its own.
func triggerSummary(tr *kilnpb.Triggers) string {
	var parts []string
	if tr.GetWebhook() {
		parts = append(parts, "webhook")
	}
	if ms := tr.GetPollMs(); ms > 0 {
		parts = append(parts, "poll "+interval(msDuration(ms)))
	}
	if len(tr.GetSchedules()) > 0 {
		parts = append(parts, "cron")
	}
	if deps := tr.GetDependsOn(); len(deps) > 0 {
		parts = append(parts, "after "+strings.Join(deps, "/"))
	}
	return strings.Join(parts, ",")
}

// triggerRows adds to the table of `pipeline show` what starts the
// pipeline's runs: the summary, then one row per kind of trigger, with
// what the master's trigger loops last saw.
func triggerRows(t *table, p *kilnpb.Pipeline, now time.Time) {
	tr, st := p.GetTriggers(), p.GetTriggerState()
	t.row("triggers:", triggerSummary(tr))
	t.subRow("webhook:", webhookLine(p.Name, tr))
	if tr.GetWebhook() && st.GetRefused() != "" {
		t.subRow("last refused:", ago(st.GetRefusedAt(), now)+": "+st.GetRefused())
	}
	t.subRow("poll:", pollLine(tr, st, now))
	if tr.GetPollMs() > 0 && st.GetPollError() != "" {
		t.subRow("poll error:", st.GetPollError())
	}
	t.subRow("schedules:", scheduleLine(tr))
	if len(tr.GetSchedules()) > 0 {
		t.subRow("next schedule:", whenNext(st.GetNextSchedule(), now))
	}
	t.subRow("depends on:", strings.Join(tr.GetDependsOn(), ", "))
}

// webhookLine says whether the webhook is on and where it listens. ci
// knows only the master's gRPC address, so the HTTP port is named, not
// guessed.
func webhookLine(name string, tr *kilnpb.Triggers) string {
	if !tr.GetWebhook() {
		return "off"
	}
	return "on: POST /hooks/" + url.PathEscape(name) + " on the master's HTTP port"
}

// pollLine shows the poll interval and the last poll: "every 1m; last 30s
// ago, saw 0123456789ab".
func pollLine(tr *kilnpb.Triggers, st *kilnpb.TriggerState, now time.Time) string {
	if tr.GetPollMs() <= 0 {
		return "off"
	}
	s := "every " + interval(msDuration(tr.GetPollMs()))
	if st.GetPolledAt() == 0 {
		return s + "; not polled yet"
	}
	s += "; last " + ago(st.GetPolledAt(), now)
	if st.GetPollCommit() != "" {
		s += ", saw " + short(st.GetPollCommit(), 12)
	}
	return s
}

// scheduleLine shows the cron expressions and their zone: "0 3 * * *;
// @daily (Europe/Paris)". A semicolon parts them because cron expressions
// hold spaces and commas but never one.
func scheduleLine(tr *kilnpb.Triggers) string {
	if len(tr.GetSchedules()) == 0 {
		return ""
	}
	zone := tr.GetTimezone()
	if zone == "" {
		zone = "UTC"
	}
	return strings.Join(tr.GetSchedules(), "; ") + " (" + zone + ")"
}

// maxEvents is how many trigger events `pipeline show` lists.
const maxEvents = 10

// printEvents prints the pipeline's newest trigger events as a table,
// after a blank line. The section is there even when empty: "none" tells
// someone waiting for a webhook that no delivery arrived.
func printEvents(w io.Writer, events []*kilnpb.TriggerEvent, now time.Time) error {
	if len(events) == 0 {
		_, err := fmt.Fprint(w, "\nrecent triggers: none\n")
		return err
	}
	if _, err := fmt.Fprint(w, "\nrecent triggers:\n"); err != nil {
		return err
	}
	t := newTable(w, "WHEN", "KIND", "OUTCOME", "RUN", "MESSAGE")
	for _, ev := range events[:min(len(events), maxEvents)] {
		msg := ev.Message
		if msg == "" {
			msg = ev.GetTrigger().GetDetail()
		}
		t.row(ago(ev.At, now), ev.GetTrigger().GetKind(), ev.Outcome, runRef(ev.RunId), msg)
	}
	return t.flush()
}

// runRef shows a run ID as "#12"; "" for none.
func runRef(id uint64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("#%d", id)
}

// describeTrigger tells what started a run in one line: "webhook: github
// push to refs/heads/main (delivery 72d3)".
func describeTrigger(tr *kilnpb.Trigger) string {
	s := tr.GetKind()
	if d := tr.GetDetail(); d != "" && s != "" {
		s += ": " + d
	} else if d != "" {
		s = d
	}
	if id := tr.GetDelivery(); id != "" {
		s += " (delivery " + id + ")"
	}
	return s
}

// startedBy is who or what started a run: the master's short form, or
// the trigger's kind from a master that left it empty.
func startedBy(r *kilnpb.Run) string {
	if r.StartedBy != "" {
		return r.StartedBy
	}
	return r.GetTrigger().GetKind()
}

// interval shows a duration as people write intervals: 1m, 1m30s, 1h.
func interval(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// whenNext shows a coming API time: local time and how long until it; a
// slot already past reads "due now" (the master fires it soon).
func whenNext(ms int64, now time.Time) string {
	if ms == 0 {
		return ""
	}
	t := time.UnixMilli(ms)
	rel := "due now"
	if d := t.Sub(now); d > 0 {
		rel = "in " + roughDuration(d)
	}
	return t.Local().Format("2006-01-02 15:04:05") + " (" + rel + ")"
}

// triggersJSON is what starts a pipeline's runs, for scripts (see doc.go).
type triggersJSON struct {
	Webhook   bool     `json:"webhook"`
	PollMs    int64    `json:"poll_ms"`
	Schedules []string `json:"schedules"`
	Timezone  string   `json:"timezone"`
	DependsOn []string `json:"depends_on"`
}

func newTriggersJSON(tr *kilnpb.Triggers) triggersJSON {
	return triggersJSON{
		Webhook:   tr.GetWebhook(),
		PollMs:    tr.GetPollMs(),
		Schedules: append([]string{}, tr.GetSchedules()...),
		Timezone:  tr.GetTimezone(),
		DependsOn: append([]string{}, tr.GetDependsOn()...),
	}
}

// triggerStateJSON is what the master's trigger loops last saw.
type triggerStateJSON struct {
	PollCommit   string    `json:"poll_commit"`
	PolledAt     timestamp `json:"polled_at"`
	PollError    string    `json:"poll_error"`
	ScheduledAt  timestamp `json:"scheduled_at"`
	NextSchedule timestamp `json:"next_schedule"`
}

func newTriggerStateJSON(st *kilnpb.TriggerState) triggerStateJSON {
	return triggerStateJSON{
		PollCommit:   st.GetPollCommit(),
		PolledAt:     timestamp(st.GetPolledAt()),
		PollError:    st.GetPollError(),
		ScheduledAt:  timestamp(st.GetScheduledAt()),
		NextSchedule: timestamp(st.GetNextSchedule()),
	}
}

// triggerJSON is what started a run, or tried to.
type triggerJSON struct {
	Kind             string `json:"kind"`
	By               string `json:"by"`
	Detail           string `json:"detail"`
	Delivery         string `json:"delivery"`
	UpstreamPipeline string `json:"upstream_pipeline"`
	UpstreamRun      uint64 `json:"upstream_run"`
	Ref              string `json:"ref"`
	Commit           string `json:"commit"`
}

// newTriggerJSON keeps every key of a missing trigger, with "" and 0.
func newTriggerJSON(tr *kilnpb.Trigger) triggerJSON {
	return triggerJSON{
		Kind:             tr.GetKind(),
		By:               tr.GetBy(),
		Detail:           tr.GetDetail(),
		Delivery:         tr.GetDelivery(),
		UpstreamPipeline: tr.GetUpstreamPipeline(),
		UpstreamRun:      tr.GetUpstreamRun(),
		Ref:              tr.GetRef(),
		Commit:           tr.GetCommit(),
	}
}

// triggerEventJSON is one thing that tried to start a run.
type triggerEventJSON struct {
	At      timestamp   `json:"at"`
	Trigger triggerJSON `json:"trigger"`
	Outcome string      `json:"outcome"`
	Message string      `json:"message"`
	RunID   uint64      `json:"run_id"`
	Version uint64      `json:"version"`
}

func newEventsJSON(events []*kilnpb.TriggerEvent) []triggerEventJSON {
	out := make([]triggerEventJSON, 0, len(events))
	for _, ev := range events {
		out = append(out, triggerEventJSON{
			At:      timestamp(ev.At),
			Trigger: newTriggerJSON(ev.Trigger),
			Outcome: ev.Outcome,
			Message: ev.Message,
			RunID:   ev.RunId,
			Version: ev.Version,
		})
	}
	return out
}
