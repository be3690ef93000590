package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// secretFile writes content to a file of its own and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPipelineCreateSendsTriggerFlags(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x", built: readyVersion()}
	addr := startFake(t, f)
	secret := secretFile(t, "  s3cret\n\n")

	ciOK(t, nil, "pipeline", "create", "nightly", "--source", "file:///srv/app.git",
		"--webhook-secret-file", secret, "--poll", "1m30s",
		"--schedule", "0 3,15 * * *", "--schedule", "@daily", "--timezone", "Europe/Paris",
		"--depends-on", "build, lint", "--depends-on", "test", "--depends-on", "build",
		"--master", addr, "--token", "x")

	got := f.request("CreatePipeline").(*kilnpb.CreatePipelineRequest)
	want := &kilnpb.CreatePipelineRequest{
		Name: "nightly", Source: "file:///srv/app.git", WebhookSecret: "s3cret",
		Triggers: &kilnpb.Triggers{
			PollMs:    90000,
			Schedules: []string{"0 3,15 * * *", "@daily"},
			Timezone:  "Europe/Paris",
			DependsOn: []string{"build", "lint", "test"},
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("request:\n%v\nwant:\n%v", got, want)
	}
}

func TestPipelineCreateWithoutTriggerFlagsSetsNone(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{built: readyVersion()}
	addr := startFake(t, f)

	ciOK(t, nil, "pipeline", "create", "build", "--source", "file:///srv/app.git",
		"--master", addr)

	got := f.request("CreatePipeline").(*kilnpb.CreatePipelineRequest)
	if got.WebhookSecret != "" || triggerSummary(got.Triggers) != "" ||
		got.Triggers.GetTimezone() != "" {
		t.Errorf("request: %v", got)
	}
}

// TestPipelineCreateBadSecretFileIsUsageError checks that ci refuses a
// secret file it cannot use before it calls the master.
func TestPipelineCreateBadSecretFileIsUsageError(t *testing.T) {
	t.Parallel()
	empty := secretFile(t, " \n\t\n")
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		file string
		want string
	}{
		{file: empty, want: "ci: webhook secret file " + empty + " is empty (usage:"},
		{file: missing, want: "ci: read the webhook secret file: open " + missing},
		{file: "", want: "ci: --webhook-secret-file wants the name of a file (usage:"},
	}
	for _, tt := range tests {
		f := &fakeMaster{built: readyVersion()}
		addr := startFake(t, f)

		r := ci(t, nil, "pipeline", "create", "build", "--source", "file:///srv/app.git",
			"--webhook-secret-file", tt.file, "--master", addr)

		if r.code != exitUsage || !strings.HasPrefix(r.stderr, tt.want) {
			t.Errorf("file %q: exit %d, stderr %q, want %q...", tt.file, r.code, r.stderr, tt.want)
		}
		if f.request("CreatePipeline") != nil {
			t.Errorf("file %q: the master was called", tt.file)
		}
	}
}

// TestPipelineUpdateSendsOnlyFlagsGiven checks that a setting the command
// line leaves out is unset in the request, so that the master keeps it,
// and that the clear flags send an empty value rather than none.
func TestPipelineUpdateSendsOnlyFlagsGiven(t *testing.T) {
	t.Parallel()
	secret := secretFile(t, "s3cret\n")
	tests := []struct {
		args []string
		want *kilnpb.UpdatePipelineRequest
	}{{
		args: []string{"--poll", "0"},
		want: &kilnpb.UpdatePipelineRequest{PollMs: proto.Int64(0)},
	}, {
		args: []string{"--poll", "500us"},
		want: &kilnpb.UpdatePipelineRequest{PollMs: proto.Int64(1)},
	}, {
		args: []string{"--webhook-secret-file", secret},
		want: &kilnpb.UpdatePipelineRequest{WebhookSecret: proto.String("s3cret")},
	}, {
		args: []string{"--no-webhook"},
		want: &kilnpb.UpdatePipelineRequest{WebhookSecret: proto.String("")},
	}, {
		args: []string{"--no-webhook=false", "--timezone", ""},
		want: &kilnpb.UpdatePipelineRequest{Timezone: proto.String("")},
	}, {
		args: []string{"--schedule", "@hourly", "--schedule", "0 3 * * *"},
		want: &kilnpb.UpdatePipelineRequest{
			Schedules: &kilnpb.Strings{Values: []string{"@hourly", "0 3 * * *"}}},
	}, {
		args: []string{"--no-schedule"},
		want: &kilnpb.UpdatePipelineRequest{Schedules: &kilnpb.Strings{}, Timezone: proto.String("")},
	}, {
		args: []string{"--depends-on", "lint,test"},
		want: &kilnpb.UpdatePipelineRequest{
			DependsOn: &kilnpb.Strings{Values: []string{"lint", "test"}}},
	}, {
		args: []string{"--no-depends-on", "--poll", "2m"},
		want: &kilnpb.UpdatePipelineRequest{DependsOn: &kilnpb.Strings{},
			PollMs: proto.Int64(120000)},
	}}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			f := &fakeMaster{token: "x", pipelines: testPipelines()}
			addr := startFake(t, f)

			args := append([]string{"pipeline", "update", "build", "--master", addr,
				"--token", "x"}, tt.args...)
			ciOK(t, nil, args...)

			got := f.request("UpdatePipeline").(*kilnpb.UpdatePipelineRequest)
			tt.want.Name = "build"
			if !proto.Equal(got, tt.want) {
				t.Errorf("request:\n%v\nwant:\n%v", got, tt.want)
			}
			if auth := f.authSeen("UpdatePipeline"); auth != "Bearer x" {
				t.Errorf("authorization: %q", auth)
			}
		})
	}
}

