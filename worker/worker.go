// Package worker is the worker's process wiring: it joins the master,
// heartbeats, takes assignments from its event stream and runs them
// through package host, and comes back on its own when the master or the
// network goes away.
//
// Two contexts rule a worker's life, kept apart on purpose: the one given
// to Run says the worker is stopping (it drains: takes no new work,
// finishes what runs, keeps heartbeating meanwhile), and each attempt has
// its own that says this job must stop (cancelled, timed out, or given to
// another worker).
package worker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// Config is a worker's configuration. Zero fields take the documented
// defaults; it must not change once New has it.
type Config struct {
	// Master is the master's gRPC address. Required.
	Master string
	// Secret is the shared worker secret. Required.
	Secret string
	// Name identifies the worker; default the hostname.
	Name string
	// DataDir holds binaries, workspaces and log spools. Required.
	DataDir string
	// Labels are matched against jobs' labels.
	Labels map[string]string
	// Slots is how many jobs run at once; default 1.
	Slots int
	// Grace is how long a cancelled job gets to stop before its program is
	// killed; default 10s.
	Grace time.Duration
	// MinFreeDisk is the free space below which the work folder makes the
	// worker unhealthy; default 512 MiB.
	MinFreeDisk uint64
	// Env is the environment of pipeline programs; nil means the default:
	// a few variables of the worker's own that builds need (PATH, HOME, Go's
	// settings) and nothing else, so that no secret of the worker's leaks.
	Env []string
	// Logger gets one line per state change; nil discards.
	Logger *slog.Logger
}

// Worker is a running worker.
type Worker struct {
	cfg Config
	log *slog.Logger

	conn *grpc.ClientConn
	link kilnpb.LinkClient
	bins *binaries

	// wsMu orders the making of job folders and the removal of run
	// folders.
	wsMu sync.Mutex

	mu       sync.Mutex
	id       uint64              // guarded by mu
	session  string              // guarded by mu
	draining bool                // guarded by mu
	attempts map[uint64]*attempt // guarded by mu: accepted, not yet finished
	sessions map[uint64]*session // guarded by mu: pipeline programs by run
	spares   map[string]*spare   // guarded by mu: started programs by digest
	interval time.Duration       // guarded by mu
	joined   bool                // guarded by mu: it joined at least once
	instance string              // random, for this process
	wake     chan struct{}       // closed when attempts change

	wg sync.WaitGroup

	// life ends when the worker must stop at once: connections close and
	// results that could not be reported are given up.
	life context.Context
	kill context.CancelFunc
	// hb asks the heartbeat loop for a heartbeat now.
	hb chan struct{}
	// lock holds the data folder while the worker lives.
	lock *os.File
}

// New checks the configuration and prepares the data folder. Run joins.
func New(cfg Config) (*Worker, error) {
	if cfg.Master == "" || cfg.Secret == "" || cfg.DataDir == "" {
		return nil, errors.New("worker: the master's address, the secret and a data folder are required")
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	cfg.Slots = max(cfg.Slots, 1)
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.MinFreeDisk == 0 {
		cfg.MinFreeDisk = 512 << 20
	}
	if cfg.Env == nil {
		cfg.Env = DefaultEnv()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"bin", "work", "spool"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("worker: data folder: %w", err)
		}
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Master,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("worker: master address %q: %w", cfg.Master, err)
	}
	w := &Worker{lock: lock, cfg: cfg, log: cfg.Logger, conn: conn, link: kilnpb.NewLinkClient(conn),
		attempts: map[uint64]*attempt{}, sessions: map[uint64]*session{},
		spares: map[string]*spare{},
		wake:   make(chan struct{}), hb: make(chan struct{}, 1)}
	w.life, w.kill = context.WithCancel(context.Background())
	w.instance = randomID()
	w.bins = &binaries{dir: filepath.Join(cfg.DataDir, "bin"), link: w.link, auth: w.auth,
		life: w.life, variants: map[string]string{}}
	return w, nil
}

