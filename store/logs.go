package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ErrLogGap is returned when a log chunk starts past the bytes received so
// far: the sender must resend from the offset the error names.
var ErrLogGap = errors.New("store: log chunk leaves a gap")

// Logs keeps job logs as append-only files, one per attempt:
// <dir>/<run>/<job>/<attempt>.log. A job's attempts together hold at most
// Cap bytes of its output; past that a visible mark says how much was
// dropped.
type Logs struct {
	dir string
	cap int64

	mu    sync.Mutex
	open  map[attemptKey]*attemptLog // guarded by mu
	jobs  map[jobKey]*jobLog         // guarded by mu
	waits map[jobKey]chan struct{}   // guarded by mu: closed on each write
}

type jobKey struct {
	run uint64
	job string
}

type attemptKey struct {
	jobKey
	attempt uint64
}

type attemptLog struct {
	f *os.File
	// mark holds received on disk, so that a master that restarts knows
	// how much of a stream it has and does not take a resent part twice.
	mark *os.File
	// received counts the bytes of the worker's stream, kept or dropped;
	// offsets of chunks refer to it.
	received int64
}

type jobLog struct {
	kept      int64
	truncated bool
}

// NewLogs keeps logs below dir, capping each job at cap bytes (0: 64 MiB).
func NewLogs(dir string, cap int64) *Logs {
	if cap <= 0 {
		cap = 64 << 20
	}
	return &Logs{dir: dir, cap: cap, open: map[attemptKey]*attemptLog{},
		jobs: map[jobKey]*jobLog{}, waits: map[jobKey]chan struct{}{}}
}

// Append adds a chunk of an attempt's output that starts at offset in the
// worker's stream. A chunk already received, in whole or in part, is
// skipped as far as it was; one past the end fails with ErrLogGap. It
// returns the stream's length received so far.
func (l *Logs) Append(run uint64, job string, attempt uint64, offset int64,
	data []byte) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := attemptKey{jobKey{run, job}, attempt}
	a, err := l.attemptLocked(k)
	if err != nil {
		return 0, err
	}
	if offset > a.received {
		return a.received, fmt.Errorf("%w: got offset %d, have %d", ErrLogGap, offset, a.received)
	}
	data = data[min(a.received-offset, int64(len(data))):]
	if len(data) == 0 {
		return a.received, nil
	}
	if err := l.keepLocked(k, a, data); err != nil {
		return a.received, err
	}
	a.received += int64(len(data))
	if err := a.saveReceived(); err != nil {
		return a.received, err
	}
	l.wakeLocked(k.jobKey)
	return a.received, nil
}

// keepLocked writes data within the job's cap and marks the cut once.
func (l *Logs) keepLocked(k attemptKey, a *attemptLog, data []byte) error {
	j := l.jobLocked(k.jobKey)
	room := l.cap - j.kept
	if int64(len(data)) <= room {
		j.kept += int64(len(data))
		_, err := a.f.Write(data)
		return err
	}
	if room > 0 {
		if _, err := a.f.Write(data[:room]); err != nil {
			return err
		}
		j.kept += room
	}
	if !j.truncated {
		j.truncated = true
		mark := fmt.Sprintf("\n[kiln: log truncated: the job's log is capped at %d bytes; "+
			"the rest of its output was dropped]\n", l.cap)
		_, err := a.f.WriteString(mark)
		return err
	}
	return nil
}

// Note writes a line of the master's own into an attempt's log, outside the
// worker's stream and its cap.
func (l *Logs) Note(run uint64, job string, attempt uint64, text string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := attemptKey{jobKey{run, job}, attempt}
	a, err := l.attemptLocked(k)
	if err != nil {
		return err
	}
	if _, err := a.f.WriteString("\n" + strings.TrimRight(text, "\n") + "\n"); err != nil {
		return err
	}
	// Notes are for attempts that ended without their worker's word; a
	// late chunk opens the file again.
	l.closeLocked(k)
	l.wakeLocked(k.jobKey)
	return nil
}