func TestPipelineUpdateUsageErrors(t *testing.T) {
	t.Parallel()
	secret := secretFile(t, "s3cret")
	empty := secretFile(t, "\n")
	missing := filepath.Join(t.TempDir(), "nope")
	nothing := "nothing to change: give one or more of --webhook-secret-file, " +
		"--no-webhook, --poll, --schedule, --no-schedule, --timezone, --depends-on, " +
		"--no-depends-on"
	tests := []struct {
		args []string
		want string
	}{
		{args: nil, want: nothing},
		{args: []string{"--no-webhook=false"}, want: nothing},
		{args: []string{"--webhook-secret-file", secret, "--no-webhook"},
			want: "give --webhook-secret-file or --no-webhook, not both"},
		{args: []string{"--no-schedule", "--schedule", "@daily"},
			want: "give --schedule or --no-schedule, not both"},
		{args: []string{"--depends-on", "a", "--no-depends-on"},
			want: "give --depends-on or --no-depends-on, not both"},
		{args: []string{"--webhook-secret-file", empty},
			want: "webhook secret file " + empty + " is empty"},
		{args: []string{"--webhook-secret-file", missing},
			want: "read the webhook secret file: open " + missing + ": "},
		{args: []string{"--depends-on", "a,,b"},
			want: `--depends-on "a,,b": a pipeline name is empty`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			f := &fakeMaster{pipelines: testPipelines()}
			addr := startFake(t, f)

			args := append([]string{"pipeline", "update", "build", "--master", addr},
				tt.args...)
			r := ci(t, nil, args...)

			if r.code != exitUsage || !strings.HasPrefix(r.stderr, "ci: "+tt.want) ||
				!strings.HasSuffix(r.stderr, "(usage: ci pipeline update NAME [flags])\n") {
				t.Errorf("exit %d, stderr %q, want %q", r.code, r.stderr, tt.want)
			}
			if f.request("UpdatePipeline") != nil {
				t.Error("the master was called")
			}
		})
	}
}

func TestPipelineUpdatePassesMastersRefusalThrough(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{})

	r := ci(t, nil, "pipeline", "update", "nope", "--poll", "1m", "--master", addr)

	if r.code != exitFailure || r.stderr != "ci: pipeline \"nope\" does not exist\n" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPipelineUpdatePrintsPipelineAsShowDoes(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})
	// after holds deploy as the update leaves it.
	after := &fakeMaster{pipelines: testPipelines()}
	after.pipelines[1].Triggers = &kilnpb.Triggers{PollMs: 300000}
	afterAddr := startFake(t, after)

	updated := ciOK(t, nil, "pipeline", "update", "deploy", "--poll", "5m", "--master", addr)
	shown := ciOK(t, nil, "pipeline", "show", "deploy", "--master", afterAddr)

	if updated.stdout != shown.stdout {
		t.Errorf("update printed:\n%s\nshow prints:\n%s", updated.stdout, shown.stdout)
	}
	if !strings.Contains(updated.stdout, "  poll:           every 5m; not polled yet\n") {
		t.Errorf("output lacks the poll:\n%s", updated.stdout)
	}

	r := ciOK(t, nil, "pipeline", "update", "deploy", "--schedule", "@daily",
		"--master", afterAddr, "-o", "json")
	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	triggers, _ := got["triggers"].(map[string]any)
	wantValues(t, triggers, map[string]any{"poll_ms": 300000.0, "webhook": false})
	if s, _ := triggers["schedules"].([]any); len(s) != 1 || s[0] != "@daily" {
		t.Errorf("schedules: %v", triggers["schedules"])
	}
}

