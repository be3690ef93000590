package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/store"
	"github.com/kilnci/kiln/trigger"
)

// The kinds of trigger a run records.
const (
	triggerManual   = "manual"
	triggerWebhook  = "webhook"
	triggerPoll     = "poll"
	triggerSchedule = "schedule"
	triggerUpstream = "upstream"
)

// adminName is the name of the admin token, which manual runs record as
// who started them.
const adminName = "admin"

// The outcomes of a trigger event.
const (
	outcomeStarted = "started"
	outcomeIgnored = "ignored"
	outcomeFailed  = "failed"
)

// triggers turns webhooks, polls, schedules and upstream successes into
// runs. Each of them first becomes a trigger queued in the store, in the
// same transaction as what it was derived from (the delivery ID, the
// commit a poll saw, the schedule slot, the upstream run's success); a
// worker per pipeline then builds what the trigger names, when it names a
// commit, and creates the run in the transaction that takes the trigger
// off the queue. So a trigger that was answered is never lost across a
// restart, and never becomes two runs.
type triggers struct {
	s *Server

	// wake asks the loop to look at the queue now rather than at its next
	// tick.
	wake chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	busy      map[string]bool              // guarded by mu: pipelines a worker drains
	polling   map[string]bool              // guarded by mu: pipelines being polled
	schedules map[string]*trigger.Schedule // guarded by mu: parsed, by expressions and zone

	// setMu serialises changes of triggers, so that two updates cannot
	// close a cycle of upstream pipelines between them.
	setMu sync.Mutex
}

func newTriggers(s *Server) *triggers {
	return &triggers{s: s, wake: make(chan struct{}, 1), busy: map[string]bool{},
		polling: map[string]bool{}, schedules: map[string]*trigger.Schedule{}}
}

// poke makes the loop look at the queue soon.
func (t *triggers) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// run looks at schedules, polls and the queue every interval until ctx
// ends, then waits for the builds and polls it started.
func (t *triggers) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	defer t.wg.Wait()
	pruned := t.s.now()
	for {
		if now := t.s.now(); now.Sub(pruned) > time.Hour {
			if _, err := t.s.store.PruneDeliveries(ms(now.Add(-deliveryMemory))); err != nil {
				t.s.log.Error("forget old webhook deliveries", "err", err)
			}
			pruned = now
		}
		t.fanOut()
		t.due(ctx, t.s.now())
		t.dispatch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.wake:
		}
	}
}

// due queues the schedule slots that came and starts the polls that are
// due.
func (t *triggers) due(ctx context.Context, now time.Time) {
	ps, err := t.s.reg.List()
	if err != nil {
		t.s.log.Error("list pipelines for triggers", "err", err)
		return
	}
	for _, p := range ps {
		tr := p.GetTriggers()
		if len(tr.GetSchedules()) == 0 && tr.GetPollMs() == 0 {
			continue
		}
		st, err := t.s.store.TriggerState(p.Name)
		if err != nil {
			t.s.log.Error("read trigger state", "pipeline", p.Name, "err", err)
			continue
		}
		if len(tr.GetSchedules()) > 0 {
			t.schedule(p, st, now)
		}
		if tr.GetPollMs() > 0 {
			t.maybePoll(ctx, p, st, now)
		}
	}
}

// schedule queues a run when a slot of the pipeline's schedules fell
// between the last one it ran and now. Slots missed while the master was
// down give one run, since the state moves to now, not to the slot.
func (t *triggers) schedule(p *kilnpb.Pipeline, st *kilnpb.TriggerState, now time.Time) {
	sched, err := t.parsed(p.Triggers)
	if err != nil {
		return // checked when set; a zone that vanished is logged by parsed
	}
	if st.ScheduledAt == 0 || fromMS(st.ScheduledAt).After(now.Add(time.Minute)) {
		// Set before this master kept state, or in a future that the
		// clock has stepped back from: count from now.
		if st.ScheduledAt != 0 {
			t.s.log.Warn("the clock went back; schedules count from now", "pipeline", p.Name,
				"scheduled_at", fromMS(st.ScheduledAt))
		}
		t.setState(p.Name, func(st *kilnpb.TriggerState) { st.ScheduledAt = ms(now) })
		return
	}
	slot, expr, ok := sched.Due(fromMS(st.ScheduledAt), now)
	if !ok {
		return
	}
	if loc, err := time.LoadLocation(p.Triggers.Timezone); err == nil {
		slot = slot.In(loc)
	}
	item := &kilnpb.QueuedTrigger{Pipeline: p.Name, At: ms(now), Trigger: &kilnpb.Trigger{
		Kind: triggerSchedule, By: expr,
		Detail: fmt.Sprintf("schedule %q, slot %s", expr, slot.Format("2006-01-02 15:04 MST")),
	}}
	_, err = t.s.store.Enqueue(item, func(st *kilnpb.TriggerState) {
		st.ScheduledAt = ms(now)
	})
	if err != nil {
		t.s.log.Error("queue a scheduled run", "pipeline", p.Name, "err", err)
		return
	}
	t.s.log.Info("schedule due", "pipeline", p.Name, "schedule", expr, "slot", slot)
	t.poke()
}

