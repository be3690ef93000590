package worker

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// uploadPatience is how long an upload keeps failing before it is given up.
const uploadPatience = 2 * time.Minute

// uploader spools an attempt's log to disk and streams it to the master
// as it grows. The spool keeps every byte until the master confirmed all
// of them, so that a broken stream is resumed without loss; the master
// skips bytes it already has.
type uploader struct {
	w       *Worker
	attempt uint64
	path    string
	f       *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	written int64 // guarded by mu
	closed  bool  // guarded by mu
	done    chan struct{}
	err     error // set before done closes
	acked   int64 // set before done closes
}

func newUploader(w *Worker, attempt uint64, path string) *uploader {
	u := &uploader{w: w, attempt: attempt, path: path, done: make(chan struct{})}
	u.cond = sync.NewCond(&u.mu)
	return u
}

func (u *uploader) open() error {
	f, err := os.OpenFile(u.path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	u.f = f
	return err
}

// Write appends to the spool; it is the job log's writer.
func (u *uploader) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, err := u.f.WriteAt(p, u.written)
	u.written += int64(n)
	u.cond.Broadcast()
	return n, err
}

// close marks the end of the log and waits until the master has all of it,
// or the worker gives up. It returns the log's length.
func (u *uploader) close() (int64, error) {
	u.mu.Lock()
	u.closed = true
	n := u.written
	u.cond.Broadcast()
	u.mu.Unlock()
	<-u.done
	return n, u.err
}

func (u *uploader) remove() {
	if u.f != nil {
		u.f.Close()
	}
	os.Remove(u.path)
}

// run streams the spool, reopening the stream after failures.
func (u *uploader) run() {
	defer close(u.done)
	backoff := 50 * time.Millisecond
	failingSince := time.Time{}
	for {
		acked, err := u.stream()
		if err == nil {
			u.acked = acked
			return
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		// A master that keeps failing the upload (a full disk, say) must
		// not keep the job from finishing: the result goes on, and the
		// master notes the bytes that did not arrive.
		if !retryable(err) || u.w.life.Err() != nil || time.Since(failingSince) > uploadPatience {
			u.err = err
			return
		}
		select {
		case <-time.After(backoff):
		case <-u.w.life.Done():
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// stream sends the spool from its start until it is closed and sent.
func (u *uploader) stream() (int64, error) {
	ctx, cancel := context.WithCancel(u.w.auth(u.w.life))
	defer cancel()
	s, err := u.w.link.UploadLog(ctx)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	var sent int64
	for {
		end, closed := u.waitFor(sent)
		for sent < end {
			n, err := u.f.ReadAt(buf[:min(int64(len(buf)), end-sent)], sent)
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, err
			}
			chunk := &kilnpb.LogUpload{AttemptId: u.attempt, Offset: sent, Data: buf[:n]}
			if err := s.Send(chunk); err != nil {
				_, err = s.CloseAndRecv()
				return 0, err
			}
			sent += int64(n)
		}
		if closed {
			resp, err := s.CloseAndRecv()
			if err != nil {
				return 0, err
			}
			return resp.Received, nil
		}
	}
}

// waitFor blocks until the spool holds more than sent bytes or is closed.
func (u *uploader) waitFor(sent int64) (int64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for u.written <= sent && !u.closed {
		u.cond.Wait()
	}
	return u.written, u.closed
}