func TestPipelineShowPrintsTriggersStateAndEvents(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "show", "build", "--master", addr)

	facts, events, ok := strings.Cut(r.stdout, "\n\n")
	if !ok {
		t.Fatalf("want the facts, a blank line, then the events:\n%s", r.stdout)
	}
	for _, want := range []string{
		"last run:         #12 failed 2m ago by alice\n" +
			"parameters:       2\n" +
			"  race:           bool, default \"false\"; test with -race\n" +
			"  channel:        one of beta, stable, default \"beta\"\n" +
			"triggers:         webhook,poll 1m,cron,after lint\n" +
			"  webhook:        on: POST /hooks/build on the master's HTTP port\n" +
			"  poll:           every 1m; last 30s ago, saw " + testCommit[:12] + "\n" +
			"  poll error:     git ls-remote: exit status 128\n" +
			"  schedules:      0 3 * * *; @daily (Europe/Paris)\n" +
			"  next schedule:  ",
		" (in 3h)\n  depends on:     lint\n",
	} {
		if !strings.Contains(facts+"\n", want) {
			t.Errorf("output lacks %q:\n%s", want, facts)
		}
	}

	lines := strings.Split(strings.TrimSpace(events), "\n")
	if len(lines) != 4 || lines[0] != "recent triggers:" {
		t.Fatalf("want a title, a header and 2 events:\n%s", events)
	}
	assertFields(t, lines[1], "WHEN", "KIND", "OUTCOME", "RUN", "MESSAGE")
	assertFields(t, lines[2], "2m", "ago", "webhook", "started", "#12",
		"push", "to", "main", "by", "alice")
	assertFields(t, lines[3], "1h", "ago", "poll", "failed", "-",
		"poll", "failed:", "git", "ls-remote:", "exit", "status", "128")
	assertAligned(t, lines[1:], "MESSAGE")
}

func TestPipelineShowOfPipelineWithoutTriggers(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "show", "deploy", "--master", addr)

	want := "" +
		"triggers:         -\n" +
		"  webhook:        off\n" +
		"  poll:           off\n" +
		"  schedules:      -\n" +
		"  depends on:     -\n" +
		"\n" +
		"recent triggers: none\n"
	if !strings.HasSuffix(r.stdout, want) {
		t.Errorf("output does not end with:\n%s\ngot:\n%s", want, r.stdout)
	}
}

func TestPipelineShowListsTenEventsAtMost(t *testing.T) {
	t.Parallel()
	p := &kilnpb.Pipeline{Name: "busy"}
	for i := range 12 {
		p.Events = append(p.Events, &kilnpb.TriggerEvent{
			At:      msBefore(time.Duration(i+1) * time.Minute),
			Trigger: &kilnpb.Trigger{Kind: "schedule", Detail: "slot " + fmt.Sprint(i)},
			Outcome: "queued",
		})
	}
	addr := startFake(t, &fakeMaster{pipelines: []*kilnpb.Pipeline{p}})

	r := ciOK(t, nil, "pipeline", "show", "busy", "--master", addr)

	_, events, _ := strings.Cut(r.stdout, "recent triggers:\n")
	lines := strings.Split(strings.TrimSpace(events), "\n")
	if len(lines) != 11 {
		t.Fatalf("want a header and 10 events:\n%s", events)
	}
	// An event without a message shows its trigger's detail.
	assertFields(t, lines[1], "1m", "ago", "schedule", "queued", "-", "slot", "0")
	assertFields(t, lines[10], "10m", "ago", "schedule", "queued", "-", "slot", "9")
}

