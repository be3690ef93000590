// Package server is the master's process wiring: the gRPC services for the
// CLI (Master) and for workers (Link), the HTTP port, and the loop that
// applies the scheduler's decisions. The decisions themselves are the
// scheduler's; this package moves them over the network and onto disk.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/cache"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/store"
	"github.com/kilnci/kiln/web"
)

// Config is the master's configuration. Zero fields take the documented
// defaults. It must not change once New has it.
type Config struct {
	// DataDir holds the database, the cache, logs and the secrets.
	// Required.
	DataDir string
	// GRPCAddr and HTTPAddr are where to listen. Defaults 127.0.0.1:7070
	// and 127.0.0.1:7071; port 0 picks a free port.
	GRPCAddr string
	HTTPAddr string
	// HeartbeatInterval is how often workers report. A worker that is
	// silent for two intervals is lost. Default 2s.
	HeartbeatInterval time.Duration
	// AcceptTimeout is how long an assignment waits to be accepted.
	// Default 5s.
	AcceptTimeout time.Duration
	// LogCap bounds each job's log. Default 64 MiB.
	LogCap int64
	// TriggerInterval is how often the master looks for schedule slots
	// that came, polls that are due and triggers that were queued.
	// Default 1s.
	TriggerInterval time.Duration
	// GoProxy is GOPROXY for pipeline builds. Default "off": builds use
	// only the module cache.
	GoProxy string
	// Logger gets one line per state change; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is a running master.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	store   *store.Store
	logs    *store.Logs
	cache   *cache.Cache
	reg     *registry.Registry
	saver   *saver
	metrics *metrics
	trig    *triggers
	// stopTriggers ends the trigger loop; triggersDone is closed when it
	// has ended.
	stopTriggers context.CancelFunc
	triggersDone chan struct{}
	// hookSlots holds a token per webhook body being read.
	hookSlots chan struct{}

	secret string
	token  string

	// stopping is closed when the master starts to stop, to end the
	// streams of clients that follow runs and logs.
	stopping     chan struct{}
	stoppingOnce sync.Once

	grpcLis net.Listener
	httpLis net.Listener
	grpc    *grpc.Server
	http    *http.Server
	// selfConn is the dashboard's connection to the gRPC port.
	selfConn *grpc.ClientConn

	mu      sync.Mutex
	eng     *scheduler.Engine        // guarded by mu
	streams map[uint64]*workerStream // guarded by mu: by worker ID
	watches map[uint64]chan struct{} // guarded by mu: closed when a run changes
	// owners maps every attempt handed out to its job and worker, so that
	// its log is taken even after it stopped being live.
	owners map[uint64]owner // guarded by mu
	// ended keeps the last runs that ended, so that their final state is
	// seen before the saver has written it.
	ended      map[uint64]*kilnpb.Run // guarded by mu
	endedOrder []uint64               // guarded by mu: oldest first
}

// deliveryMemory is how long webhook delivery IDs are kept to recognise
// redeliveries.
const deliveryMemory = 30 * 24 * time.Hour

// keepEnded is how many ended runs stay in memory.
const keepEnded = 256

type owner struct {
	run    uint64
	job    string
	worker string
}

// New opens the data folder, reconciles the runs that had not ended, and
// listens on both ports. Serve starts answering.
func New(cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, stopping: make(chan struct{}),
		streams: map[uint64]*workerStream{}, watches: map[uint64]chan struct{}{},
		owners: map[uint64]owner{}, ended: map[uint64]*kilnpb.Run{},
		hookSlots: make(chan struct{}, hookReaders)}
	if err := s.open(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:7070"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:7071"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.TriggerInterval <= 0 {
		cfg.TriggerInterval = time.Second
	}
	if cfg.GoProxy == "" {
		cfg.GoProxy = "off"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

func (s *Server) open() error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: data folder: %w", err)
	}
	var err error
	if s.secret, err = ensureSecret(filepath.Join(s.cfg.DataDir, "worker.secret")); err != nil {
		return err
	}
	if s.token, err = ensureSecret(filepath.Join(s.cfg.DataDir, "admin.token")); err != nil {
		return err
	}
	if s.store, err = store.Open(filepath.Join(s.cfg.DataDir, "kiln.db")); err != nil {
		return err
	}
	s.logs = store.NewLogs(filepath.Join(s.cfg.DataDir, "logs"), s.cfg.LogCap)
	if s.cache, err = cache.New(filepath.Join(s.cfg.DataDir, "cache"), s.store.DB()); err != nil {
		return err
	}
	s.reg, err = registry.New(registry.Config{
		DB: s.store.DB(), Cache: s.cache, DataDir: s.cfg.DataDir,
		Build:  registry.BuildConfig{GOPROXY: s.cfg.GoProxy},
		Logger: s.log.With("subsystem", "registry"), Now: s.now,
	})
	if err != nil {
		return err
	}
	s.eng = scheduler.New(scheduler.Config{
		TTL: 2 * s.cfg.HeartbeatInterval, AcceptTimeout: s.cfg.AcceptTimeout,
		NextAttemptID: s.nextAttemptID,
	})
	s.saver = newSaver(s.store, s.log)
	s.metrics = newMetrics(s)
	s.trig = newTriggers(s)
	if _, err := s.store.PruneDeliveries(ms(s.now().Add(-deliveryMemory))); err != nil {
		return err
	}
	suspended, err := s.store.Suspended()
	if err != nil {
		return err
	}
	s.eng.Presuspend(suspended)
	return s.restore()
}

