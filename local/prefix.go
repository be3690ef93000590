package local

import (
	"bytes"
	"io"
	"sync"
)

// prefixer writes the logs of concurrent jobs to one writer, whole lines
// at a time, each prefixed with its job's name.
type prefixer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixer) job(name string) *jobWriter {
	return &jobWriter{p: p, prefix: []byte(name + " | ")}
}

type jobWriter struct {
	p      *prefixer
	prefix []byte

	mu  sync.Mutex
	buf []byte // guarded by mu
}

// Write passes on complete lines and keeps a partial one for later. It is
// safe for concurrent use: a program's stdout and stderr come at once.
func (j *jobWriter) Write(b []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = append(j.buf, b...)
	for {
		i := bytes.IndexByte(j.buf, '\n')
		if i < 0 {
			break
		}
		j.emit(j.buf[:i+1])
		j.buf = j.buf[i+1:]
	}
	return len(b), nil
}

// flush passes on a last line that has no newline.
func (j *jobWriter) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.buf) > 0 {
		j.emit(append(j.buf, '\n'))
		j.buf = nil
	}
}

func (j *jobWriter) emit(line []byte) {
	if j.p.w == nil {
		return
	}
	j.p.mu.Lock()
	defer j.p.mu.Unlock()
	j.p.w.Write(append(append([]byte{}, j.prefix...), line...))
}
