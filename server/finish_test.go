package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/scheduler"
)

// serveIn starts a master on dir; stop ends it and closes conn.
func serveIn(t *testing.T, dir string) (*Server, *grpc.ClientConn, func()) {
	t.Helper()
	s, err := New(Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		HeartbeatInterval: 500 * time.Millisecond})
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
	return s, conn, func() { conn.Close(); cancel(); <-done; s.Close() }
}

// serveLink starts a master on dir for a worker's calls.
func serveLink(t *testing.T, dir string) (*Server, kilnpb.LinkClient, func()) {
	t.Helper()
	s, conn, stop := serveIn(t, dir)
	return s, kilnpb.NewLinkClient(conn), stop
}

// joinWorker joins a worker reporting running, opens its event stream and
// returns its call context and the stream.
func joinWorker(t *testing.T, s *Server, link kilnpb.LinkClient,
	running ...uint64) (context.Context, kilnpb.Link_EventsClient) {
	t.Helper()
	resp, err := link.Join(context.Background(), &kilnpb.JoinRequest{Secret: s.WorkerSecret(),
		Name: "w", Slots: 1, Instance: "one", Running: running})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), mdWorker,
		"1", mdSession, resp.Session)
	events, err := link.Events(ctx, &kilnpb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, events
}

// startAttempt queues a one-job run, takes its assignment, accepts it and
// uploads five bytes of log.
func startAttempt(t *testing.T, s *Server, link kilnpb.LinkClient) (context.Context, uint64) {
	t.Helper()
	ctx, events := joinWorker(t, s, link)
	go s.createRun(&scheduler.Run{Pipeline: "p", Digest: "sha256:00",
		Jobs: []*scheduler.Job{{Name: "a"}}}, s.store.CreateRun)
	ev, err := events.Recv()
	if err != nil {
		t.Fatal(err)
	}
	id := ev.GetAssign().GetAttemptId()
	if _, err := link.Accept(ctx, &kilnpb.AttemptRequest{AttemptId: id}); err != nil {
		t.Fatal(err)
	}
	up, err := link.UploadLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up.Send(&kilnpb.LogUpload{AttemptId: id, Data: []byte("hello")})
	if r, err := up.CloseAndRecv(); err != nil || r.Received != 5 {
		t.Fatalf("upload: %v %v", r, err)
	}
	return ctx, id
}

func TestFinishRetriedAfterItsAnswerWasLostIsRefusedAsStale(t *testing.T) {
	t.Parallel()
	s, link, stop := serveLink(t, t.TempDir())
	defer stop()
	ctx, id := startAttempt(t, s, link)
	req := &kilnpb.FinishRequest{AttemptId: id, Ok: true, LogBytes: 5}
	if _, err := link.Finish(ctx, req); err != nil {
		t.Fatal(err)
	}
	// A worker that retries gets a final answer, not one to retry again.
	if _, err := link.Finish(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("retried Finish: %v, want FailedPrecondition", err)
	}
}

func TestFinishAfterAMasterRestartEndsTheRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, link, stop := serveLink(t, dir)
	_, id := startAttempt(t, s, link)
	stop()

	s, link, stop = serveLink(t, dir)
	defer stop()
	ctx, _ := joinWorker(t, s, link, id)
	if _, err := link.Finish(ctx, &kilnpb.FinishRequest{AttemptId: id, Ok: true,
		LogBytes: 5}); err != nil {
		t.Fatalf("Finish after the restart: %v", err)
	}
	if r, err := s.run(1); err != nil || r.Status != "succeeded" {
		t.Fatalf("run after the restart: %v %v", r, err)
	}
}

func TestFinishWithLogBytesMissingStillEndsTheJobAndSaysSo(t *testing.T) {
	t.Parallel()
	s, link, stop := serveLink(t, t.TempDir())
	defer stop()
	ctx, id := startAttempt(t, s, link)
	if _, err := link.Finish(ctx, &kilnpb.FinishRequest{AttemptId: id, Ok: true,
		LogBytes: 9}); err != nil {
		t.Fatalf("Finish with a short log: %v", err)
	}
	buf := make([]byte, 256)
	n, _ := s.logs.ReadAt(1, "a", id, buf, 0)
	if got := string(buf[:n]); got != "hello\nkiln: 4 of the 9 bytes of this attempt's log did not arrive\n" {
		t.Fatalf("log = %q", got)
	}
}
