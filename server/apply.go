package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/store"
)

// applyLocked carries out what the engine decided: assignments and
// revocations go to the workers' event streams, notes into logs, changed
// runs to the saver and to whoever watches them. It returns the saver's
// generation that holds the changes; wait on it before telling anyone
// that a change is recorded. s.mu must be held.
func (s *Server) applyLocked() uint64 {
	eff := s.eng.Effects()
	gen := s.saver.current()
	for _, r := range eff.Changed {
		p := RunProto(r)
		gen = s.saver.mark(p)
		s.wakeLocked(r.ID)
		if r.Status.Final() {
			s.keepEndedLocked(p)
			s.metrics.ended(r)
			go s.recordLastRun(p.Pipeline, p.Id, p.Status)
			s.log.Info("run ended", "run_id", r.ID, "pipeline", r.Pipeline,
				"status", r.Status, "reason", r.Reason)
		}
	}
	for _, a := range eff.Assign {
		w, _ := s.eng.Worker(a.Worker)
		s.owners[a.Attempt] = owner{a.Run.ID, a.Job, w.Name}
		s.sendLocked(a.Worker, &kilnpb.WorkerEvent{Event: &kilnpb.WorkerEvent_Assign{
			Assign: assignment(a)}})
	}
	for _, r := range eff.Revoke {
		s.sendLocked(r.Worker, &kilnpb.WorkerEvent{Event: &kilnpb.WorkerEvent_Revoke{
			Revoke: &kilnpb.Revoke{AttemptId: r.Attempt, Reason: r.Reason}}})
	}
	for _, n := range eff.Notes {
		s.metrics.lost.Inc()
		s.log.Warn("attempt lost", "run_id", n.Run, "job", n.Job, "attempt", n.Attempt,
			"reason", n.Text)
		// Say where the attempt's log stops, so that a reader knows the
		// lines above are all that arrived of it.
		text := fmt.Sprintf("%s (its log stops above, after %d bytes)", n.Text,
			s.logs.Received(n.Run, n.Job, n.Attempt))
		if err := s.logs.Note(n.Run, n.Job, n.Attempt, text); err != nil {
			s.log.Error("write log note", "run_id", n.Run, "job", n.Job, "err", err)
		}
	}
	return gen
}

func assignment(a scheduler.Assignment) *kilnpb.Assignment {
	r := a.Run
	inputs := make(map[string]*pluginpb.Outputs, len(a.Inputs))
	for job, out := range a.Inputs {
		inputs[job] = &pluginpb.Outputs{Values: out}
	}
	return &kilnpb.Assignment{
		AttemptId: a.Attempt, Job: a.Job, Digest: r.Digest,
		TimeoutMs: a.Timeout.Milliseconds(), Params: r.Params, Inputs: inputs,
		Run: &pluginpb.RunFacts{
			RunId: r.ID, Pipeline: r.Pipeline, Version: r.Version, Source: r.Source,
			Dir: r.Dir, Ref: r.Ref, Commit: r.Commit, Attempt: uint32(a.Number),
		},
	}
}

// sendLocked queues an event for a worker. A worker without a stream, or
// one too far behind, misses it: an assignment it never sees is given to
// another worker at the accept timeout, and a revocation is repeated in
// the answer to its next heartbeat.
func (s *Server) sendLocked(worker uint64, ev *kilnpb.WorkerEvent) {
	ws := s.streams[worker]
	if ws == nil {
		return
	}
	select {
	case ws.events <- ev:
	default:
		s.log.Warn("worker event stream full; event dropped", "worker_id", worker)
	}
}

// recordLastRun puts a run's end on its pipeline, unless a newer run
// started meanwhile.
func (s *Server) recordLastRun(pipeline string, run uint64, status string) {
	err := s.reg.Update(pipeline, func(p *kilnpb.Pipeline) error {
		if p.LastRunId == run {
			p.LastRunStatus = status
		}
		return nil
	})
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.log.Warn("record last run", "pipeline", pipeline, "run_id", run, "err", err)
	}
}

