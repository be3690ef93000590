package main

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// testRun is run 12 of build in the state given, with a job vet that
// succeeded, a job test in jobStatus and a job gpu that waits for a worker.
func testRun(status, testStatus string) *kilnpb.Run {
	r := &kilnpb.Run{
		Id:        12,
		Pipeline:  "build",
		Version:   4,
		Commit:    testCommit,
		Digest:    testDigest,
		Status:    status,
		Params:    map[string]string{"target": "linux"},
		Created:   msBefore(time.Minute),
		StartedBy: "alice",
		Jobs: []*kilnpb.Job{
			{Name: "vet", Status: "succeeded", Worker: "w1", Attempts: 1,
				Started: msBefore(50 * time.Second), Finished: msBefore(48800 * time.Millisecond)},
			{Name: "test", Status: testStatus, DependsOn: []string{"vet"}},
			{Name: "gpu", Status: "queued", Waiting: "no worker with label gpu"},
		},
	}
	if status != "queued" {
		r.Started = msBefore(50 * time.Second)
	}
	test := r.Jobs[1]
	switch testStatus {
	case "running":
		test.Worker, test.Attempts, test.Started = "w2", 1, msBefore(48*time.Second)
	case "succeeded", "failed":
		test.Worker, test.Attempts = "w2", 2
		test.Started, test.Finished = msBefore(48*time.Second), msBefore(47660*time.Millisecond)
	}
	if testStatus == "failed" {
		test.Error = "exit status 1"
	}
	if isFinal(status) {
		r.Finished = msBefore(40 * time.Second)
		r.Jobs[2].Status, r.Jobs[2].Waiting = "skipped", ""
	}
	if status == "failed" {
		r.Reason = "job test failed"
	}
	return r
}

func TestRunStartsWithParamsAndToken(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x", run: testRun("queued", "queued")}
	addr := startFake(t, f)

	r := ciOK(t, nil, "run", "build", "--param", "target=linux", "-p", "flags=a=1,b",
		"--master", addr, "--token", "x")

	if r.stdout != "run 12 of build (version 4) queued\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	req := f.request("StartRun").(*kilnpb.StartRunRequest)
	want := map[string]string{"target": "linux", "flags": "a=1,b"}
	if req.Name != "build" || !maps.Equal(req.Params, want) {
		t.Errorf("request: %v", req)
	}
	if got := f.authSeen("StartRun"); got != "Bearer x" {
		t.Errorf("authorization: %q", got)
	}
}

func TestRunJSONHasRunAndJobKeys(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{run: testRun("running", "running")})

	r := ciOK(t, nil, "run", "build", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{
		"id": 12.0, "pipeline": "build", "version": 4.0, "status": "running",
		"commit": testCommit, "digest": testDigest, "started_by": "alice", "finished": nil,
		"started": "2030-05-06T07:07:19.000Z",
	})
	jobs, _ := got["jobs"].([]any)
	if len(jobs) != 3 {
		t.Fatalf("jobs: %v", got["jobs"])
	}
	wantValues(t, jobs[1].(map[string]any), map[string]any{
		"name": "test", "status": "running", "worker": "w2", "attempts": 1.0, "error": "",
	})
	wantValues(t, jobs[2].(map[string]any), map[string]any{
		"name": "gpu", "status": "queued", "worker": "", "attempts": 0.0,
		"waiting": "no worker with label gpu", "started": nil,
	})
}

func TestRunWaitSucceededExitsZero(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{
		run: testRun("queued", "queued"),
		watch: []*kilnpb.Run{
			testRun("queued", "queued"),
			testRun("running", "running"),
			testRun("succeeded", "succeeded"),
		},
	}
	addr := startFake(t, f)

	r := ciOK(t, nil, "run", "build", "--wait", "--master", addr)

	want := "" +
		"run 12 of build (version 4) queued\n" +
		"  vet   succeeded in 1.2s on w1\n" +
		"  test  queued\n" +
		"  gpu   queued: no worker with label gpu\n" +
		"run 12 running\n" +
		"  test  running on w2\n" +
		"  test  succeeded in 340ms on w2 (attempt 2)\n" +
		"  gpu   skipped\n" +
		"run 12 succeeded in 10.0s\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestRunWaitFailedExitsOneWithReason(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{
		run:   testRun("running", "running"),
		watch: []*kilnpb.Run{testRun("failed", "failed")},
	}
	addr := startFake(t, f)

	r := ci(t, nil, "run", "build", "--wait", "--master", addr)

	if r.code != exitFailure || r.stderr != "ci: run 12 failed: job test failed\n" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "  test  failed in 340ms on w2 (attempt 2): exit status 1\n") {
		t.Errorf("stdout lacks the failed job:\n%s", r.stdout)
	}
}

