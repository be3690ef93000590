package sdk

import (
	"sync"

	"github.com/kilnci/kiln/proto/pluginpb"
)

// streamWriter sends a job's log over its Execute stream. gRPC streams
// allow one sender at a time, and a job's command writes its stdout and
// stderr from two goroutines, hence the mutex.
type streamWriter struct {
	mu     sync.Mutex
	stream pluginpb.Pipeline_ExecuteServer
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), logChunk)]
		// The stream owns the message once sent, so copy: the caller may
		// reuse p.
		data := append([]byte(nil), c...)
		ev := &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Log{Log: data}}
		if err := w.stream.Send(ev); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}