func (s *Server) keepEndedLocked(r *kilnpb.Run) {
	if _, ok := s.ended[r.Id]; !ok {
		s.endedOrder = append(s.endedOrder, r.Id)
	}
	s.ended[r.Id] = r
	for len(s.endedOrder) > keepEnded {
		// Logs of attempts of a run this old are not taken any more. A run
		// of a deleted pipeline is already gone.
		if old := s.ended[s.endedOrder[0]]; old != nil {
			for _, j := range old.Jobs {
				for _, a := range j.History {
					delete(s.owners, a.Id)
				}
			}
		}
		delete(s.ended, s.endedOrder[0])
		s.endedOrder = s.endedOrder[1:]
	}
}

// attemptRef returns the job of an attempt handed to the worker.
func (s *Server) attemptRef(attempt, worker uint64) (owner, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owners[attempt]
	w, known := s.eng.Worker(worker)
	return o, ok && known && w.Name == o.worker
}

// wakeLocked tells the watchers of a run that it changed.
func (s *Server) wakeLocked(run uint64) {
	if ch := s.watches[run]; ch != nil {
		close(ch)
		delete(s.watches, run)
	}
}

// watch returns a channel closed at the run's next change.
func (s *Server) watch(run uint64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.watches[run]
	if ch == nil {
		ch = make(chan struct{})
		s.watches[run] = ch
	}
	return ch
}

// workerStream is the sending side of one worker's event stream.
type workerStream struct {
	events chan *kilnpb.WorkerEvent
	done   chan struct{}
	once   sync.Once
}

func newWorkerStream() *workerStream {
	return &workerStream{events: make(chan *kilnpb.WorkerEvent, 4096), done: make(chan struct{})}
}

func (w *workerStream) close() { w.once.Do(func() { close(w.done) }) }

// saver writes changed runs to the database in the background, many
// changes to one transaction, so that a burst of job results costs a few
// disk syncs rather than one each. Only the newest state of a run is
// written. Callers that must not answer before a change is on disk wait
// for its generation.
type saver struct {
	st  *store.Store
	log *slog.Logger

	// flushing serialises flushes, so that generations land in order.
	flushing sync.Mutex

	mu      sync.Mutex
	cond    *sync.Cond
	pending map[uint64]*kilnpb.Run // guarded by mu
	next    uint64                 // guarded by mu: the generation pending becomes
	saved   uint64                 // guarded by mu: the last generation on disk
	kick    chan struct{}
}

func newSaver(st *store.Store, log *slog.Logger) *saver {
	sv := &saver{st: st, log: log, pending: map[uint64]*kilnpb.Run{}, next: 1,
		kick: make(chan struct{}, 1)}
	sv.cond = sync.NewCond(&sv.mu)
	return sv
}

// mark queues a run's newest state and returns the generation that will
// hold it.
func (sv *saver) mark(r *kilnpb.Run) uint64 {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.pending[r.Id] = r
	select {
	case sv.kick <- struct{}{}:
	default:
	}
	return sv.next
}

// current returns the newest generation that holds every change so far.
func (sv *saver) current() uint64 {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if len(sv.pending) == 0 {
		return sv.saved
	}
	return sv.next
}

// wait returns once generation gen is on disk.
func (sv *saver) wait(gen uint64) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	for sv.saved < gen {
		sv.cond.Wait()
	}
}

func (sv *saver) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sv.kick:
			sv.flush()
		}
	}
}

// flush writes what is pending, retrying until the database takes it: a
// master that cannot write must not claim anything is recorded.
func (sv *saver) flush() {
	sv.flushing.Lock()
	defer sv.flushing.Unlock()
	sv.mu.Lock()
	batch, gen := sv.pending, sv.next
	if len(batch) == 0 {
		sv.mu.Unlock()
		return
	}
	sv.pending, sv.next = map[uint64]*kilnpb.Run{}, gen+1
	sv.mu.Unlock()

	runs := make([]*kilnpb.Run, 0, len(batch))
	for _, r := range batch {
		runs = append(runs, r)
	}
	for {
		err := sv.st.PutRuns(runs)
		if err == nil {
			break
		}
		sv.log.Error("save runs; retrying", "err", err)
		time.Sleep(200 * time.Millisecond)
	}

	sv.mu.Lock()
	sv.saved = gen
	sv.cond.Broadcast()
	sv.mu.Unlock()
}
