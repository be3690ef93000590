package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kilnci/kiln/host"
)

// idleSession is how long a run's pipeline program stays up without jobs,
// waiting for the run's next job on this worker.
const idleSession = 3 * time.Second

// session is the pipeline program that runs one run's jobs on this worker.
// Jobs of one run share it, so that a wide graph does not start a process
// per job; a job that had to be stopped retires it, so that the next job
// gets a clean program and no process of the stopped one survives.
type session struct {
	once   sync.Once
	plugin *host.Plugin
	err    error

	users   int         // guarded by Worker.mu
	retired bool        // guarded by Worker.mu
	idle    *time.Timer // guarded by Worker.mu
}

// acquire returns the run's program, starting it if needed.
func (w *Worker) acquire(run uint64, digest, path string) (*session, error) {
	w.mu.Lock()
	s := w.sessions[run]
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
		s.plugin, s.err = host.Start(context.Background(), host.Config{
			Path: path, Digest: digest, Env: w.cfg.Env, Dir: w.cfg.DataDir,
			Logger: w.log,
		})
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
	w.mu.Unlock()
	for _, s := range sessions {
		if s.idle != nil {
			s.idle.Stop()
		}
		w.stopSession(s)
	}
}
