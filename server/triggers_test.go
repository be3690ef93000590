package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/internal/gitrepo"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/worker"
)

// master is a master started for a trigger test, with its admin client.
type testMaster struct {
	s     *Server
	api   kilnpb.MasterClient
	admin context.Context
	stop  func()
}

// serveTriggers starts a master on dir whose trigger loop looks every
// 20ms; now, when not nil, is its clock.
func serveTriggers(t *testing.T, dir string, now func() time.Time) *testMaster {
	t.Helper()
	s, err := New(Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		HeartbeatInterval: 500 * time.Millisecond, TriggerInterval: 20 * time.Millisecond,
		Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	m := &testMaster{s: s, api: kilnpb.NewMasterClient(conn),
		admin: metadata.AppendToOutgoingContext(context.Background(), "authorization",
			"Bearer "+s.AdminToken())}
	var once sync.Once
	m.stop = func() { once.Do(func() { conn.Close(); cancel(); <-done; s.Close() }) }
	t.Cleanup(m.stop)
	return m
}

func (m *testMaster) create(t *testing.T, req *kilnpb.CreatePipelineRequest) *kilnpb.Version {
	t.Helper()
	stream, err := m.api.CreatePipeline(m.admin, req)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("create %s: %v", req.Name, err)
		}
		if v := ev.GetVersion(); v != nil {
			return v
		}
	}
}

// runs returns a pipeline's runs, newest first.
func (m *testMaster) runs(t *testing.T, pipeline string) []*kilnpb.Run {
	t.Helper()
	resp, err := m.api.ListRuns(context.Background(), &kilnpb.ListRunsRequest{Pipeline: pipeline})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Runs
}

// waitRuns waits until the pipeline has n runs and returns them, newest
// first.
func (m *testMaster) waitRuns(t *testing.T, pipeline string, n int) []*kilnpb.Run {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		runs := m.runs(t, pipeline)
		if len(runs) >= n {
			if len(runs) > n {
				t.Fatalf("%s has %d runs, want %d: %v", pipeline, len(runs), n, runs)
			}
			return runs
		}
		if time.Now().After(deadline) {
			p, _ := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: pipeline})
			t.Fatalf("%s has %d runs after 90s, want %d; events: %v", pipeline, len(runs), n,
				p.GetEvents())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// commit makes a new commit in repo, touching one file, and returns it.
func commit(t *testing.T, repo, text string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(repo, "NOTES"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "NOTES"}, {"commit", "--quiet", "-m", text}} {
		if _, err := gitrepo.Git(repo, args...); err != nil {
			t.Fatal(err)
		}
	}
	sha, err := gitrepo.Git(repo, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// delivery is one webhook request as a forge sends it.
type delivery struct {
	fixture string            // file under testdata/webhooks
	headers map[string]string // besides the signature
	replace []string          // old, new pairs applied to the body
	form    bool              // send as payload=...
	secret  string            // signs the body; "" sends no signature
}

func (d delivery) body(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "webhooks", d.fixture))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(d.replace); i += 2 {
		if !strings.Contains(s, d.replace[i]) {
			t.Fatalf("%s has no %q to replace", d.fixture, d.replace[i])
		}
		s = strings.ReplaceAll(s, d.replace[i], d.replace[i+1])
	}
	if d.form {
		s = url.Values{"payload": {s}}.Encode()
	}
	return []byte(s)
}