// DefaultEnv is the environment pipeline programs get by default.
func DefaultEnv() []string {
	keep := []string{"PATH", "HOME", "USER", "LANG", "TMPDIR", "TZ", "SSL_CERT_FILE",
		"GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOFLAGS", "GONOSUMDB", "GOPRIVATE",
		"GOTOOLCHAIN", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
		"GIT_COMMITTER_EMAIL"}
	var env []string
	for _, k := range keep {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Errors that end Run: the master refused the worker for good.
var (
	// ErrSecret is returned when the master refuses the secret.
	ErrSecret = errors.New("worker: the master refused the worker secret")
	// ErrRefused is returned when the master refuses the worker's name or
	// announcement at its first join.
	ErrRefused = errors.New("worker: the master refused to let the worker join")
)

// Run serves the master until ctx ends, then drains: it takes no new work,
// finishes the jobs it runs and reports them, and returns. Kill ends the
// drain early. Connection failures are retried with backoff; only a
// refused secret ends Run early.
func (w *Worker) Run(ctx context.Context) error {
	defer w.lock.Close()
	defer w.conn.Close()
	defer w.kill()

	done := make(chan error, 1)
	go func() { done <- w.connectLoop(w.life) }()

	select {
	case err := <-done:
		w.kill() // no spare may start after the sessions are closed
		w.stopAll("the worker stops")
		w.closeSessions()
		return err
	case <-ctx.Done():
	}
	w.drain()
	w.kill()
	<-done
	w.stopAll("the worker was killed")
	w.closeSessions()
	return nil
}

// Kill makes the worker stop at once: running jobs are cancelled and their
// programs killed. A draining Run returns soon after.
func (w *Worker) Kill() { w.kill() }

// drain waits, heartbeating as draining, until no attempt is left.
func (w *Worker) drain() {
	w.mu.Lock()
	w.draining = true
	n := len(w.attempts)
	w.mu.Unlock()
	w.log.Info("worker draining", "running", n)
	select {
	case w.hb <- struct{}{}:
	default:
	}
	for {
		w.mu.Lock()
		n, wake := len(w.attempts), w.wake
		w.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-wake:
		case <-w.life.Done():
			return
		}
	}
}

// connectLoop joins and serves, rejoining after failures with backoff.
func (w *Worker) connectLoop(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		joined, err := w.session1(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrSecret) || errors.Is(err, ErrRefused) {
			return err
		}
		if joined {
			// The master was there a moment ago: come back fast, before the
			// leases of the running attempts run out.
			backoff = 100 * time.Millisecond
		}
		w.log.Warn("connection to master lost; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + rand.N(backoff/2)):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// session1 is one connection's life: join, then heartbeat and take events
// until one of them fails. It reports whether the join succeeded.
func (w *Worker) session1(ctx context.Context) (bool, error) {
	if err := w.join(ctx); err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- w.heartbeatLoop(ctx) }()
	go func() { errc <- w.events(ctx) }()
	err := <-errc
	cancel()
	<-errc
	return true, err
}

func (w *Worker) join(ctx context.Context) error {
	host, _ := os.Hostname()
	w.mu.Lock()
	running := w.runningLocked()
	w.mu.Unlock()
	resp, err := w.link.Join(ctx, &kilnpb.JoinRequest{
		Secret: w.cfg.Secret, Name: w.cfg.Name, Hostname: host, Goos: runtime.GOOS,
		Goarch: runtime.GOARCH, Labels: w.cfg.Labels, Slots: uint32(w.cfg.Slots),
		Running: running, Instance: w.instance,
	})
	switch status.Code(err) {
	case codes.PermissionDenied:
		return fmt.Errorf("%w: %s", ErrSecret, status.Convert(err).Message())
	case codes.InvalidArgument, codes.AlreadyExists:
		// A worker that was in the table before may find its own old
		// connection still holding its name for a moment; it retries.
		w.mu.Lock()
		joined := w.joined
		w.mu.Unlock()
		if !joined {
			return fmt.Errorf("%w: %s", ErrRefused, status.Convert(err).Message())
		}
	}
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	w.mu.Lock()
	w.id, w.session, w.joined = resp.WorkerId, resp.Session, true
	w.interval = time.Duration(resp.HeartbeatMs) * time.Millisecond
	w.mu.Unlock()
	for _, id := range resp.Revoked {
		w.revoke(id, "the master does not know this attempt any more")
	}
	w.log.Info("joined master", "master", w.cfg.Master, "worker_id", resp.WorkerId,
		"running", len(running))
	return nil
}

// auth adds the worker's session to a call.
func (w *Worker) auth(ctx context.Context) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	return metadata.AppendToOutgoingContext(ctx, "kiln-worker", fmt.Sprint(w.id),
		"kiln-session", w.session)
}

func (w *Worker) heartbeatLoop(ctx context.Context) error {
	for {
		w.mu.Lock()
		interval := w.interval
		w.mu.Unlock()
		if err := w.heartbeat(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		case <-w.hb:
		}
	}
}

func (w *Worker) heartbeat(ctx context.Context) error {
	healthy, reason := w.health()
	w.mu.Lock()
	for _, p := range w.trimSparesLocked() {
		go p.Stop()
	}
	req := &kilnpb.HeartbeatRequest{Healthy: healthy, Reason: reason,
		Running: w.runningLocked(), Draining: w.draining}
	w.mu.Unlock()
	cctx, cancel := context.WithTimeout(w.auth(ctx), 5*time.Second)
	defer cancel()
	resp, err := w.link.Heartbeat(cctx, req)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	for _, id := range resp.Revoked {
		w.revoke(id, "the master gave this attempt to another worker or cancelled it")
	}
	return nil
}

// health reports low disk in the work folder.
func (w *Worker) health() (bool, string) {
	free, err := freeDisk(w.cfg.DataDir)
	if err != nil {
		return false, "cannot read free disk space: " + err.Error()
	}
	if free < w.cfg.MinFreeDisk {
		return false, fmt.Sprintf("low disk: %d MiB free in %s, need %d MiB", free>>20,
			w.cfg.DataDir, w.cfg.MinFreeDisk>>20)
	}
	return true, ""
}

func (w *Worker) events(ctx context.Context) error {
	stream, err := w.link.Events(w.auth(ctx), &kilnpb.EventsRequest{})
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		switch e := ev.Event.(type) {
		case *kilnpb.WorkerEvent_Assign:
			w.start(e.Assign)
		case *kilnpb.WorkerEvent_Revoke:
			w.revoke(e.Revoke.AttemptId, e.Revoke.Reason)
		}
	}
}

// runningLocked lists the attempts this worker holds. w.mu must be held.
func (w *Worker) runningLocked() []uint64 {
	ids := make([]uint64, 0, len(w.attempts))
	for id := range w.attempts {
		ids = append(ids, id)
	}
	return ids
}

func (w *Worker) wakeLocked() {
	close(w.wake)
	w.wake = make(chan struct{})
}

// retryable reports whether a call that failed with err may succeed later.
// It is the one place that decides so.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unauthenticated, codes.Internal,
		codes.Unknown, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

func randomID() string {
	b := make([]byte, 8)
	crand.Read(b)
	return hex.EncodeToString(b)
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
