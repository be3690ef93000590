package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/store"
)

// link serves workers.
type link struct {
	kilnpb.UnimplementedLinkServer
	s *Server
}

func (l *link) Join(ctx context.Context, req *kilnpb.JoinRequest) (*kilnpb.JoinResponse, error) {
	s := l.s
	if subtle.ConstantTimeCompare([]byte(req.Secret), []byte(s.secret)) != 1 {
		s.log.Warn("worker refused: wrong secret", "worker", req.Name)
		return nil, status.Error(codes.PermissionDenied,
			"wrong worker secret: use the master's DATA/worker.secret")
	}
	if err := scheduler.CheckWorkerName(req.Name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	session := randomHex(16)
	s.mu.Lock()
	w, revoked, err := s.eng.Join(scheduler.JoinInfo{
		Name: req.Name, Hostname: req.Hostname, OS: req.Goos, Arch: req.Goarch,
		Labels: req.Labels, Slots: int(req.Slots), Session: session, Instance: req.Instance,
		Running: req.Running,
	}, s.now())
	gen := s.applyLocked()
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("worker refused: name taken", "worker", req.Name, "hostname", req.Hostname,
			"holder", w.Hostname)
		return nil, status.Errorf(codes.AlreadyExists, "worker name %q is held by a live worker "+
			"on %s: give this worker another --name", req.Name, w.Hostname)
	}
	s.saver.wait(gen)

	s.log.Info("worker joined", "worker", w.Name, "worker_id", w.ID, "hostname", w.Hostname,
		"slots", w.Slots, "running", len(req.Running), "revoked", len(revoked))
	return &kilnpb.JoinResponse{WorkerId: w.ID, Session: session,
		HeartbeatMs: s.cfg.HeartbeatInterval.Milliseconds(), Revoked: revoked}, nil
}

func (l *link) Heartbeat(ctx context.Context,
	req *kilnpb.HeartbeatRequest) (*kilnpb.HeartbeatResponse, error) {
	s := l.s
	id, err := s.workerOf(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	before, _ := s.eng.Worker(id)
	revoked, err := s.eng.Heartbeat(id, before.Session, scheduler.Heartbeat{
		Healthy: req.Healthy, Reason: req.Reason, Draining: req.Draining, Running: req.Running,
	}, s.now())
	s.applyLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "unknown worker session: join again")
	}
	if before.Healthy != req.Healthy || before.Draining != req.Draining {
		s.log.Info("worker health changed", "worker", before.Name, "healthy", req.Healthy,
			"reason", req.Reason, "draining", req.Draining)
	}
	return &kilnpb.HeartbeatResponse{Revoked: revoked}, nil
}

func (l *link) Events(_ *kilnpb.EventsRequest, stream kilnpb.Link_EventsServer) error {
	s := l.s
	id, err := s.workerOf(stream.Context())
	if err != nil {
		return err
	}
	ws := newWorkerStream()
	s.mu.Lock()
	w, _ := s.eng.Worker(id)
	if old := s.streams[id]; old != nil {
		old.close()
	}
	s.streams[id] = ws
	err = s.eng.Connect(id, w.Session, s.now())
	if err != nil {
		delete(s.streams, id)
	}
	s.applyLocked()
	s.mu.Unlock()
	if err != nil {
		return status.Error(codes.Unauthenticated, "unknown worker session: join again")
	}
	s.log.Info("worker connected", "worker", w.Name, "worker_id", id)

	err = l.pump(stream, ws)

	s.mu.Lock()
	if s.streams[id] == ws {
		delete(s.streams, id)
		s.eng.Disconnect(id, w.Session, s.now())
	}
	s.applyLocked()
	s.mu.Unlock()
	s.log.Info("worker disconnected", "worker", w.Name, "worker_id", id)
	return err
}