// parsed returns the pipeline's schedules, parsed once per expressions
// and zone.
func (t *triggers) parsed(tr *kilnpb.Triggers) (*trigger.Schedule, error) {
	key := fmt.Sprint(tr.Schedules, tr.Timezone)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.schedules[key]; ok {
		return s, nil
	}
	s, err := trigger.ParseSchedule(tr.Schedules, tr.Timezone)
	if err != nil {
		t.s.log.Error("schedule no longer parses", "schedules", tr.Schedules, "err", err)
		return nil, err
	}
	t.schedules[key] = s
	return s, nil
}

func (t *triggers) setState(name string, fn func(*kilnpb.TriggerState)) {
	if err := t.s.store.UpdateTriggerState(name, fn); err != nil {
		t.s.log.Error("record trigger state", "pipeline", name, "err", err)
	}
}

// maybePoll starts a poll of the pipeline's source when its interval has
// passed since the last one and none is running.
func (t *triggers) maybePoll(ctx context.Context, p *kilnpb.Pipeline, st *kilnpb.TriggerState,
	now time.Time) {
	if now.Before(fromMS(st.PolledAt).Add(time.Duration(p.Triggers.PollMs) * time.Millisecond)) {
		return
	}
	t.mu.Lock()
	if t.polling[p.Name] {
		t.mu.Unlock()
		return
	}
	t.polling[p.Name] = true
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			t.mu.Lock()
			delete(t.polling, p.Name)
			t.mu.Unlock()
		}()
		t.poll(ctx, p)
	}()
}

// poll asks the source where the followed ref points and queues a run
// when it moved away from the commit the last poll saw (or, at the first
// poll, from the current version's), whether forward or by a force-push.
func (t *triggers) poll(ctx context.Context, p *kilnpb.Pipeline) {
	res, err := registry.Resolve(ctx, registry.GitURL(p.Source), p.Ref)
	now := t.s.now()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		t.pollFailed(p.Name, now, err)
		return
	}
	st, err := t.s.store.TriggerState(p.Name)
	if err != nil {
		return
	}
	seen := st.PollCommit
	if seen == "" && st.Tip == "" {
		if v, err := t.s.reg.Current(p.Name); err == nil {
			seen = v.Commit
		}
	}
	record := func(st *kilnpb.TriggerState) {
		st.PollCommit, st.PolledAt, st.PollError = res.Commit, ms(now), ""
	}
	// A commit a webhook ran already is no news to the poll either.
	if res.Commit == seen || res.Commit == st.Tip {
		t.setState(p.Name, record)
		return
	}
	ref := "refs/heads/" + res.Name
	if res.Kind == registry.KindTag || res.Kind == registry.KindSemver {
		ref = "refs/tags/" + res.Name
	}
	item := &kilnpb.QueuedTrigger{Pipeline: p.Name, At: ms(now), Trigger: &kilnpb.Trigger{
		Kind: triggerPoll, Ref: ref, Commit: res.Commit,
		Detail: fmt.Sprintf("poll saw %s move to %s", ref, registry.Short(res.Commit)),
	}}
	if _, err := t.s.store.Enqueue(item, record); err != nil {
		t.s.log.Error("queue a polled commit", "pipeline", p.Name, "err", err)
		return
	}
	t.s.log.Info("poll saw a new commit", "pipeline", p.Name, "ref", ref, "commit", res.Commit)
	t.poke()
}

// pollFailed records why a poll failed, as an event only when the reason
// changed, so that a source that is down for a day leaves one event.
func (t *triggers) pollFailed(name string, now time.Time, err error) {
	st, serr := t.s.store.TriggerState(name)
	if serr != nil {
		return
	}
	if st.PollError != err.Error() {
		t.s.log.Warn("poll failed", "pipeline", name, "err", err)
		t.event(name, &kilnpb.TriggerEvent{At: ms(now), Outcome: outcomeFailed,
			Trigger: &kilnpb.Trigger{Kind: triggerPoll}, Message: "poll failed: " + err.Error()})
	}
	t.setState(name, func(st *kilnpb.TriggerState) {
		st.PolledAt, st.PollError = ms(now), err.Error()
	})
}

func (t *triggers) event(name string, ev *kilnpb.TriggerEvent) {
	if err := t.s.store.AddEvent(name, ev); err != nil {
		t.s.log.Error("record trigger event", "pipeline", name, "err", err)
	}
}

