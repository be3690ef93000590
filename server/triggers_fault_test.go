package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kilnci/kiln/internal/gitrepo"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
)

type fakePinStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakePinStream) Send(*kilnpb.BuildEvent) error { return nil }
func (f fakePinStream) Context() context.Context      { return f.ctx }

// bareServer is a master without its ports served or its trigger loop, with
// its saver running, so that a test drives the trigger steps itself.
func bareServer(t *testing.T) (*Server, context.Context) {
	t.Helper()
	s, err := New(Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go s.saver.run(ctx)
	t.Cleanup(func() { cancel(); s.Close() })
	return s, ctx
}

// bareApp is a bareServer with a pipeline "app" that follows main of a
// noop repository, with the webhook secret "s".
func bareApp(t *testing.T) (*Server, context.Context, string) {
	t.Helper()
	s, ctx := bareServer(t)
	repo := noopRepo(t)
	if _, _, err := s.reg.Create(ctx, registry.CreateRequest{Name: "app", Source: "file://" + repo,
		Ref: "main", WebhookSecret: "s"}, nil); err != nil {
		t.Fatal(err)
	}
	return s, ctx, repo
}

func queuePush(t *testing.T, s *Server, ref, sha, id string) *kilnpb.QueuedTrigger {
	t.Helper()
	item := &kilnpb.QueuedTrigger{Pipeline: "app", At: ms(time.Now()), Trigger: &kilnpb.Trigger{
		Kind: triggerWebhook, Delivery: id, Ref: ref, Commit: sha, Detail: "github push " + id},
		Keys: []string{id}}
	if _, err := s.store.Enqueue(item, nil); err != nil {
		t.Fatal(err)
	}
	return item
}

func lastEvent(t *testing.T, s *Server) *kilnpb.TriggerEvent {
	evs, err := s.store.Events("app", 1)
	if err != nil || len(evs) == 0 {
		t.Fatalf("no event: %v", err)
	}
	return evs[0]
}

// A push queued before `ci pin` builds its commit still runs: a pin builds,
// it runs nothing.
func TestAPushQueuedBeforeAPinOfItsCommitStillRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	s, ctx, repo := bareApp(t)
	x := commit(t, repo, "x")
	item := queuePush(t, s, "refs/heads/main", x, "github:d1") // accepted with 202
	if err := (&master{s: s}).Pin(&kilnpb.PinRequest{Name: "app", Ref: "main"},
		fakePinStream{ctx: ctx}); err != nil {
		t.Fatal(err)
	}
	s.trig.start(ctx, item)
	ev := lastEvent(t, s)
	runs, _ := s.store.Runs("app", 10, 0)
	t.Logf("outcome=%s runs=%d message=%q", ev.Outcome, len(runs), ev.Message)
	if ev.Outcome != outcomeStarted {
		t.Errorf("pushed commit never ran, event says: %s", ev.Message)
	}
}

// A push queued for the branch the pipeline followed before a pin to
// another ref starts nothing.
func TestAPushToARefNoLongerFollowedStartsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	s, ctx, repo := bareApp(t)
	x := commit(t, repo, "on main")
	item := queuePush(t, s, "refs/heads/main", x, "github:d1")
	if _, err := gitrepo.Git(repo, "checkout", "--quiet", "-b", "release", "HEAD~1"); err != nil {
		t.Fatal(err)
	}
	commit(t, repo, "on release")
	if err := (&master{s: s}).Pin(&kilnpb.PinRequest{Name: "app", Ref: "release"},
		fakePinStream{ctx: ctx}); err != nil {
		t.Fatal(err)
	}
	s.trig.start(ctx, item)
	ev := lastEvent(t, s)
	t.Logf("outcome=%s message=%q", ev.Outcome, ev.Message)
	if ev.Outcome == outcomeStarted {
		t.Errorf("pipeline follows release, but a push to main ran: %s", ev.Message)
	}
}

