package worker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnci/kiln/host"
)

// idleSession is how long a run's pipeline program stays up without jobs,
// waiting for the run's next job on this worker.
const idleSession = 3 * time.Second

// spareLife is how long a started spare program waits for a run before it
// is stopped; maxSpares bounds how many digests keep one.
const (
	spareLife = 10 * time.Minute
	maxSpares = 4
)

// session is the pipeline program that runs one run's jobs on this worker.
// Jobs of one run share it, so that a wide graph does not start a process
// per job; a job that had to be stopped retires it, so that the next job
// gets a clean program and no process of the stopped one survives.
type session struct {
	once   sync.Once
	plugin *host.Plugin
	out    *output
	err    error
	// started is set once plugin, out and err are, for readers outside once.
	started atomic.Bool

	users   int         // guarded by Worker.mu
	retired bool        // guarded by Worker.mu
	idle    *time.Timer // guarded by Worker.mu
}

// acquire returns the run's program, starting it if needed.
func (w *Worker) acquire(run uint64, digest, path string) (*session, error) {
	w.mu.Lock()
	s := w.sessions[run]
	if s != nil && s.started.Load() && s.plugin != nil && s.plugin.Exited() {
		// Its program died between jobs; the next job gets a new one.
		s.retired = true
		if s.users == 0 {
			go w.stopSession(s)
		}
		s = nil
	}
	if s == nil {
		s = &session{}
		w.sessions[run] = s
	}
	s.users++
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
	w.mu.Unlock()

	s.once.Do(func() {
		s.plugin, s.out, s.err = w.takeSpare(digest, path)
		s.started.Store(true)
	})
	if s.err != nil {
		w.release(run, s, true)
		return nil, fmt.Errorf("start pipeline program: %w", s.err)
	}
	return s, nil
}

// release gives the program back; retire says it must not run more jobs.
func (w *Worker) release(run uint64, s *session, retire bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.users--
	if retire || s.plugin == nil || s.plugin.Exited() {
		s.retired = true
		if w.sessions[run] == s {
			delete(w.sessions, run)
		}
	}
	if s.users > 0 {
		return
	}
	if s.retired {
		go w.stopSession(s)
		return
	}
	s.idle = time.AfterFunc(idleSession, func() {
		w.mu.Lock()
		if s.users > 0 || w.sessions[run] != s {
			w.mu.Unlock()
			return
		}
		delete(w.sessions, run)
		w.mu.Unlock()
		w.stopSession(s)
	})
}

func (w *Worker) stopSession(s *session) {
	if s.plugin != nil {
		s.plugin.Stop()
	}
}

// closeSessions stops every program, when the worker exits.
func (w *Worker) closeSessions() {
	w.mu.Lock()
	sessions := w.sessions
	w.sessions = map[uint64]*session{}
	spares := w.spares
	w.spares = map[string]*spare{}
	w.mu.Unlock()
	for _, sp := range spares {
		sp.plugin.Stop()
	}
	for _, s := range sessions {
		if s.idle != nil {
			s.idle.Stop()
		}
		w.stopSession(s)
	}
}

// spare is a program started ahead of need, so that a run does not wait
// for a program to start: starting one (exec, checksum, two key pairs and
// a TLS handshake) costs far more than running a short job. Every run still
// gets a program of its own; a spare has run nothing.
type spare struct {
	plugin  *host.Plugin
	out     *output
	started time.Time
}

// takeSpare returns a started program for the binary, the spare when there
// is one, and starts the next spare for it in the background.
func (w *Worker) takeSpare(digest, path string) (*host.Plugin, *output, error) {
	w.mu.Lock()
	sp := w.spares[digest]
	delete(w.spares, digest)
	w.mu.Unlock()
	go w.startSpare(digest, path)
	if sp != nil && !sp.plugin.Exited() {
		return sp.plugin, sp.out, nil
	}
	if sp != nil {
		sp.plugin.Stop()
	}
	return w.startProgram(digest, path)
}

func (w *Worker) startProgram(digest, path string) (*host.Plugin, *output, error) {
	out := newOutput(w.log)
	p, err := host.Start(w.life, host.Config{
		Path: path, Digest: digest, Env: w.cfg.Env, Dir: w.cfg.DataDir, Logger: w.log,
		Output: out,
	})
	return p, out, err
}

// startSpare starts a spare for the binary unless one exists, stopping the
// oldest spare when there are too many.
func (w *Worker) startSpare(digest, path string) {
	p, out, err := w.startProgram(digest, path)
	if err != nil {
		w.log.Debug("spare program did not start", "digest", digest, "err", err)
		return
	}
	var stop []*host.Plugin
	w.mu.Lock()
	if w.spares[digest] != nil || w.life.Err() != nil {
		stop = append(stop, p)
	} else {
		w.spares[digest] = &spare{plugin: p, out: out, started: time.Now()}
		stop = append(stop, w.trimSparesLocked()...)
	}
	w.mu.Unlock()
	for _, p := range stop {
		p.Stop()
	}
}

// trimSparesLocked drops spares that waited too long, and the oldest ones
// past maxSpares. w.mu must be held.
func (w *Worker) trimSparesLocked() []*host.Plugin {
	var stop []*host.Plugin
	for len(w.spares) > 0 {
		oldest := ""
		for d, sp := range w.spares {
			if oldest == "" || sp.started.Before(w.spares[oldest].started) {
				oldest = d
			}
		}
		if len(w.spares) <= maxSpares && time.Since(w.spares[oldest].started) < spareLife {
			break
		}
		stop = append(stop, w.spares[oldest].plugin)
		delete(w.spares, oldest)
	}
	return stop
}