// pump sends a worker's events until the stream or the master ends.
func (l *link) pump(stream kilnpb.Link_EventsServer, ws *workerStream) error {
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-ws.done:
			return status.Error(codes.Unavailable, "the worker's stream was replaced or the master stops")
		case ev := <-ws.events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

func (l *link) Accept(ctx context.Context,
	req *kilnpb.AttemptRequest) (*kilnpb.AcceptResponse, error) {
	s := l.s
	id, err := s.workerOf(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	err = s.eng.Accept(req.AttemptId, id, s.now())
	s.applyLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, attemptError(req.AttemptId, err)
	}
	return &kilnpb.AcceptResponse{}, nil
}

func attemptError(attempt uint64, err error) error {
	if errors.Is(err, scheduler.ErrStale) {
		return status.Errorf(codes.FailedPrecondition,
			"attempt %d is no longer yours: it was cancelled or given to another worker", attempt)
	}
	return status.Error(codes.Internal, err.Error())
}

func (l *link) UploadLog(stream kilnpb.Link_UploadLogServer) error {
	s := l.s
	id, err := s.workerOf(stream.Context())
	if err != nil {
		return err
	}
	var received int64
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&kilnpb.UploadLogResponse{Received: received})
		}
		if err != nil {
			return err
		}
		ref, ok := s.attemptRef(chunk.AttemptId, id)
		if !ok {
			return status.Errorf(codes.NotFound, "attempt %d is not one of this worker's", chunk.AttemptId)
		}
		received, err = s.logs.Append(ref.run, ref.job, chunk.AttemptId, chunk.Offset, chunk.Data)
		if errors.Is(err, store.ErrLogGap) {
			return status.Errorf(codes.OutOfRange, "log of attempt %d: resend from %d",
				chunk.AttemptId, received)
		}
		if err != nil {
			return status.Errorf(codes.Internal, "log of attempt %d: %v", chunk.AttemptId, err)
		}
	}
}

func (l *link) Finish(ctx context.Context, req *kilnpb.FinishRequest) (*kilnpb.FinishResponse, error) {
	s := l.s
	id, err := s.workerOf(ctx)
	if err != nil {
		return nil, err
	}
	ref, _ := s.attemptRef(req.AttemptId, id)
	// The worker uploads the whole log before it finishes. A log still
	// short here lost bytes on the way for good (the worker keeps no copy
	// after its upload ended): the result stands, and the log says so.
	if got := s.logs.Received(ref.run, ref.job, req.AttemptId); got < req.LogBytes {
		note := fmt.Sprintf("kiln: %d of the %d bytes of this attempt's log did not arrive",
			req.LogBytes-got, req.LogBytes)
		if err := s.logs.Note(ref.run, ref.job, req.AttemptId, note); err != nil {
			s.log.Error("write log note", "run_id", ref.run, "job", ref.job, "err", err)
		}
		s.log.Warn("log incomplete", "run_id", ref.run, "job", ref.job,
			"attempt", req.AttemptId, "received", got, "sent", req.LogBytes)
	}
	s.mu.Lock()
	err = s.eng.Finish(req.AttemptId, id, scheduler.Result{OK: req.Ok, Error: req.Error,
		Outputs: req.Outputs}, s.now())
	gen := s.applyLocked()
	s.mu.Unlock()
	s.logs.Close(ref.run, ref.job, req.AttemptId)
	if err != nil {
		return nil, attemptError(req.AttemptId, err)
	}
	s.saver.wait(gen)
	return &kilnpb.FinishResponse{}, nil
}

func (l *link) FetchBinary(req *kilnpb.FetchBinaryRequest,
	stream kilnpb.Link_FetchBinaryServer) error {
	digest, err := l.binaryFor(stream.Context(), req)
	if err != nil {
		return err
	}
	f, size, err := l.s.cache.Open(digest)
	if err != nil {
		return status.Errorf(codes.NotFound, "binary %s: %v", digest, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	first := true
	for {
		n, err := f.Read(buf)
		if n > 0 {
			chunk := &kilnpb.BinaryChunk{Data: buf[:n]}
			if first {
				chunk.Size, chunk.Digest, first = size, digest, false
			}
			if err := stream.Send(chunk); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "read binary %s: %v", digest, err)
		}
	}
}

// binaryFor picks the binary a worker gets: the version's own, or the
// variant built for the worker's platform.
func (l *link) binaryFor(ctx context.Context, req *kilnpb.FetchBinaryRequest) (string, error) {
	if req.Pipeline == "" || req.Goos == "" || req.Goarch == "" {
		return req.Digest, nil
	}
	v, err := l.s.reg.Version(req.Pipeline, req.Version)
	if err != nil || v.Digest != req.Digest {
		return "", status.Errorf(codes.NotFound, "pipeline %q has no version %d with binary %s",
			req.Pipeline, req.Version, req.Digest)
	}
	digest, err := l.s.reg.Variant(ctx, req.Pipeline, req.Version, req.Goos, req.Goarch)
	if err != nil {
		return "", status.Errorf(codes.FailedPrecondition, "build for %s/%s: %v",
			req.Goos, req.Goarch, err)
	}
	return digest, nil
}