// A pushed commit that does not compile leaves a one-line event that says
// where the compiler's output is.
func TestACompileFailureIsAOneLineEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	s, ctx, repo := bareApp(t)
	if err := os.WriteFile(filepath.Join(repo, "bad.go"), []byte("package main\nfunc x() { y }\nfunc z() { w }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitrepo.Git(repo, "add", "bad.go")
	sha := commit(t, repo, "broken")
	item := queuePush(t, s, "refs/heads/main", sha, "github:d1")
	s.trig.start(ctx, item)
	ev := lastEvent(t, s)
	t.Logf("outcome=%s message=%q", ev.Outcome, ev.Message)
	if strings.Contains(ev.Message, "\n") {
		t.Errorf("event message spans %d lines", strings.Count(ev.Message, "\n")+1)
	}
}

// The mark of a succeeded run goes with the run when its pipeline is
// deleted.
func TestDeletedRunsLeaveNoSucceededMark(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	s, _ := bareServer(t)
	r := &kilnpb.Run{Pipeline: "gone", Status: "queued"}
	if err := s.store.CreateRun(r); err != nil {
		t.Fatal(err)
	}
	r.Status = "succeeded"
	if err := s.store.PutRuns([]*kilnpb.Run{r}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.DeleteRuns("gone"); err != nil {
		t.Fatal(err)
	}
	ids, _ := s.store.Succeeded()
	t.Logf("succeeded marks after DeleteRuns: %v", ids)
	if len(ids) != 0 {
		_, err := s.run(ids[0])
		t.Errorf("mark for deleted run %d stays; fanOut fails every tick: %v", ids[0], err)
	}
}

// A poll of a remote that accepts and never answers does not keep the
// master from stopping.
func TestShutdownIsBoundedWhileAPollHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c // hold it open, say nothing
		}
	}()
	defer func() {
		ln.Close()
		for c := range held {
			c.Close()
		}
	}()
	s, err := New(Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		TriggerInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	repo := noopRepo(t)
	if _, _, err := s.reg.Create(context.Background(), registry.CreateRequest{Name: "app",
		Source: "file://" + repo, Ref: "main"}, nil); err != nil {
		t.Fatal(err)
	}
	// The forge stops answering (simulated by pointing the source at it).
	if err := s.reg.Update("app", func(p *kilnpb.Pipeline) error {
		p.Source = "http://" + ln.Addr().String() + "/x.git"
		p.Triggers = &kilnpb.Triggers{PollMs: 1000}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	time.Sleep(time.Second)
	start := time.Now()
	cancel()
	select {
	case <-done:
		if took := time.Since(start); took > 12*time.Second {
			t.Errorf("Serve returned %v after cancel; the trigger loop's wait is bounded at 10s", took)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("Serve has not returned 20s after its ctx ended: shutdown waits for the hung poll")
		ln.Close()
		<-done
	}
}

// Slow bodies holding every hook slot get a delivery refused within two
// seconds (to be redelivered), not left waiting past the forge's timeout.
func TestSlowBodiesCannotStarveWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	m := serveTriggers(t, t.TempDir(), nil)
	repo := noopRepo(t)
	if _, _, err := m.s.reg.Create(context.Background(), registry.CreateRequest{Name: "app",
		Source: "file://" + repo, Ref: "main", WebhookSecret: "s"}, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < hookReaders; i++ {
		c, err := net.Dial("tcp", m.s.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("POST /hooks/app HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"))
	}
	time.Sleep(200 * time.Millisecond)
	client := &http.Client{Timeout: 10 * time.Second} // GitHub's
	start := time.Now()
	resp, err := client.Post("http://"+m.s.HTTPAddr()+"/hooks/app", "application/json",
		strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("a delivery from the forge gets no answer within 10s: %v", err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || took > 4*time.Second {
		t.Errorf("answered %d after %v; want 503, to be redelivered, within about %v",
			resp.StatusCode, took, hookSlotWait)
	}
}

// Schedules keep running after the clock jumped ahead and came back.
func TestSchedulesRunAfterTheClockStepsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	m := serveTriggers(t, t.TempDir(), c.Now)
	repo := noopRepo(t)
	m.create(t, &kilnpb.CreatePipelineRequest{Name: "h", Source: "file://" + repo,
		Triggers: &kilnpb.Triggers{Schedules: []string{"0 * * * *"}}})
	c.set(time.Date(2026, 3, 8, 12, 0, 30, 0, time.UTC)) // NTP jumps a week ahead
	m.waitRuns(t, "h", 1)
	c.set(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)) // and back
	time.Sleep(150 * time.Millisecond)
	for h := 1; h <= 5; h++ {
		c.set(time.Date(2026, 3, 1, 12+h, 0, 30, 0, time.UTC))
		time.Sleep(150 * time.Millisecond)
	}
	if n := len(m.runs(t, "h")); n != 6 {
		p, _ := m.api.GetPipeline(context.Background(), &kilnpb.GetPipelineRequest{Name: "h"})
		t.Errorf("hourly schedule ran %d times over 5 hours after the clock came back; next shown %v",
			n-1, time.UnixMilli(p.TriggerState.GetNextSchedule()).UTC())
	}
}

// A failed fetch of the ref's tip says why it failed, not that the commit
// is missing.
func TestAFetchFailureOfATipSaysWhy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	s, ctx, repo := bareApp(t)
	sha := commit(t, repo, "x")
	os.Rename(repo, repo+".away") // the forge is down
	_, err := s.reg.BuildCommit(ctx, "app", "refs/heads/main", sha, true, nil)
	if !errors.Is(err, registry.ErrFetch) || strings.Contains(err.Error(), "is not in") {
		t.Errorf("BuildCommit with the source gone: %v; want the fetch's own reason", err)
	}
}

// A trigger whose pipeline is deleted while it builds starts no run.
func TestATriggerOfADeletedPipelineStartsNoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pipelines")
	}
	s, ctx, _ := bareApp(t)
	item := &kilnpb.QueuedTrigger{Pipeline: "app", At: ms(time.Now()), Trigger: &kilnpb.Trigger{
		Kind: triggerSchedule, Detail: "schedule"}}
	s.store.Enqueue(item, nil)
	v, _, _ := s.trig.version(ctx, item)
	run, err := s.newRun(v, nil, triggerFromProto(item.Trigger))
	if err != nil {
		t.Fatal(err)
	}
	// The pipeline is deleted while its trigger was being built.
	if err := s.reg.Delete("app"); err != nil {
		t.Fatal(err)
	}
	err = s.trig.create(run, item, &kilnpb.TriggerEvent{}, true)
	if !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a run was created for a deleted pipeline: %v", err)
	}
	if runs, _ := s.store.Runs("app", 10, 0); len(runs) != 0 || s.activeRuns("app") != 0 {
		t.Errorf("runs of the deleted pipeline: %d stored, %d active", len(runs), s.activeRuns("app"))
	}
}