func hmacHex(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// post sends the delivery to the pipeline's hook and returns the answer's
// code and body, failing when it takes a second or more.
func (m *testMaster) post(t *testing.T, pipeline string, d delivery) (int, string) {
	t.Helper()
	body := d.body(t)
	req, err := http.NewRequest("POST", "http://"+m.s.HTTPAddr()+"/hooks/"+pipeline,
		bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if d.form {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range d.headers {
		req.Header.Set(k, v)
	}
	if d.secret != "" {
		switch {
		case d.headers["X-Gitea-Event"] != "":
			req.Header.Set("X-Gitea-Signature", hmacHex(d.secret, body))
			req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHex(d.secret, body))
		case d.headers["X-Gitlab-Event"] != "":
			req.Header.Set("X-Gitlab-Token", d.secret)
		default:
			req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHex(d.secret, body))
		}
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if took := time.Since(start); took >= time.Second {
		t.Errorf("the answer took %v; forges give up after 10s and the issue asks for 1s", took)
	}
	return resp.StatusCode, strings.TrimSpace(string(answer))
}

func github(event, id string) map[string]string {
	return map[string]string{"X-GitHub-Event": event, "X-GitHub-Delivery": id}
}

func TestWebhookDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	const secret = "test secret of the hook"
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "app", Source: "file://" + repo,
		Ref: "main", WebhookSecret: secret})
	first := commit(t, repo, "first push")
	push := delivery{fixture: "github/push.branch.json", secret: secret,
		headers: github("push", "d-1"),
		replace: []string{"366701fde727cb7a9e7f21eb88264f59f6f9b89c", first}}

	// Refused deliveries change nothing and leave no event.
	wrong := push
	wrong.secret = "not the secret"
	unsigned := push
	unsigned.secret = ""
	for name, d := range map[string]delivery{"wrong secret": wrong, "unsigned": unsigned} {
		if code, body := m.post(t, "app", d); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, code, body)
		}
	}
	// A body changed after it was signed: sign the original, send another.
	{
		body := push.body(t)
		req, _ := http.NewRequest("POST", "http://"+m.s.HTTPAddr()+"/hooks/app",
			bytes.NewReader(bytes.Replace(body, []byte("main"), []byte("mane"), 1)))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHex(secret, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("tampered body: %d, want 401", resp.StatusCode)
		}
	}
	if p, _ := m.api.GetPipeline(context.Background(),
		&kilnpb.GetPipelineRequest{Name: "app"}); len(p.GetEvents()) != 0 {
		t.Errorf("refused deliveries left events: %v", p.GetEvents())
	}

	// A push to the followed branch: answered at once, built, run.
	code, body := m.post(t, "app", push)
	if code != http.StatusAccepted || !strings.Contains(body, first[:12]) {
		t.Fatalf("push: %d %q, want 202 naming the commit", code, body)
	}
	runs := m.waitRuns(t, "app", 1)
	r := runs[0]
	if r.Commit != first || r.Version != 2 || r.Trigger.GetKind() != "webhook" ||
		r.Trigger.GetDelivery() != "github:d-1" || r.Trigger.GetBy() != "6543" {
		t.Fatalf("run %d: commit %s version %d trigger %v", r.Id, r.Commit, r.Version, r.Trigger)
	}
	if r.StartedBy != "webhook 6543" {
		t.Errorf("started_by = %q", r.StartedBy)
	}

	// A redelivery of the same delivery starts nothing.
	if code, body := m.post(t, "app", push); code != http.StatusOK ||
		!strings.Contains(body, "redelivery") {
		t.Errorf("redelivery: %d %q", code, body)
	}

	// A signed body replayed under a new delivery ID is the same push.
	replay := push
	replay.headers = github("push", "d-replayed")
	if code, body := m.post(t, "app", replay); code != http.StatusOK ||
		!strings.Contains(body, "redelivery") {
		t.Errorf("replay under a new ID: %d %q", code, body)
	}

	// What starts nothing answers 2xx and says why.
	ignored := []struct {
		name string
		d    delivery
		want string
	}{
		{"ping", delivery{fixture: "github/ping.json", secret: secret,
			headers: github("ping", "d-2")}, "works"},
		{"tag create event", delivery{fixture: "github/create.tag.json", secret: secret,
			headers: github("create", "d-3")}, `"create" events start nothing`},
		{"another branch", delivery{fixture: "github/push.new-branch.json", secret: secret,
			headers: github("push", "d-4")}, "refs/heads/master"},
		{"deletion", delivery{fixture: "github/push.branch.json", secret: secret,
			headers: github("push", "d-5"), replace: []string{
				`"after": "366701fde727cb7a9e7f21eb88264f59f6f9b89c"`,
				`"after": "0000000000000000000000000000000000000000"`}}, "deleted"},
	}
	for _, tt := range ignored {
		code, body := m.post(t, "app", tt.d)
		if code/100 != 2 || code == http.StatusAccepted || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %q, want 2xx saying %q", tt.name, code, body, tt.want)
		}
	}

	// Gitea, GitLab and a form-encoded GitHub push each start one run.
	second, third, fourth := commit(t, repo, "second"), commit(t, repo, "third"),
		commit(t, repo, "fourth")
	forges := []delivery{
		{fixture: "gitea/push.multi-commit.json", secret: secret,
			headers: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Delivery": "g-1",
				"X-GitHub-Event": "push", "X-GitHub-Delivery": "g-1"},
			replace: []string{"29be01c073851cf0db0c6a466e396b725a670453", second}},
		{fixture: "gitlab/push.json", secret: secret,
			headers: map[string]string{"X-Gitlab-Event": "Push Hook"},
			replace: []string{"2adc9465c4edfc33834e173fe89436a7cb899a1d", third,
				`"ref": "refs/heads/master"`, `"ref": "refs/heads/main"`}},
		{fixture: "github/push.branch.json", secret: secret, form: true,
			headers: github("push", "d-6"),
			replace: []string{"366701fde727cb7a9e7f21eb88264f59f6f9b89c", fourth}},
	}
	for i, d := range forges {
		if code, body := m.post(t, "app", d); code != http.StatusAccepted {
			t.Fatalf("%s: %d %q", d.fixture, code, body)
		}
		runs = m.waitRuns(t, "app", 2+i)
		if want := []string{second, third, fourth}[i]; runs[0].Commit != want {
			t.Errorf("%s: run of %s, want %s", d.fixture, runs[0].Commit, want)
		}
	}
	// GitLab sent no delivery ID: its body is the key, so the same push
	// again starts nothing.
	if code, body := m.post(t, "app", forges[1]); code != http.StatusOK {
		t.Errorf("gitlab redelivery: %d %q", code, body)
	}
	time.Sleep(200 * time.Millisecond)
	m.waitRuns(t, "app", 4)

	p, err := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if p.WebhookSecret != "" || !p.Triggers.GetWebhook() || !strings.HasPrefix(p.LastRunBy, "webhook") {
		t.Errorf("pipeline as clients see it: secret %q, triggers %v, last run by %q",
			p.WebhookSecret, p.Triggers, p.LastRunBy)
	}
	if len(p.Events) != 10 {
		t.Errorf("GetPipeline gave %d events, want the newest 10", len(p.Events))
	}
	events, err := m.s.store.Events("app", 50)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, ev := range events {
		outcomes[ev.Outcome]++
	}
	if outcomes["started"] != 4 || outcomes["ignored"] != 7 {
		t.Errorf("events by outcome: %v, want 4 started and 7 ignored", outcomes)
	}
}

