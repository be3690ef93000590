package server

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/trigger"
)

// minPoll is the shortest poll interval: a source is a forge that other
// people use too.
const minPoll = time.Second

// fullCommit is a ref policy that names one commit.
var fullCommit = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

// maxSecret bounds a webhook secret; forges take shorter ones.
const maxSecret = 1024

// updateTriggers changes the triggers a request sets and leaves the others
// as they are. A setting that is wrong changes nothing.
func (s *Server) updateTriggers(req *kilnpb.UpdatePipelineRequest) (*kilnpb.Pipeline, error) {
	s.trig.setMu.Lock()
	defer s.trig.setMu.Unlock()
	p, err := s.reg.Get(req.Name)
	if err != nil {
		return nil, err
	}
	tr, secret := cloneTriggers(p.Triggers), p.WebhookSecret
	if req.WebhookSecret != nil {
		secret = *req.WebhookSecret
	}
	if req.PollMs != nil {
		tr.PollMs = *req.PollMs
	}
	if req.Schedules != nil {
		tr.Schedules = req.Schedules.Values
	}
	if req.Timezone != nil {
		tr.Timezone = *req.Timezone
	}
	if req.DependsOn != nil {
		tr.DependsOn = sortedCopy(req.DependsOn.Values)
	}
	if err := s.checkTriggers(req.Name, p.Ref, tr, secret); err != nil {
		return nil, err
	}

	// The state goes first: a schedule set must not count slots from
	// before it, even for the loop's look between the two writes.
	s.triggersSet(req.Name, p.Triggers, tr)
	err = s.reg.Update(req.Name, func(q *kilnpb.Pipeline) error {
		q.Triggers, q.WebhookSecret = tr, secret
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("pipeline triggers changed", "pipeline", req.Name, "webhook", secret != "",
		"poll_ms", tr.PollMs, "schedules", tr.Schedules, "timezone", tr.Timezone,
		"depends_on", tr.DependsOn)
	q, err := s.reg.Get(req.Name)
	if err != nil {
		return nil, err
	}
	return s.public(q, 10), nil
}

// triggersSet starts the schedules' clock when they changed: a schedule
// counts its slots from when it was set, not from the past. Polling that
// starts counts from the current version, not from what an earlier spell
// of polling saw.
func (s *Server) triggersSet(name string, before, after *kilnpb.Triggers) {
	if !slices.Equal(before.GetSchedules(), after.GetSchedules()) ||
		before.GetTimezone() != after.GetTimezone() {
		now := ms(s.now())
		s.trig.setState(name, func(st *kilnpb.TriggerState) { st.ScheduledAt = now })
	}
	if before.GetPollMs() == 0 && after.GetPollMs() > 0 {
		if v, err := s.reg.Current(name); err == nil {
			s.trig.setState(name, func(st *kilnpb.TriggerState) { st.PollCommit = v.Commit })
		}
	}
}

// checkTriggers refuses trigger settings that cannot work, with one
// sentence that names the setting and what it accepts. s.trig.setMu must
// be held when DependsOn changes, so that the check of cycles stays true
// until the setting is stored.
func (s *Server) checkTriggers(name, ref string, tr *kilnpb.Triggers, secret string) error {
	bad := func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "pipeline %q: %s", name,
			fmt.Sprintf(format, args...))
	}
	switch {
	case len(secret) > maxSecret:
		return bad("the webhook secret is longer than %d bytes", maxSecret)
	case strings.TrimSpace(secret) != secret:
		return bad("the webhook secret starts or ends with white space")
	case tr.PollMs < 0 || (tr.PollMs > 0 && tr.PollMs < minPoll.Milliseconds()):
		return bad("poll interval %s: use 0 to stop polling, or %s or more",
			time.Duration(tr.PollMs)*time.Millisecond, minPoll)
	}
	if tr.PollMs > 0 && fullCommit.MatchString(ref) {
		return bad("it follows commit %s, which polls cannot see move: pin a branch or a "+
			"tag first (ci pin %s@main)", ref, name)
	}
	if len(tr.Schedules) > 0 || tr.Timezone != "" {
		if _, err := trigger.ParseSchedule(tr.Schedules, tr.Timezone); err != nil {
			return bad("%v", err)
		}
	}
	if len(tr.DependsOn) == 0 {
		return nil
	}
	graph, err := s.trig.graph()
	if err != nil {
		return err
	}
	for _, up := range tr.DependsOn {
		if _, ok := graph[up]; !ok && up != name {
			return bad("depends on %q, which is no pipeline: see ci pipeline list", up)
		}
	}
	if err := trigger.CheckUpstreams(name, tr.DependsOn, graph); err != nil {
		return status.Error(codes.InvalidArgument, err.Error()) // it names the pipeline
	}
	return nil
}

// checkNoDownstream refuses to delete a pipeline that others run after.
// s.trig.setMu must be held.
func (s *Server) checkNoDownstream(name string) error {
	graph, err := s.trig.graph()
	if err != nil {
		return userError(err)
	}
	if down := trigger.Downstream(name, graph); len(down) > 0 {
		return status.Errorf(codes.FailedPrecondition, "pipeline %q is upstream of %s: "+
			"take it out of their depends-on first (ci pipeline update %s --depends-on ...)",
			name, strings.Join(down, ", "), down[0])
	}
	return nil
}

// public is the pipeline as clients see it: without its webhook secret,
// with its trigger state and, when events > 0, its newest events (up to
// events of them) and the parameters its current version declares.
func (s *Server) public(p *kilnpb.Pipeline, events int) *kilnpb.Pipeline {
	q := proto.Clone(p).(*kilnpb.Pipeline)
	q.WebhookSecret = ""
	q.Source = registry.Redact(q.Source)
	if q.Triggers == nil {
		q.Triggers = &kilnpb.Triggers{}
	}
	q.Triggers.Webhook = p.WebhookSecret != ""
	st, err := s.store.TriggerState(p.Name)
	if err == nil {
		q.TriggerState = st
		s.fillNextSchedule(q)
	}
	if events > 0 {
		q.Events, _ = s.store.Events(p.Name, events)
		if v, err := s.reg.Current(p.Name); err == nil {
			q.Params = v.Description.GetParams()
		}
	}
	return q
}

func (s *Server) fillNextSchedule(p *kilnpb.Pipeline) {
	if len(p.Triggers.Schedules) == 0 {
		return
	}
	sched, err := s.trig.parsed(p.Triggers)
	if err != nil {
		return
	}
	from := fromMS(p.TriggerState.ScheduledAt)
	if from.IsZero() {
		from = s.now()
	}
	next, _ := sched.Next(from)
	p.TriggerState.NextSchedule = ms(next)
}

func cloneTriggers(t *kilnpb.Triggers) *kilnpb.Triggers {
	if t == nil {
		return &kilnpb.Triggers{}
	}
	return proto.Clone(t).(*kilnpb.Triggers)
}

// publicRun is a run as clients see it: its source without a password.
// Workers get the source whole, through their assignments.
func publicRun(r *kilnpb.Run) *kilnpb.Run {
	if r == nil || registry.Redact(r.Source) == r.Source {
		return r
	}
	c := proto.Clone(r).(*kilnpb.Run)
	c.Source = registry.Redact(c.Source)
	return c
}