func TestRunWaitJSONPrintsFinalRunAndFails(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{
		run:   testRun("queued", "queued"),
		watch: []*kilnpb.Run{testRun("running", "running"), testRun("cancelled", "cancelled")},
	}
	addr := startFake(t, f)

	r := ci(t, nil, "run", "build", "-w", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{"status": "cancelled"})
	if r.code != exitFailure || r.stderr != "ci: run 12 cancelled\n" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRunWaitStreamEndingEarlyFails(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{run: testRun("queued", "queued"), watch: []*kilnpb.Run{
		testRun("running", "running"),
	}}
	addr := startFake(t, f)

	r := ci(t, nil, "run", "build", "--wait", "--master", addr)

	want := "ci: run 12: the master stopped sending updates while the run was running\n"
	if r.code != exitFailure || r.stderr != want {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRunsListTableAndJSON(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{runs: []*kilnpb.Run{
		testRun("failed", "failed"), testRun("queued", "queued"),
	}}
	f.runs[1].Id, f.runs[1].StartedBy = 13, ""
	addr := startFake(t, f)

	r := ciOK(t, nil, "runs", "list", "build", "--limit", "5", "--master", addr)

	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", r.stdout)
	}
	assertFields(t, lines[0], "ID", "PIPELINE", "VERSION", "STATUS", "CREATED", "DURATION", "BY")
	assertFields(t, lines[1], "12", "build", "4", "failed", "1m", "ago", "10.0s", "alice")
	assertFields(t, lines[2], "13", "build", "4", "queued", "1m", "ago", "-", "-")
	req := f.request("ListRuns").(*kilnpb.ListRunsRequest)
	if req.Pipeline != "build" || req.Limit != 5 {
		t.Errorf("request: %v", req)
	}

	r = ciOK(t, nil, "runs", "list", "--master", addr, "-o", "json")
	var got []map[string]any
	decodeJSON(t, r.stdout, &got)
	if len(got) != 2 {
		t.Fatalf("want 2 runs: %s", r.stdout)
	}
	wantValues(t, got[0], map[string]any{"id": 12.0, "status": "failed",
		"reason": "job test failed"})
	params, _ := got[0]["params"].(map[string]any)
	if params["target"] != "linux" {
		t.Errorf("params: %v", got[0]["params"])
	}
}

func TestRunsShowPrintsEachJob(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{run: testRun("running", "failed")}
	addr := startFake(t, f)

	r := ciOK(t, nil, "runs", "show", "#12", "--master", addr)

	head, jobs, ok := strings.Cut(r.stdout, "\n\n")
	if !ok {
		t.Fatalf("want the run, a blank line, then its jobs:\n%s", r.stdout)
	}
	for _, want := range []string{
		"status:      running\n", "params:      target=linux\n", "started by:  alice\n",
		"duration:    50.0s\n",
	} {
		if !strings.Contains(head+"\n", want) {
			t.Errorf("run lacks %q:\n%s", want, head)
		}
	}
	lines := strings.Split(strings.TrimSpace(jobs), "\n")
	assertFields(t, lines[0], "JOB", "STATUS", "DURATION", "WORKER", "ATTEMPTS", "DETAIL")
	assertFields(t, lines[1], "vet", "succeeded", "1.2s", "w1", "1", "-")
	assertFields(t, lines[2], "test", "failed", "340ms", "w2", "2", "exit", "status", "1")
	assertFields(t, lines[3], "gpu", "queued", "-", "-", "0",
		"no", "worker", "with", "label", "gpu")
	assertAligned(t, lines, "WORKER")
}

func TestRunsShowJSON(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{run: testRun("failed", "failed")})

	r := ciOK(t, nil, "runs", "show", "12", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{"id": 12.0, "pipeline": "build", "status": "failed"})
	jobs, _ := got["jobs"].([]any)
	test := jobs[1].(map[string]any)
	wantValues(t, test, map[string]any{"name": "test", "status": "failed", "worker": "w2",
		"attempts": 2.0, "error": "exit status 1"})
	if deps, _ := test["depends_on"].([]any); len(deps) != 1 || deps[0] != "vet" {
		t.Errorf("depends_on: %v", test["depends_on"])
	}
}

func TestRunsCancelSendsToken(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x", run: testRun("cancelled", "cancelled")}
	addr := startFake(t, f)

	r := ciOK(t, nil, "runs", "cancel", "12", "--master", addr, "--token", "x")

	if r.stdout != "run 12 cancelled\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if got := f.authSeen("CancelRun"); got != "Bearer x" {
		t.Errorf("authorization: %q", got)
	}
	if req := f.request("CancelRun").(*kilnpb.CancelRunRequest); req.Id != 12 {
		t.Errorf("request: %v", req)
	}
}

