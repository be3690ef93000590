package worker

import (
	"io"
	"log/slog"
	"strings"
	"sync"
)

// output takes what a pipeline program prints outside any job's log. While
// exactly one job runs in the program, that is the job's doing and goes
// into its log; otherwise it cannot be told apart, and goes to the
// worker's log with the run it belongs to.
type output struct {
	log *slog.Logger

	mu   sync.Mutex
	run  uint64               // guarded by mu; 0 while the program is a spare
	jobs map[uint64]io.Writer // guarded by mu: the attempts running in it
	line []byte               // guarded by mu: a partial line for the log
}

func newOutput(log *slog.Logger) *output {
	return &output{log: log, jobs: map[uint64]io.Writer{}}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.jobs) == 1 {
		for _, w := range o.jobs {
			w.Write(p)
		}
		return len(p), nil
	}
	o.line = append(o.line, p...)
	for {
		i := strings.IndexByte(string(o.line), '\n')
		if i < 0 {
			break
		}
		o.log.Info("pipeline program output", "run_id", o.run, "text", string(o.line[:i]))
		o.line = o.line[i+1:]
	}
	return len(p), nil
}

// attach makes an attempt's log receive the program's output.
func (o *output) attach(run, attempt uint64, w io.Writer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.run = run
	o.jobs[attempt] = w
}

func (o *output) detach(attempt uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.jobs, attempt)
}