func TestWebhookOfAPushThatCannotBuildIsRecordedAsFailed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "app", Source: "file://" + repo,
		WebhookSecret: "s"})
	// The fixture's own commit is not in the repository.
	d := delivery{fixture: "github/push.branch.json", secret: "s", headers: github("push", "x")}
	if code, body := m.post(t, "app", d); code != http.StatusAccepted {
		t.Fatalf("%d %q", code, body)
	}
	ev := m.waitEvent(t, "app", func(*kilnpb.TriggerEvent) bool { return true })
	if ev.Outcome != "failed" || !strings.Contains(ev.Message, "366701fde727") {
		t.Fatalf("event %v", ev)
	}
	if runs := m.runs(t, "app"); len(runs) != 0 {
		t.Errorf("runs: %v", runs)
	}
}

func TestWebhookRefusalsOfThePipeline(t *testing.T) {
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	d := delivery{fixture: "github/ping.json", secret: "s", headers: github("ping", "1")}
	if code, body := m.post(t, "nope", d); code != http.StatusNotFound ||
		!strings.Contains(body, `no pipeline "nope"`) {
		t.Errorf("unknown pipeline: %d %q", code, body)
	}
	d.headers = map[string]string{"X-Unknown-Event": "push"}
	req, _ := http.NewRequest("GET", "http://"+m.s.HTTPAddr()+"/hooks/nope", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET of a hook: %d", resp.StatusCode)
	}
}