// nextAttemptID is the engine's ID source. A failing database leaves the
// master unable to record anything, so it panics rather than hand out an
// ID that may repeat.
func (s *Server) nextAttemptID() uint64 {
	id, err := s.store.NextAttemptID()
	if err != nil {
		panic(fmt.Sprintf("server: no attempt ID: %v", err))
	}
	return id
}

// restore gives the engine back every run that had not ended. Their live
// attempts wait one TTL for their workers to rejoin and claim them.
func (s *Server) restore() error {
	runs, err := s.store.Unfinished()
	if err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range runs {
		for _, j := range p.Jobs {
			for _, a := range j.History {
				s.owners[a.Id] = owner{p.Id, j.Name, a.Worker}
			}
		}
		s.eng.Restore(runFromProto(p), now)
		s.log.Info("run restored", "run_id", p.Id, "pipeline", p.Pipeline, "status", p.Status)
	}
	s.applyLocked()
	return nil
}

func (s *Server) listen() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("server: listen for gRPC on %s: %w", s.cfg.GRPCAddr, err)
	}
	if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("server: listen for HTTP on %s: %w", s.cfg.HTTPAddr, err)
	}
	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.authUnary),
		grpc.ChainStreamInterceptor(s.authStream),
		grpc.MaxRecvMsgSize(8<<20),
	)
	kilnpb.RegisterMasterServer(s.grpc, &master{s: s})
	kilnpb.RegisterLinkServer(s.grpc, &link{s: s})
	dashboard, err := s.dashboard()
	if err != nil {
		return err
	}
	s.http = &http.Server{Handler: s.httpHandler(dashboard), ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// dashboard makes the web dashboard, a client of this master's own gRPC
// port over loopback: it sees exactly what the API shows.
func (s *Server) dashboard() (http.Handler, error) {
	addr := s.grpcLis.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	conn, err := grpc.NewClient(net.JoinHostPort(host, strconv.Itoa(addr.Port)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("server: connect the dashboard: %w", err)
	}
	s.selfConn = conn
	return web.New(web.Config{API: kilnpb.NewMasterClient(conn), Token: s.token,
		Logger: s.log.With("subsystem", "dashboard"), Now: s.now})
}

// GRPCAddr returns the address the gRPC port listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr returns the address the HTTP port listens on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// WorkerSecret returns the secret workers join with.
func (s *Server) WorkerSecret() string { return s.secret }

// AdminToken returns the token mutating calls need.
func (s *Server) AdminToken() string { return s.token }

// Serve answers on both ports until ctx ends, then stops.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 3)
	go func() { errc <- s.grpc.Serve(s.grpcLis) }()
	go func() { errc <- s.http.Serve(s.httpLis) }()
	// The saver outlives the ports: calls that are finishing while the
	// master stops wait for it.
	saverCtx, stopSaver := context.WithCancel(context.Background())
	defer stopSaver()
	go s.saver.run(saverCtx)
	trigCtx, stopTriggers := context.WithCancel(context.Background())
	s.stopTriggers, s.triggersDone = stopTriggers, make(chan struct{})
	go func() {
		defer close(s.triggersDone)
		s.trig.run(trigCtx, s.cfg.TriggerInterval)
	}()
	tick := time.NewTicker(max(s.cfg.HeartbeatInterval/8, 20*time.Millisecond))
	defer tick.Stop()
	s.log.Info("master serving", "grpc_addr", s.GRPCAddr(), "http_addr", s.HTTPAddr())

	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
				err = nil
			}
			s.shutdown()
			return err
		case <-tick.C:
			s.tick()
		}
	}
}

func (s *Server) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eng.Tick(s.now())
	s.applyLocked()
}

// shutdown stops both ports and waits for what was accepted to be saved.
func (s *Server) shutdown() {
	s.log.Info("master stopping")
	s.stoppingOnce.Do(func() { close(s.stopping) })
	// Builds that triggers started end with the loop; their triggers stay
	// queued for the next start.
	s.stopTriggers()
	select {
	case <-s.triggersDone:
	case <-time.After(10 * time.Second):
		s.log.Warn("trigger loop did not stop within 10s; stopping without it")
	}
	s.mu.Lock()
	for _, ws := range s.streams {
		ws.close()
	}
	s.mu.Unlock()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.http.Shutdown(ctx)
	s.saver.flush()
	s.log.Info("master stopped")
}

// errStopping ends the streams of clients when the master stops; clients
// that follow a run reconnect once it is back.
var errStopping = status.Error(codes.Unavailable, "the master is stopping")

// Close releases the database. Call it after Serve returns.
func (s *Server) Close() error {
	if s.grpcLis != nil && s.grpc == nil {
		s.grpcLis.Close()
	}
	if s.httpLis != nil && s.http == nil {
		s.httpLis.Close()
	}
	if s.selfConn != nil {
		s.selfConn.Close()
	}
	if s.reg != nil {
		s.reg.Close()
	}
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}