func TestRunsShowOfBadIDIsUsageError(t *testing.T) {
	t.Parallel()

	r := ci(t, nil, "runs", "show", "twelve")

	want := `ci: run ID "twelve" is not a positive number (usage: ci runs show ID [flags])` + "\n"
	if r.code != exitUsage || r.stderr != want {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func testLogs() []*kilnpb.LogLine {
	return []*kilnpb.LogLine{
		{Job: "vet", Data: []byte("vetting\n")},
		{Job: "vet", Data: []byte("ok\n")},
		{Job: "test", Data: []byte("--- FAIL")},
		{Job: "lint", Data: []byte{0xff, 'x', '\n'}},
	}
}

func TestLogsOfRunPutHeaderAtEachJobChange(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{logs: testLogs()}
	addr := startFake(t, f)

	r := ciOK(t, nil, "logs", "12", "--follow", "--master", addr)

	want := "==> vet <==\nvetting\nok\n==> test <==\n--- FAIL\n==> lint <==\n\xffx\n"
	if r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	req := f.request("Logs").(*kilnpb.LogsRequest)
	if req.RunId != 12 || req.Job != "" || !req.Follow {
		t.Errorf("request: %v", req)
	}
}

func TestLogsOfOneJobAreRawBytes(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{logs: testLogs()})

	r := ciOK(t, nil, "logs", "12", "vet", "--master", addr)

	if r.stdout != "vetting\nok\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestLogsJSONIsOneObjectPerChunk(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{logs: testLogs()[:2]})

	r := ciOK(t, nil, "logs", "12", "--master", addr, "-o", "json")

	want := `{"job":"vet","data":"vetting\n"}` + "\n" + `{"job":"vet","data":"ok\n"}` + "\n"
	if r.stdout != want {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestParseParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flags []string
		want  map[string]string
		err   string
	}{
		{flags: nil, want: map[string]string{}},
		{flags: []string{"a=1", "b="}, want: map[string]string{"a": "1", "b": ""}},
		{flags: []string{"url=http://x/?a=b,c"}, want: map[string]string{"url": "http://x/?a=b,c"}},
		{flags: []string{"a"}, err: `--param "a": want NAME=VALUE`},
		{flags: []string{"=1"}, err: `--param "=1": missing name before "="`},
		{flags: []string{"a b=1"}, err: `--param "a b=1": the name holds a space`},
		{flags: []string{"a=1", "a=2"}, err: `--param "a=2": "a" is given twice`},
	}
	for _, tt := range tests {
		got, err := parseParams(tt.flags)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != tt.err || (err == nil && !maps.Equal(got, tt.want)) {
			t.Errorf("parseParams(%q) = %v, %q; want %v, %q",
				tt.flags, got, gotErr, tt.want, tt.err)
		}
	}
}

// FuzzParseParams checks that every accepted flag comes back as its name
// and the whole rest after the first "=".
func FuzzParseParams(f *testing.F) {
	f.Add("a=1", "b=x=y")
	f.Add("a=1", "a=2")
	f.Add("=", "k")
	f.Fuzz(func(t *testing.T, p1, p2 string) {
		flags := []string{p1, p2}
		params, err := parseParams(flags)
		if err != nil {
			return
		}
		if len(params) != len(flags) {
			t.Fatalf("%q: %d params from %d flags", flags, len(params), len(flags))
		}
		for _, fl := range flags {
			name, value, ok := strings.Cut(fl, "=")
			if !ok || name == "" || params[name] != value {
				t.Fatalf("%q: accepted as %v", flags, params)
			}
		}
	})
}

func TestRunsShowPrintsTrigger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		trigger   *kilnpb.Trigger
		startedBy string
		want      string
	}{{
		trigger: &kilnpb.Trigger{Kind: "webhook", By: "alice",
			Detail: "github push to refs/heads/main", Delivery: "d-1"},
		startedBy: "webhook alice",
		want: "started by:  webhook alice\n" +
			"trigger:     webhook: github push to refs/heads/main (delivery d-1)\n" +
			"created:",
	}, {
		trigger: &kilnpb.Trigger{Kind: "upstream", Detail: "build #12 succeeded",
			UpstreamPipeline: "build", UpstreamRun: 12},
		startedBy: "upstream build#12",
		want: "started by:  upstream build#12\n" +
			"trigger:     upstream: build #12 succeeded\n" +
			"upstream:    #12 of build\n" +
			"created:",
	}, {
		trigger: &kilnpb.Trigger{Kind: "schedule", By: "0 3 * * *"},
		want:    "started by:  schedule\ntrigger:     schedule\ncreated:",
	}}
	for _, tt := range tests {
		t.Run(tt.trigger.Kind, func(t *testing.T) {
			t.Parallel()
			run := testRun("running", "running")
			run.Trigger, run.StartedBy = tt.trigger, tt.startedBy
			addr := startFake(t, &fakeMaster{run: run})

			r := ciOK(t, nil, "runs", "show", "12", "--master", addr)

			if !strings.Contains(r.stdout, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, r.stdout)
			}
		})
	}
}