// fanOut queues the runs that succeeded runs owe their downstream
// pipelines.
func (t *triggers) fanOut() {
	ids, err := t.s.store.Succeeded()
	if err != nil || len(ids) == 0 {
		return
	}
	graph, err := t.graph()
	if err != nil {
		return
	}
	for _, id := range ids {
		r, err := t.s.run(id)
		if status.Code(err) == codes.NotFound {
			t.s.store.FanOut(id, nil) // deleted with its pipeline
			continue
		}
		if err != nil {
			t.s.log.Error("read a succeeded run", "run_id", id, "err", err)
			continue
		}
		var items []*kilnpb.QueuedTrigger
		for _, down := range trigger.Downstream(r.Pipeline, graph) {
			items = append(items, &kilnpb.QueuedTrigger{Pipeline: down, At: ms(t.s.now()),
				Trigger: &kilnpb.Trigger{
					Kind: triggerUpstream, UpstreamPipeline: r.Pipeline, UpstreamRun: r.Id,
					Detail: fmt.Sprintf("run %d of %s succeeded", r.Id, r.Pipeline),
				}})
		}
		if err := t.s.store.FanOut(id, items); err != nil {
			t.s.log.Error("queue downstream runs", "run_id", id, "err", err)
			continue
		}
		if len(items) > 0 {
			t.poke()
		}
	}
}

// graph returns every pipeline's upstream pipelines.
func (t *triggers) graph() (map[string][]string, error) {
	ps, err := t.s.reg.List()
	if err != nil {
		return nil, err
	}
	g := map[string][]string{}
	for _, p := range ps {
		g[p.Name] = p.GetTriggers().GetDependsOn()
	}
	return g, nil
}

// dispatch starts a worker for every pipeline with queued triggers that
// has none. One worker per pipeline keeps its triggers in order: two
// pushes build and run in the order they came.
func (t *triggers) dispatch(ctx context.Context) {
	items, err := t.s.store.Queued()
	if err != nil {
		t.s.log.Error("read the trigger queue", "err", err)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, item := range items {
		name := item.Pipeline
		if t.busy[name] || ctx.Err() != nil {
			continue
		}
		t.busy[name] = true
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.drain(ctx, name)
		}()
	}
}

// drain turns a pipeline's queued triggers into runs, oldest first, until
// none is left or ctx ends.
func (t *triggers) drain(ctx context.Context, name string) {
	for ctx.Err() == nil {
		item := t.next(name)
		if item == nil {
			return
		}
		t.start(ctx, item)
	}
	t.mu.Lock()
	delete(t.busy, name)
	t.mu.Unlock()
}

// next returns the pipeline's oldest queued trigger; when there is none
// the pipeline stops being busy.
func (t *triggers) next(name string) *kilnpb.QueuedTrigger {
	items, err := t.s.store.Queued()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		for _, item := range items {
			if item.Pipeline == name {
				return item
			}
		}
	}
	delete(t.busy, name)
	return nil
}

// start builds what a queued trigger names, when it names a commit, and
// starts the run. A trigger that is not to run, or fails, is recorded as
// the pipeline's event and taken off the queue; a master that stops
// meanwhile leaves it queued for its next start.
func (t *triggers) start(ctx context.Context, item *kilnpb.QueuedTrigger) {
	name, tr := item.Pipeline, item.Trigger
	ev := &kilnpb.TriggerEvent{At: ms(t.s.now()), Trigger: tr}
	v, current, err := t.version(ctx, item)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		var run *scheduler.Run
		if run, err = t.s.newRun(v, nil, triggerFromProto(tr)); err == nil {
			ev.Outcome, ev.Version = outcomeStarted, v.Version
			ev.Message = fmt.Sprintf("%s: run started on version %d", tr.Detail, v.Version)
			err = t.create(run, item, ev, current)
		}
	}
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return
	}
	if errors.Is(err, registry.ErrNotFound) {
		// Deleted meanwhile: its events went with it.
		if err := t.s.store.Unqueue(item.Id, nil, name, false); err != nil {
			t.s.log.Error("take a trigger off the queue", "pipeline", name, "err", err)
		}
		return
	}
	ev.Outcome, ev.Version = outcomeFailed, v.GetVersion()
	ev.Message = fmt.Sprintf("%s: no run: %s", tr.Detail, firstLine(err.Error()))
	if v.GetStatus() == registry.StatusFailed {
		ev.Message += fmt.Sprintf(" (the compiler's output: ci registry list %s -o json)", name)
	}
	var skip skipError
	failed := !errors.As(err, &skip)
	if failed {
		t.s.log.Warn("trigger failed", "pipeline", name, "trigger", tr.Kind, "err", err)
		if len(item.Keys) > 0 {
			ev.Message += "; a redelivery from the forge tries again"
		}
	} else {
		ev.Outcome, ev.Message = outcomeIgnored, fmt.Sprintf("%s: no run: %s", tr.Detail, skip)
	}
	if err := t.s.store.Unqueue(item.Id, ev, name, failed); err != nil {
		t.s.log.Error("take a trigger off the queue", "pipeline", name, "err", err)
	}
}

