package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
)

func testPipelines() []*kilnpb.Pipeline {
	return []*kilnpb.Pipeline{{
		Id:             1,
		Name:           "build",
		Description:    "builds the app",
		Source:         "file:///srv/app.git",
		Dir:            "ci",
		Ref:            "^1.2",
		CurrentVersion: 3,
		Params: []*pluginpb.Param{
			{Name: "race", Type: "bool", Default: "false", Description: "test with -race"},
			{Name: "channel", Type: "choice", Default: "beta", Choices: []string{"beta", "stable"}},
		},
		Created:       msBefore(72 * time.Hour),
		Modified:      msBefore(2 * time.Hour),
		LastRunId:     12,
		LastRunStatus: "failed",
		LastRunAt:     msBefore(2 * time.Minute),
		LastRunBy:     "alice",
		Triggers: &kilnpb.Triggers{
			Webhook:   true,
			PollMs:    60000,
			Schedules: []string{"0 3 * * *", "@daily"},
			Timezone:  "Europe/Paris",
			DependsOn: []string{"lint"},
		},
		TriggerState: &kilnpb.TriggerState{
			PollCommit:   testCommit,
			PolledAt:     msBefore(30 * time.Second),
			PollError:    "git ls-remote: exit status 128",
			ScheduledAt:  msBefore(24 * time.Hour),
			NextSchedule: msBefore(-3 * time.Hour),
		},
		Events: testEvents(),
	}, {
		Id:     2,
		Name:   "deploy",
		Source: "file:///srv/deploy.git",
		Ref:    "main",
	}}
}

// testEvents are a webhook delivery that started run 12 and a poll that
// failed before it.
func testEvents() []*kilnpb.TriggerEvent {
	return []*kilnpb.TriggerEvent{{
		At: msBefore(2 * time.Minute),
		Trigger: &kilnpb.Trigger{Kind: "webhook", By: "alice",
			Detail: "github push to refs/heads/main", Delivery: "d-1",
			Ref: "refs/heads/main", Commit: testCommit},
		Outcome: "started",
		Message: "push to main by alice",
		RunId:   12,
		Version: 3,
	}, {
		At:      msBefore(time.Hour),
		Trigger: &kilnpb.Trigger{Kind: "poll"},
		Outcome: "failed",
		Message: "poll failed: git ls-remote: exit status 128",
	}}
}

// decodeJSON parses what a command printed, failing the test on a
// malformed value.
func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

func TestPipelineListPrintsAlignedTable(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "list", "--master", addr)

	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, got:\n%s", r.stdout)
	}
	assertFields(t, lines[0], "NAME", "REF", "VERSION", "LAST", "RUN", "TRIGGERS", "SOURCE",
		"DIR")
	assertFields(t, lines[1], "build", "^1.2", "3", "#12", "failed", "2m", "ago",
		"webhook,poll", "1m,cron,after", "lint", "file:///srv/app.git", "ci")
	assertFields(t, lines[2], "deploy", "main", "-", "-", "-", "file:///srv/deploy.git", "-")
	assertAligned(t, lines, "TRIGGERS")
	assertAligned(t, lines, "SOURCE")
}

func TestPipelineListJSONHasStableKeys(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "list", "--master", addr, "-o", "json")

	var got []map[string]any
	decodeJSON(t, r.stdout, &got)
	if len(got) != 2 {
		t.Fatalf("want 2 pipelines, got %d", len(got))
	}
	build := got[0]
	wantValues(t, build, map[string]any{
		"id": 1.0, "name": "build", "description": "builds the app",
		"source": "file:///srv/app.git", "dir": "ci", "ref": "^1.2", "current_version": 3.0,
		"created":  "2030-05-03T07:08:09.000Z",
		"modified": "2030-05-06T05:08:09.000Z",
	})
	lastRun, _ := build["last_run"].(map[string]any)
	wantValues(t, lastRun, map[string]any{
		"id": 12.0, "status": "failed", "by": "alice", "at": "2030-05-06T07:06:09.000Z",
	})
	// A pipeline never run has its keys all the same, with null.
	wantValues(t, got[1], map[string]any{"last_run": nil, "created": nil, "dir": ""})
}

