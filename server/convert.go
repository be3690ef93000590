package server

import (
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/scheduler"
)

// ms turns a time into Unix milliseconds, zero for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// RunProto turns the engine's run into the record that is saved and
// shown.
func RunProto(r *scheduler.Run) *kilnpb.Run {
	out := &kilnpb.Run{
		Id: r.ID, Pipeline: r.Pipeline, Version: r.Version, Commit: r.Commit,
		Status: string(r.Status), Params: r.Params, Created: ms(r.Created),
		Started: ms(r.Started), Finished: ms(r.Finished), StartedBy: r.StartedBy,
		Reason: r.Reason, Digest: r.Digest, Ref: r.Ref, Source: r.Source, Dir: r.Dir,
		Goos: r.OS, Goarch: r.Arch, Trigger: triggerProto(r.Trigger),
	}
	for _, j := range r.Jobs {
		out.Jobs = append(out.Jobs, jobToProto(j))
	}
	return out
}

func jobToProto(j *scheduler.Job) *kilnpb.Job {
	out := &kilnpb.Job{
		Name: j.Name, Status: string(j.Status), Attempts: uint32(len(j.Attempts)),
		Started: ms(j.Started), Finished: ms(j.Finished), Error: j.Error,
		DependsOn: j.DependsOn, Waiting: j.Waiting, Outputs: j.Outputs,
		TimeoutMs: j.Timeout.Milliseconds(), Retries: int32(j.Retries), Labels: j.Labels,
	}
	for _, a := range j.Attempts {
		out.History = append(out.History, &kilnpb.Attempt{
			Id: a.ID, WorkerId: a.WorkerID, Worker: a.Worker, Status: string(a.Status),
			Assigned: ms(a.Assigned), Started: ms(a.Started), Finished: ms(a.Finished),
			Error: a.Error,
		})
		out.Worker = a.Worker
	}
	return out
}

// runFromProto turns a saved run back into the engine's.
func runFromProto(p *kilnpb.Run) *scheduler.Run {
	r := &scheduler.Run{
		ID: p.Id, Pipeline: p.Pipeline, Version: p.Version, Digest: p.Digest,
		OS: p.Goos, Arch: p.Goarch, Source: p.Source, Dir: p.Dir, Ref: p.Ref,
		Commit: p.Commit, Params: p.Params, Status: scheduler.Status(p.Status),
		StartedBy: p.StartedBy, Reason: p.Reason, Created: fromMS(p.Created),
		Started: fromMS(p.Started), Finished: fromMS(p.Finished),
		Trigger: triggerFromProto(p.Trigger),
	}
	for _, pj := range p.Jobs {
		j := &scheduler.Job{
			Name: pj.Name, DependsOn: pj.DependsOn, Timeout: time.Duration(pj.TimeoutMs) * time.Millisecond,
			Retries: int(pj.Retries), Labels: pj.Labels, Status: scheduler.Status(pj.Status),
			Error: pj.Error, Outputs: pj.Outputs, Started: fromMS(pj.Started),
			Finished: fromMS(pj.Finished), Waiting: pj.Waiting,
		}
		for _, a := range pj.History {
			j.Attempts = append(j.Attempts, &scheduler.Attempt{
				ID: a.Id, WorkerID: a.WorkerId, Worker: a.Worker,
				Status: scheduler.AttemptStatus(a.Status), Assigned: fromMS(a.Assigned),
				Started: fromMS(a.Started), Finished: fromMS(a.Finished), Error: a.Error,
			})
		}
		r.Jobs = append(r.Jobs, j)
	}
	return r
}

func workerToProto(w scheduler.Worker, now time.Time, ttl time.Duration) *kilnpb.Worker {
	state := w.State(now, ttl)
	reason := w.Reason
	if state == scheduler.Lost {
		reason = "no heartbeat for " + now.Sub(w.LastSeen).Round(time.Second).String()
	}
	return &kilnpb.Worker{
		Id: w.ID, Name: w.Name, Hostname: w.Hostname, State: string(state),
		LastSeen: ms(w.LastSeen), Reason: reason, Goos: w.OS, Goarch: w.Arch,
		Labels: w.Labels, Slots: uint32(w.Slots), Busy: uint32(len(w.Running)),
		Joined: ms(w.Joined),
	}
}

func triggerProto(t scheduler.Trigger) *kilnpb.Trigger {
	if t == (scheduler.Trigger{}) {
		return nil
	}
	return &kilnpb.Trigger{Kind: t.Kind, By: t.By, Detail: t.Detail, Delivery: t.Delivery,
		UpstreamPipeline: t.UpstreamPipeline, UpstreamRun: t.UpstreamRun, Ref: t.Ref,
		Commit: t.Commit}
}

func triggerFromProto(t *kilnpb.Trigger) scheduler.Trigger {
	return scheduler.Trigger{Kind: t.GetKind(), By: t.GetBy(), Detail: t.GetDetail(),
		Delivery: t.GetDelivery(), UpstreamPipeline: t.GetUpstreamPipeline(),
		UpstreamRun: t.GetUpstreamRun(), Ref: t.GetRef(), Commit: t.GetCommit()}
}