func TestPollingBuildsWhenTheRefMovesAndAfterAForcePush(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "app", Source: "file://" + repo,
		Triggers: &kilnpb.Triggers{PollMs: 1000}})
	time.Sleep(1500 * time.Millisecond)
	if runs := m.runs(t, "app"); len(runs) != 0 {
		t.Fatalf("a poll that saw the built commit started %d runs", len(runs))
	}

	moved := commit(t, repo, "moved")
	runs := m.waitRuns(t, "app", 1)
	if runs[0].Commit != moved || runs[0].Trigger.GetKind() != "poll" {
		t.Fatalf("run of %s by %v, want %s by a poll", runs[0].Commit, runs[0].Trigger, moved)
	}

	// Rewrite history: the branch moves to a commit that is not a
	// descendant of the one polled before.
	if _, err := gitrepo.Git(repo, "reset", "--quiet", "--hard", "HEAD~1"); err != nil {
		t.Fatal(err)
	}
	forced := commit(t, repo, "forced")
	runs = m.waitRuns(t, "app", 2)
	if runs[0].Commit != forced {
		t.Fatalf("after a force-push: run of %s, want %s", runs[0].Commit, forced)
	}
	p, err := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if p.TriggerState.GetPollCommit() != forced || p.TriggerState.GetPolledAt() == 0 {
		t.Errorf("trigger state %v", p.TriggerState)
	}
}

// clock is a fake clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func TestSchedulesOnAFakeClockRunOncePerSlotAndOnceAfterDowntime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a pipeline")
	}
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, berlin)}
	dir := t.TempDir()
	m := serveTriggers(t, dir, c.Now)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "nightly", Source: "file://" + repo,
		Triggers: &kilnpb.Triggers{Schedules: []string{"0 3 * * *"}, Timezone: "Europe/Berlin"}})
	p, err := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 3, 2, 3, 0, 0, 0, berlin)
	if got := time.UnixMilli(p.TriggerState.GetNextSchedule()); !got.Equal(want) {
		t.Fatalf("next slot %v, want %v", got, want)
	}

	c.set(want.Add(-time.Second))
	time.Sleep(200 * time.Millisecond)
	if runs := m.runs(t, "nightly"); len(runs) != 0 {
		t.Fatalf("%d runs before the slot", len(runs))
	}
	c.set(want.Add(time.Second))
	runs := m.waitRuns(t, "nightly", 1)
	if tr := runs[0].Trigger; tr.GetKind() != "schedule" || tr.GetBy() != "0 3 * * *" ||
		!strings.Contains(tr.GetDetail(), "2026-03-02 03:00 CET") {
		t.Fatalf("trigger %v", tr)
	}
	time.Sleep(200 * time.Millisecond)
	m.waitRuns(t, "nightly", 1)

	// The master is down for three slots: one run when it is back.
	m.stop()
	c.set(time.Date(2026, 3, 5, 9, 0, 0, 0, berlin))
	m = serveTriggers(t, dir, c.Now)
	runs = m.waitRuns(t, "nightly", 2)
	time.Sleep(300 * time.Millisecond)
	m.waitRuns(t, "nightly", 2)
	if runs[0].Trigger.GetKind() != "schedule" {
		t.Fatalf("trigger %v", runs[0].Trigger)
	}

	// Across the change to summer time the slot stays at 03:00 local.
	c.set(time.Date(2026, 3, 29, 1, 0, 0, 0, berlin))
	m.waitRuns(t, "nightly", 3)
	c.set(time.Date(2026, 3, 29, 3, 0, 1, 0, berlin))
	runs = m.waitRuns(t, "nightly", 4)
	if !strings.Contains(runs[0].Trigger.GetDetail(), "2026-03-29 03:00 CEST") {
		t.Errorf("summer-time slot: %v", runs[0].Trigger.GetDetail())
	}
}

func TestUpdateRefusesBadTriggersAndChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	head, err := gitrepo.Git(repo, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "pinned", Source: "file://" + repo, Ref: head})
	for _, name := range []string{"a", "b", "c"} {
		req := &kilnpb.CreatePipelineRequest{Name: name, Source: "file://" + repo}
		if name != "a" {
			req.Triggers = &kilnpb.Triggers{DependsOn: []string{string(rune(name[0] - 1))}}
		}
		m.create(t, req)
	}
	ptr := func(v int64) *int64 { return &v }
	str := func(v string) *string { return &v }
	bad := []struct {
		req  *kilnpb.UpdatePipelineRequest
		want string
	}{
		{&kilnpb.UpdatePipelineRequest{Name: "a", DependsOn: &kilnpb.Strings{Values: []string{"c"}}},
			"a → c → b → a"},
		{&kilnpb.UpdatePipelineRequest{Name: "a", DependsOn: &kilnpb.Strings{Values: []string{"a"}}},
			"its own upstream"},
		{&kilnpb.UpdatePipelineRequest{Name: "a", DependsOn: &kilnpb.Strings{Values: []string{"zz"}}},
			`"zz", which is no pipeline`},
		{&kilnpb.UpdatePipelineRequest{Name: "a", PollMs: ptr(10)}, "1s or more"},
		{&kilnpb.UpdatePipelineRequest{Name: "a", Schedules: &kilnpb.Strings{Values: []string{"61 * * * *"}}},
			"61 * * * *"},
		{&kilnpb.UpdatePipelineRequest{Name: "a", Timezone: str("Mars/Base")}, "Mars/Base"},
		{&kilnpb.UpdatePipelineRequest{Name: "a", WebhookSecret: str(" padded ")}, "white space"},
		{&kilnpb.UpdatePipelineRequest{Name: "pinned", PollMs: ptr(60000)}, "pin a branch"},
	}
	for _, tt := range bad {
		_, err := m.api.UpdatePipeline(m.admin, tt.req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.req, err, tt.want)
		}
	}
	p, err := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if tr := p.Triggers; tr.PollMs != 0 || len(tr.DependsOn) != 0 || len(tr.Schedules) != 0 ||
		tr.Timezone != "" || tr.Webhook {
		t.Errorf("refused updates changed %v", tr)
	}
	_, err = m.api.DeletePipeline(m.admin, &kilnpb.DeletePipelineRequest{Name: "b"})
	if err == nil || !strings.Contains(err.Error(), `"b" is upstream of c`) {
		t.Errorf("delete of an upstream: %v", err)
	}

	// Only the fields given change.
	p, err = m.api.UpdatePipeline(m.admin, &kilnpb.UpdatePipelineRequest{Name: "c",
		PollMs: ptr(60000), WebhookSecret: str("s")})
	if err != nil {
		t.Fatal(err)
	}
	if tr := p.Triggers; tr.PollMs != 60000 || !tr.Webhook || fmt.Sprint(tr.DependsOn) != "[b]" {
		t.Errorf("after update: %v", tr)
	}
	p, err = m.api.UpdatePipeline(m.admin, &kilnpb.UpdatePipelineRequest{Name: "c",
		WebhookSecret: str(""), DependsOn: &kilnpb.Strings{}})
	if err != nil {
		t.Fatal(err)
	}
	if tr := p.Triggers; tr.PollMs != 60000 || tr.Webhook || len(tr.DependsOn) != 0 {
		t.Errorf("after clearing: %v", tr)
	}
}