// create records a trigger's run, unless its pipeline was deleted while
// the trigger was built: setMu, which a deletion holds, keeps the two
// apart.
func (t *triggers) create(run *scheduler.Run, item *kilnpb.QueuedTrigger,
	ev *kilnpb.TriggerEvent, current bool) error {
	t.setMu.Lock()
	defer t.setMu.Unlock()
	if _, err := t.s.reg.Get(run.Pipeline); err != nil {
		return err
	}
	_, err := t.s.createRun(run, func(p *kilnpb.Run) error {
		return t.s.store.CreateTriggeredRun(p, item.Id, ev, ranCommit(item.Trigger.Commit, current))
	})
	return err
}

// firstLine keeps the first line of a message that may hold a compiler's.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// keepRan is how many commits a pipeline's trigger state remembers as run.
const keepRan = 50

// ranCommit records, with a run of a pushed or polled commit, that the
// commit ran, and as the ref's tip when it is current.
func ranCommit(commit string, current bool) func(*kilnpb.TriggerState) {
	if commit == "" {
		return nil
	}
	return func(st *kilnpb.TriggerState) {
		if current {
			st.Tip = commit
		}
		st.Ran = append(slices.DeleteFunc(st.Ran, func(c string) bool { return c == commit }), commit)
		if len(st.Ran) > keepRan {
			st.Ran = st.Ran[len(st.Ran)-keepRan:]
		}
	}
}

// skipError is why a trigger starts no run although nothing failed.
type skipError string

func (e skipError) Error() string { return string(e) }

// version returns the version a trigger runs, and whether it is the
// pipeline's current one: for a pushed or polled commit, that commit,
// built (or found in the build index); otherwise the current version.
//
// A commit is first compared with where the followed ref points now, so
// that deliveries of one push through two paths (a webhook and a poll, a
// body sent twice) run it once, and a delivery that comes late runs its
// commit without making it current.
func (t *triggers) version(ctx context.Context,
	item *kilnpb.QueuedTrigger) (*kilnpb.Version, bool, error) {
	tr := item.Trigger
	if tr.Commit == "" {
		v, err := t.s.reg.Current(item.Pipeline)
		return v, true, err
	}
	p, err := t.s.reg.Get(item.Pipeline)
	if err != nil {
		return nil, false, err
	}
	if ok, why := trigger.Follows(p.Ref, tr.Ref); !ok {
		// Pinned to another ref since the push came.
		return nil, false, skipError(fmt.Sprintf("push to %s: %s", tr.Ref, why))
	}
	res, err := registry.Resolve(ctx, registry.GitURL(p.Source), p.Ref)
	if err != nil {
		return nil, false, err
	}
	st, err := t.s.store.TriggerState(item.Pipeline)
	if err != nil {
		return nil, false, err
	}
	current := res.Commit == tr.Commit
	if err := skipCommit(p.Ref, tr, res, current, st); err != nil {
		return nil, false, err
	}

	// The registry logs the version it records.
	v, err := t.s.reg.BuildCommit(ctx, item.Pipeline, tr.Ref, tr.Commit, current, nil)
	return v, current, err
}

// skipCommit says why a pushed or polled commit is not to run: a tag that
// the pipeline's semver constraint allows but does not pick (a backport
// tagged v1.2.9 after v1.3.0 must not replace v1.3.0 as the version of
// "^1"), a commit that already ran as the ref's tip, or a late delivery of
// a commit that already ran.
func skipCommit(policy string, tr *kilnpb.Trigger, res registry.Resolved, current bool,
	st *kilnpb.TriggerState) error {
	if tag, ok := strings.CutPrefix(tr.Ref, "refs/tags/"); ok && res.Kind == registry.KindSemver &&
		res.Name != tag {
		return skipError(fmt.Sprintf("%s allows tag %s but picks %s", policy, tag, res.Name))
	}
	switch {
	case current && st.Tip == tr.Commit:
		return skipError(fmt.Sprintf("commit %s already ran as the tip of %s", registry.Short(tr.Commit),
			policy))
	case !current && slices.Contains(st.Ran, tr.Commit):
		return skipError(fmt.Sprintf("commit %s already ran, and %s has moved on to %s",
			registry.Short(tr.Commit), policy, registry.Short(res.Commit)))
	}
	return nil
}

// sortedCopy returns a sorted copy of names without repeats.
func sortedCopy(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
