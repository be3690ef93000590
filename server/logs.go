package server

import (
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/scheduler"
)

// logSettle is how long a follower waits for the last bytes of an
// attempt that ended without its worker's word (lost or revoked).
const logSettle = 2 * time.Second

func (m *master) Logs(req *kilnpb.LogsRequest, stream kilnpb.Master_LogsServer) error {
	r, err := m.s.run(req.RunId)
	if err != nil {
		return userError(err)
	}
	jobs := r.Jobs
	if req.Job != "" {
		jobs = nil
		for _, j := range r.Jobs {
			if j.Name == req.Job {
				jobs = append(jobs, j)
			}
		}
		if len(jobs) == 0 {
			return status.Errorf(codes.NotFound, "run %d has no job %q", r.Id, req.Job)
		}
	}
	for _, j := range jobs {
		if err := m.jobLog(stream, r.Id, j.Name, req.Follow); err != nil {
			return err
		}
	}
	return nil
}

// jobLog streams one job's log, attempt after attempt. Following, it waits
// for the job to start, for new bytes, and for the job to end.
func (m *master) jobLog(stream kilnpb.Master_LogsServer, run uint64, job string,
	follow bool) error {
	ctx := stream.Context()
	sent := map[uint64]int64{}
	buf := make([]byte, 256<<10)
	for {
		wake := m.s.logs.Wait(run, job)
		changed := m.s.watch(run)
		j, err := m.job(run, job)
		if err != nil {
			return err
		}
		for i, a := range j.History {
			if _, seen := sent[a.Id]; !seen && len(j.History) > 1 {
				header := fmt.Sprintf("── attempt %d on %s ──\n", i+1, a.Worker)
				if err := stream.Send(&kilnpb.LogLine{Job: job, Data: []byte(header)}); err != nil {
					return err
				}
				sent[a.Id] = 0
			}
			if err := m.copyLog(stream, run, job, a.Id, sent, buf); err != nil {
				return err
			}
		}
		if !follow || (scheduler.Status(j.Status).Final() && m.settled(j)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.s.stopping:
			return errStopping
		case <-wake:
		case <-changed:
		case <-time.After(logSettle / 2):
		}
	}
}

func (m *master) copyLog(stream kilnpb.Master_LogsServer, run uint64, job string,
	attempt uint64, sent map[uint64]int64, buf []byte) error {
	for {
		n, err := m.s.logs.ReadAt(run, job, attempt, buf, sent[attempt])
		if n > 0 {
			sent[attempt] += int64(n)
			if serr := stream.Send(&kilnpb.LogLine{Job: job, Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "read log: %v", err)
		}
	}
}

// settled reports whether no more log bytes are to be expected for a job
// that ended: its last attempt finished or ended a while ago.
func (m *master) settled(j *kilnpb.Job) bool {
	if len(j.History) == 0 {
		return true
	}
	last := j.History[len(j.History)-1]
	return m.s.now().Sub(fromMS(last.Finished)) >= logSettle ||
		last.Status == string(scheduler.AttemptOK) || last.Status == string(scheduler.AttemptFailed)
}

func (m *master) job(run uint64, name string) (*kilnpb.Job, error) {
	r, err := m.s.run(run)
	if err != nil {
		return nil, userError(err)
	}
	for _, j := range r.Jobs {
		if j.Name == name {
			return j, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "run %d has no job %q", run, name)
}
