package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func testWorkers() []*kilnpb.Worker {
	return []*kilnpb.Worker{{
		Id: 1, Name: "w1", Hostname: "box-1", State: "ready",
		LastSeen: msBefore(2 * time.Second), Joined: msBefore(time.Hour),
		Goos: "linux", Goarch: "amd64",
		Labels: map[string]string{"os": "linux", "gpu": "true"},
		Slots:  4, Busy: 1,
	}, {
		Id: 2, Name: "w2", Hostname: "box-2", State: "unhealthy", Reason: "low disk",
		LastSeen: msBefore(3 * time.Minute), Slots: 2,
	}}
}

func TestWorkersListTable(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{workers: testWorkers()})

	r := ciOK(t, nil, "workers", "list", "--master", addr)

	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", r.stdout)
	}
	assertFields(t, lines[0], "ID", "NAME", "HOSTNAME", "STATE", "REASON", "LAST", "SEEN",
		"SLOTS", "PLATFORM", "LABELS")
	assertFields(t, lines[1], "1", "w1", "box-1", "ready", "-", "2s", "ago", "1/4",
		"linux/amd64", "gpu=true,os=linux")
	assertFields(t, lines[2], "2", "w2", "box-2", "unhealthy", "low", "disk", "3m", "ago", "0/2",
		"-", "-")
	assertAligned(t, lines, "SLOTS")
}

func TestWorkersListJSON(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{workers: testWorkers()})

	r := ciOK(t, nil, "workers", "list", "--master", addr, "-o", "json")

	var got []map[string]any
	decodeJSON(t, r.stdout, &got)
	if len(got) != 2 {
		t.Fatalf("want 2 workers: %s", r.stdout)
	}
	wantValues(t, got[0], map[string]any{
		"id": 1.0, "name": "w1", "hostname": "box-1", "state": "ready",
		"last_seen": "2030-05-06T07:08:07.000Z", "slots": 4.0, "busy": 1.0,
	})
	wantValues(t, got[1], map[string]any{"state": "unhealthy", "reason": "low disk",
		"joined": nil})
	if labels, _ := got[1]["labels"].(map[string]any); labels == nil {
		t.Errorf("labels of a worker without labels: %v, want {}", got[1]["labels"])
	}
}

func TestWorkersSuspendAndResumeSendToken(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x"}
	addr := startFake(t, f)

	r := ciOK(t, nil, "workers", "suspend", "w1", "--master", addr, "--token", "x")
	if r.stdout != "worker w1 is suspended\n" {
		t.Errorf("suspend: %q", r.stdout)
	}
	r = ciOK(t, nil, "workers", "resume", "w1", "--master", addr, "--token", "x", "-o", "json")
	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{"name": "w1", "state": "ready"})

	for _, method := range []string{"SuspendWorker", "ResumeWorker"} {
		if got := f.authSeen(method); got != "Bearer x" {
			t.Errorf("%s authorization: %q", method, got)
		}
		if req := f.request(method).(*kilnpb.WorkerRequest); req.Name != "w1" {
			t.Errorf("%s request: %v", method, req)
		}
	}
}