func TestRunsListShowsWhatStartedEachRun(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{runs: []*kilnpb.Run{
		testRun("running", "running"), testRun("queued", "queued"),
	}}
	f.runs[0].StartedBy = "upstream build#11"
	f.runs[0].Trigger = &kilnpb.Trigger{Kind: "upstream", UpstreamPipeline: "build",
		UpstreamRun: 11}
	// A master that sent no started_by still has the trigger's kind shown.
	f.runs[1].Id, f.runs[1].StartedBy = 13, ""
	f.runs[1].Trigger = &kilnpb.Trigger{Kind: "poll", Commit: testCommit}
	addr := startFake(t, f)

	r := ciOK(t, nil, "runs", "list", "--master", addr)

	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assertFields(t, lines[1], "12", "build", "4", "running", "1m", "ago", "50.0s",
		"upstream", "build#11")
	assertFields(t, lines[2], "13", "build", "4", "queued", "1m", "ago", "-", "poll")
}

func TestRunJSONHasTrigger(t *testing.T) {
	t.Parallel()
	run := testRun("succeeded", "succeeded")
	run.StartedBy = "upstream build#11"
	run.Trigger = &kilnpb.Trigger{Kind: "upstream", Detail: "build #11 succeeded",
		UpstreamPipeline: "build", UpstreamRun: 11, Ref: "main", Commit: testCommit}
	f := &fakeMaster{run: run, runs: []*kilnpb.Run{testRun("queued", "queued")}}
	addr := startFake(t, f)

	r := ciOK(t, nil, "runs", "show", "12", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{"started_by": "upstream build#11"})
	trigger, _ := got["trigger"].(map[string]any)
	wantValues(t, trigger, map[string]any{
		"kind": "upstream", "by": "", "detail": "build #11 succeeded", "delivery": "",
		"upstream_pipeline": "build", "upstream_run": 11.0, "ref": "main", "commit": testCommit,
	})

	// A run without a trigger keeps the keys, empty.
	r = ciOK(t, nil, "runs", "list", "--master", addr, "-o", "json")
	var list []map[string]any
	decodeJSON(t, r.stdout, &list)
	trigger, _ = list[0]["trigger"].(map[string]any)
	wantValues(t, trigger, map[string]any{"kind": "", "upstream_run": 0.0, "commit": ""})
}