func TestUpstreamSuccessStartsTheDownstreamOnceAndRecordsWhichRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "build", Source: "file://" + repo})
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "deploy", Source: "file://" + repo,
		Triggers: &kilnpb.Triggers{DependsOn: []string{"build"}}})

	// A cancelled upstream run starts nothing.
	r, err := m.api.StartRun(m.admin, &kilnpb.StartRunRequest{Name: "build"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.api.CancelRun(m.admin, &kilnpb.CancelRunRequest{Id: r.Id}); err != nil {
		t.Fatal(err)
	}

	startWorker(t, m.s)
	up, err := m.api.StartRun(m.admin, &kilnpb.StartRunRequest{Name: "build"})
	if err != nil {
		t.Fatal(err)
	}
	down := m.waitRuns(t, "deploy", 1)[0]
	tr := down.Trigger
	if tr.GetKind() != "upstream" || tr.GetUpstreamPipeline() != "build" ||
		tr.GetUpstreamRun() != up.Id || down.StartedBy != fmt.Sprintf("upstream build#%d", up.Id) {
		t.Fatalf("downstream run %d: trigger %v, by %q", down.Id, tr, down.StartedBy)
	}
	if got, err := m.api.GetRun(context.Background(), &kilnpb.GetRunRequest{Id: up.Id}); err != nil ||
		got.Status != "succeeded" {
		t.Fatalf("upstream run: %v %v", got.GetStatus(), err)
	}
	// The downstream run succeeding starts nothing more, and nothing
	// repeats.
	waitStatus(t, m, down.Id, "succeeded")
	time.Sleep(300 * time.Millisecond)
	m.waitRuns(t, "deploy", 1)
	m.waitRuns(t, "build", 2)
}

// startWorker runs a worker in this process against the master.
func startWorker(t *testing.T, s *Server) {
	t.Helper()
	w, err := worker.New(worker.Config{Master: s.GRPCAddr(), Secret: s.WorkerSecret(),
		Name: "w1", DataDir: t.TempDir(), Slots: 2, MinFreeDisk: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitStatus(t *testing.T, m *testMaster, run uint64, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := m.api.GetRun(context.Background(), &kilnpb.GetRunRequest{Id: run})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d is %s after 60s, want %s", run, r.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebhookTagPushRunsTheNewestTagASemverConstraintAllows(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	tag := func(name string) string {
		t.Helper()
		sha := commit(t, repo, name)
		if _, err := gitrepo.Git(repo, "tag", name); err != nil {
			t.Fatal(err)
		}
		return sha
	}
	tag("v1.0.0")
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "rel", Source: "file://" + repo,
		Ref: "^1", WebhookSecret: "s"})
	pushTag := func(name, sha, id string) (int, string) {
		return m.post(t, "rel", delivery{fixture: "github/push.branch.json", secret: "s",
			headers: github("push", id), replace: []string{
				"366701fde727cb7a9e7f21eb88264f59f6f9b89c", sha,
				`"ref": "refs/heads/main"`, `"ref": "refs/tags/` + name + `"`}})
	}

	if code, body := pushTag("v2.0.0", tag("v2.0.0"), "t-0"); code != http.StatusOK ||
		!strings.Contains(body, "^1") {
		t.Errorf("a tag outside the constraint: %d %q", code, body)
	}
	v11 := tag("v1.1.0")
	if code, body := pushTag("v1.1.0", v11, "t-1"); code != http.StatusAccepted {
		t.Fatalf("v1.1.0: %d %q", code, body)
	}
	if runs := m.waitRuns(t, "rel", 1); runs[0].Commit != v11 {
		t.Fatalf("run of %s, want v1.1.0's %s", runs[0].Commit, v11)
	}

	// A backport tagged after it is allowed by ^1 but is not the newest.
	if _, err := gitrepo.Git(repo, "checkout", "--quiet", "-b", "backport", "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	if code, body := pushTag("v1.0.5", tag("v1.0.5"), "t-2"); code != http.StatusAccepted {
		t.Fatalf("v1.0.5: %d %q", code, body)
	}
	if ev := m.waitEvent(t, "rel", delivered("github:t-2")); ev.Outcome != "ignored" ||
		!strings.Contains(ev.Message, "picks v1.1.0") {
		t.Fatalf("event %v", ev)
	}
	m.waitRuns(t, "rel", 1)
}

func TestAPushSeenByAWebhookAndAPollRunsOnceAndALateDeliveryStaysBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "app", Source: "file://" + repo,
		Ref: "main", WebhookSecret: "s"})
	push := func(sha, id string) {
		t.Helper()
		code, body := m.post(t, "app", delivery{fixture: "github/push.branch.json", secret: "s",
			headers: github("push", id), form: strings.HasSuffix(id, "again"),
			replace: []string{"366701fde727cb7a9e7f21eb88264f59f6f9b89c", sha}})
		if code != http.StatusAccepted {
			t.Fatalf("push of %s: %d %q", sha, code, body)
		}
	}
	waitEvent := func(delivery string) *kilnpb.TriggerEvent {
		t.Helper()
		return m.waitEvent(t, "app", delivered(delivery))
	}
	current := func() string {
		t.Helper()
		v, err := m.s.reg.Current("app")
		if err != nil {
			t.Fatal(err)
		}
		return v.Commit
	}

	older, newer := commit(t, repo, "older"), commit(t, repo, "newer")
	push(newer, "n")
	m.waitRuns(t, "app", 1)
	// The same push in another body (a form, another delivery ID) and a
	// poll that sees the same tip start nothing more.
	if code, body := m.post(t, "app", delivery{fixture: "github/push.branch.json", secret: "s",
		headers: github("push", "n-again"), form: true,
		replace: []string{"366701fde727cb7a9e7f21eb88264f59f6f9b89c", newer}}); code != http.StatusAccepted {
		t.Fatalf("%d %q", code, body)
	}
	if ev := waitEvent("github:n-again"); ev.Outcome != "ignored" ||
		!strings.Contains(ev.Message, "already ran as the tip") {
		t.Fatalf("the same push again: %v", ev)
	}
	if _, err := m.api.UpdatePipeline(m.admin, &kilnpb.UpdatePipelineRequest{Name: "app",
		PollMs: proto.Int64(1000)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		st, _ := m.s.store.TriggerState("app")
		return st.PolledAt != 0
	})

	// The delivery of the older push comes late: it runs its commit, which
	// does not become current, and only once.
	push(older, "o")
	if ev := waitEvent("github:o"); ev.Outcome != "started" {
		t.Fatalf("late delivery: %v", ev)
	}
	if got := current(); got != newer {
		t.Errorf("current version is of %s after a late delivery, want %s", got, newer)
	}
	push(older, "o-again")
	if ev := waitEvent("github:o-again"); ev.Outcome != "ignored" ||
		!strings.Contains(ev.Message, "moved on to") {
		t.Fatalf("late delivery again: %v", ev)
	}
	time.Sleep(1500 * time.Millisecond) // a poll or two
	runs := m.waitRuns(t, "app", 2)
	if runs[0].Commit != older || runs[1].Commit != newer {
		t.Errorf("runs of %s, %s; want %s then %s", runs[1].Commit, runs[0].Commit, newer, older)
	}
}

// waitEvent waits up to 30s for the newest of the pipeline's trigger
// events that match says yes to, and returns it.
func (m *testMaster) waitEvent(t *testing.T, pipeline string,
	match func(*kilnpb.TriggerEvent) bool) *kilnpb.TriggerEvent {
	t.Helper()
	var found *kilnpb.TriggerEvent
	eventually(t, 30*time.Second, func() bool {
		evs, _ := m.s.store.Events(pipeline, 50)
		for _, ev := range evs {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// delivered matches the events of one webhook delivery.
func delivered(id string) func(*kilnpb.TriggerEvent) bool {
	return func(ev *kilnpb.TriggerEvent) bool { return ev.Trigger.GetDelivery() == id }
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestARefusedDeliveryIsShownOnThePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a pipeline")
	}
	t.Parallel()
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "app", Source: "file://" + repo,
		WebhookSecret: "right"})
	code, _ := m.post(t, "app", delivery{fixture: "github/ping.json", secret: "wrong",
		headers: github("ping", "p")})
	if code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", code)
	}
	p, err := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if st := p.TriggerState; !strings.Contains(st.Refused, "X-Hub-Signature-256") || st.RefusedAt == 0 {
		t.Errorf("trigger state %v", st)
	}
}