func TestPipelineShowJSONHasTriggerKeys(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "show", "build", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	triggers, _ := got["triggers"].(map[string]any)
	wantValues(t, triggers, map[string]any{
		"webhook": true, "poll_ms": 60000.0, "timezone": "Europe/Paris",
	})
	wantStrings(t, triggers["schedules"], "0 3 * * *", "@daily")
	wantStrings(t, triggers["depends_on"], "lint")
	state, _ := got["trigger_state"].(map[string]any)
	wantValues(t, state, map[string]any{
		"poll_commit": testCommit, "polled_at": "2030-05-06T07:07:39.000Z",
		"poll_error":   "git ls-remote: exit status 128",
		"scheduled_at": "2030-05-05T07:08:09.000Z", "next_schedule": "2030-05-06T10:08:09.000Z",
	})
	events, _ := got["events"].([]any)
	if len(events) != 2 {
		t.Fatalf("events: %v", got["events"])
	}
	first := events[0].(map[string]any)
	wantValues(t, first, map[string]any{
		"at": "2030-05-06T07:06:09.000Z", "outcome": "started",
		"message": "push to main by alice", "run_id": 12.0, "version": 3.0,
	})
	trigger, _ := first["trigger"].(map[string]any)
	wantValues(t, trigger, map[string]any{
		"kind": "webhook", "by": "alice", "detail": "github push to refs/heads/main",
		"delivery": "d-1", "upstream_pipeline": "", "upstream_run": 0.0,
		"ref": "refs/heads/main", "commit": testCommit,
	})
}

// TestPipelineJSONOfNoTriggersKeepsEveryKey checks that a pipeline
// without triggers has the same keys, with [] for lists and null for times.
func TestPipelineJSONOfNoTriggersKeepsEveryKey(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "list", "--master", addr, "-o", "json")

	var got []map[string]any
	decodeJSON(t, r.stdout, &got)
	deploy := got[1]
	triggers, _ := deploy["triggers"].(map[string]any)
	wantValues(t, triggers, map[string]any{"webhook": false, "poll_ms": 0.0, "timezone": ""})
	wantStrings(t, triggers["schedules"])
	wantStrings(t, triggers["depends_on"])
	state, _ := deploy["trigger_state"].(map[string]any)
	wantValues(t, state, map[string]any{
		"poll_commit": "", "polled_at": nil, "poll_error": "", "scheduled_at": nil,
		"next_schedule": nil,
	})
	if events, ok := deploy["events"].([]any); !ok || len(events) != 0 {
		t.Errorf("events: %#v", deploy["events"])
	}
}

// wantStrings checks a decoded JSON array of strings; none wants [].
func wantStrings(t *testing.T, got any, want ...string) {
	t.Helper()
	list, ok := got.([]any)
	if !ok {
		t.Errorf("want an array %q, got %#v", want, got)
		return
	}
	strs := make([]string, 0, len(list))
	for _, v := range list {
		s, _ := v.(string)
		strs = append(strs, s)
	}
	if !slices.Equal(strs, want) {
		t.Errorf("got %q, want %q", strs, want)
	}
}

func TestTriggerSummary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tr   *kilnpb.Triggers
		want string
	}{
		{tr: nil, want: ""},
		{tr: &kilnpb.Triggers{Timezone: "UTC"}, want: ""},
		{tr: &kilnpb.Triggers{Webhook: true}, want: "webhook"},
		{tr: &kilnpb.Triggers{PollMs: 3600000}, want: "poll 1h"},
		{tr: &kilnpb.Triggers{PollMs: 5400000}, want: "poll 1h30m"},
		{tr: &kilnpb.Triggers{PollMs: 90000}, want: "poll 1m30s"},
		{tr: &kilnpb.Triggers{PollMs: 1500}, want: "poll 1.5s"},
		{tr: &kilnpb.Triggers{Schedules: []string{"@daily", "@hourly"}}, want: "cron"},
		{tr: &kilnpb.Triggers{DependsOn: []string{"build", "lint"}}, want: "after build/lint"},
		{tr: &kilnpb.Triggers{Webhook: true, PollMs: 60000, Schedules: []string{"@daily"},
			DependsOn: []string{"build"}}, want: "webhook,poll 1m,cron,after build"},
	}
	for _, tt := range tests {
		if got := triggerSummary(tt.tr); got != tt.want {
			t.Errorf("triggerSummary(%v) = %q, want %q", tt.tr, got, tt.want)
		}
	}
}

func TestWhenNextSaysHowLongUntil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want string
	}{
		{in: 3*time.Hour + 59*time.Minute, want: " (in 3h)"},
		{in: 90 * time.Second, want: " (in 1m)"},
		{in: 72 * time.Hour, want: " (in 3d)"},
		{in: -time.Minute, want: " (due now)"},
	}
	for _, tt := range tests {
		got := whenNext(testNow.Add(tt.in).UnixMilli(), testNow)
		if !strings.HasSuffix(got, tt.want) {
			t.Errorf("whenNext(now%+v) = %q, want ...%q", tt.in, got, tt.want)
		}
	}
	if got := whenNext(0, testNow); got != "" {
		t.Errorf("whenNext(0) = %q", got)
	}
}