// Received returns how much of an attempt's stream has arrived, from
// memory or, for a log that is closed, from the mark beside it.
func (l *Logs) Received(run uint64, job string, attempt uint64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := attemptKey{jobKey{run, job}, attempt}
	if a := l.open[k]; a != nil {
		return a.received
	}
	b, err := os.ReadFile(l.path(k) + ".received")
	if err != nil || len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// Close closes an attempt's file; a later Append reopens it.
func (l *Logs) Close(run uint64, job string, attempt uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := attemptKey{jobKey{run, job}, attempt}
	l.closeLocked(k)
	l.wakeLocked(k.jobKey)
}

func (l *Logs) closeLocked(k attemptKey) {
	if a := l.open[k]; a != nil {
		a.f.Close()
		a.mark.Close()
		delete(l.open, k)
	}
}

// Wait returns a channel that is closed at the job's next log write.
func (l *Logs) Wait(run uint64, job string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := jobKey{run, job}
	ch := l.waits[k]
	if ch == nil {
		ch = make(chan struct{})
		l.waits[k] = ch
	}
	return ch
}

func (l *Logs) wakeLocked(k jobKey) {
	if ch := l.waits[k]; ch != nil {
		close(ch)
		delete(l.waits, k)
	}
}

func (l *Logs) attemptLocked(k attemptKey) (*attemptLog, error) {
	if a := l.open[k]; a != nil {
		return a, nil
	}
	path := l.path(k)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: log folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: open log: %w", err)
	}
	mark, err := os.OpenFile(path+".received", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: open log: %w", err)
	}
	a := &attemptLog{f: f, mark: mark}
	var b [8]byte
	if n, _ := mark.ReadAt(b[:], 0); n == 8 {
		a.received = int64(binary.BigEndian.Uint64(b[:]))
	}
	l.open[k] = a
	return a, nil
}

// saveReceived writes received beside the log. It is not synced: after a
// crash of the machine itself the worker's resend may repeat what the
// page cache lost with it.
func (a *attemptLog) saveReceived() error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(a.received))
	_, err := a.mark.WriteAt(b[:], 0)
	return err
}

func (l *Logs) jobLocked(k jobKey) *jobLog {
	j := l.jobs[k]
	if j == nil {
		j = &jobLog{}
		for _, p := range l.attemptFiles(k) {
			if fi, err := os.Stat(p); err == nil {
				j.kept += fi.Size()
			}
		}
		l.jobs[k] = j
	}
	return j
}

func (l *Logs) jobDir(k jobKey) string {
	return filepath.Join(l.dir, strconv.FormatUint(k.run, 10), "job-"+url.PathEscape(k.job))
}

func (l *Logs) path(k attemptKey) string {
	return filepath.Join(l.jobDir(k.jobKey), strconv.FormatUint(k.attempt, 10)+".log")
}

// attemptFiles returns the job's attempt logs in attempt order.
func (l *Logs) attemptFiles(k jobKey) []string {
	entries, _ := os.ReadDir(l.jobDir(k))
	type file struct {
		id   uint64
		path string
	}
	var files []file
	for _, e := range entries {
		id, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".log"), 10, 64)
		if err == nil {
			files = append(files, file{id, filepath.Join(l.jobDir(k), e.Name())})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].id < files[j].id })
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return paths
}

// ReadAt reads an attempt's log from offset (a file offset, notes
// included) into p, returning io.EOF at its current end.
func (l *Logs) ReadAt(run uint64, job string, attempt uint64, p []byte, offset int64) (int, error) {
	f, err := os.Open(l.path(attemptKey{jobKey{run, job}, attempt}))
	if errors.Is(err, os.ErrNotExist) {
		return 0, io.EOF
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(p, offset)
}

// RemoveRun deletes every log of a run.
func (l *Logs) RemoveRun(run uint64) error {
	return os.RemoveAll(filepath.Join(l.dir, strconv.FormatUint(run, 10)))
}