func TestPipelineListOfNoPipelinesIsEmptyArray(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{})

	r := ciOK(t, nil, "pipeline", "list", "--master", addr, "-o", "json")

	if strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("want [], got %q", r.stdout)
	}
}

func TestPipelineShowPrintsEveryFact(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "show", "build", "--master", addr)

	for _, want := range []string{
		"id:               1\n",
		"name:             build\n",
		"description:      builds the app\n",
		"source:           file:///srv/app.git\n",
		"dir:              ci\n",
		"ref:              ^1.2\n",
		"current version:  3\n",
		" (3d ago)\n",
		" (2h ago)\n",
		"last run:         #12 failed 2m ago by alice\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestPipelineShowJSON(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{pipelines: testPipelines()})

	r := ciOK(t, nil, "pipeline", "show", "deploy", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{"id": 2.0, "name": "deploy", "ref": "main"})
}

func TestPipelineShowOfUnknownPipelinePrintsMastersMessage(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{})

	r := ci(t, nil, "pipeline", "show", "nope", "--master", addr)

	if r.code != exitFailure || r.stderr != "ci: pipeline \"nope\" does not exist\n" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPipelineCreateStreamsProgressAndPrintsVersion(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{
		token:    "x",
		progress: []string{"fetching file:///srv/app.git", "compiling ci\n"},
		built:    readyVersion(),
	}
	addr := startFake(t, f)

	r := ciOK(t, nil, "pipeline", "create", "build", "--source", "file:///srv/app.git",
		"--ref", "main", "--dir", "ci", "--master", addr, "--token", "x")

	if r.stderr != "fetching file:///srv/app.git\ncompiling ci\n" {
		t.Errorf("progress on stderr: %q", r.stderr)
	}
	for _, want := range []string{
		"version:   4\n", "commit:    " + testCommit + "\n", "digest:    " + testDigest + "\n",
		"status:    ready\n", "build:     1.2s\n", "jobs:      vet, test\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	req := f.request("CreatePipeline").(*kilnpb.CreatePipelineRequest)
	if req.Name != "build" || req.Source != "file:///srv/app.git" || req.Ref != "main" ||
		req.Dir != "ci" {
		t.Errorf("request: %v", req)
	}
	if got := f.authSeen("CreatePipeline"); got != "Bearer x" {
		t.Errorf("authorization: %q", got)
	}
}

func TestPipelineCreateWithoutSourceIsUsageError(t *testing.T) {
	t.Parallel()

	r := ci(t, nil, "pipeline", "create", "build")

	if r.code != exitUsage || !strings.Contains(r.stderr, "ci: --source is required (usage:") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPipelineDeleteSendsToken(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x"}
	addr := startFake(t, f)

	r := ciOK(t, nil, "pipeline", "delete", "build", "--master", addr, "--token", "x")

	if r.stdout != "deleted pipeline \"build\"\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if got := f.authSeen("DeletePipeline"); got != "Bearer x" {
		t.Errorf("authorization: %q", got)
	}
	req := f.request("DeletePipeline").(*kilnpb.DeletePipelineRequest)
	if req.Name != "build" {
		t.Errorf("request: %v", req)
	}
}

// assertFields checks the whitespace-separated fields of a table line.
func assertFields(t *testing.T, line string, want ...string) {
	t.Helper()
	got := strings.Fields(line)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("line %q: fields %q, want %q", line, got, want)
	}
}

// assertAligned checks that the column whose header is col starts at the
// same place on every line.
func assertAligned(t *testing.T, lines []string, col string) {
	t.Helper()
	at := strings.Index(lines[0], col)
	for _, line := range lines[1:] {
		if at <= 0 || len(line) <= at || line[at-1] != ' ' || line[at] == ' ' {
			t.Errorf("column %s is not aligned at %d:\n%s", col, at, strings.Join(lines, "\n"))
			return
		}
	}
}

// wantValues checks some keys of a decoded JSON object.
func wantValues(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		gv, ok := got[k]
		if !ok {
			t.Errorf("key %q is missing from %v", k, got)
			continue
		}
		if gv != v {
			t.Errorf("%s = %#v, want %#v", k, gv, v)
		}
	}
}
