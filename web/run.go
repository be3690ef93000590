package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/scheduler"
)

type runData struct {
	Run   *kilnpb.Run
	Graph graph
	Job   *kilnpb.Job // the job whose log shows
	Final bool
}

// final says whether a run or job status will not change again.
func final(status string) bool { return scheduler.Status(status).Final() }

func (h *Handler) runPage(w http.ResponseWriter, r *http.Request) {
	id := uintParam(r.PathValue("id"))
	if id == 0 {
		w.WriteHeader(http.StatusNotFound)
		h.render(w, r, "error", "Not Found", "", fmt.Sprintf("%q is not a run number: "+
			"runs are listed on their pipeline's page", r.PathValue("id")))
		return
	}
	run, err := h.api.GetRun(r.Context(), &kilnpb.GetRunRequest{Id: id})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := runData{Run: run, Graph: layout(run.Jobs), Final: final(run.Status),
		Job: pickJob(run, r.URL.Query().Get("job"))}
	h.render(w, r, "run", fmt.Sprintf("Run %d of %s", run.Id, run.Pipeline), "pipelines", d)
}

// pickJob is the job whose log the page shows: the one asked for, or the
// first that failed, or runs, or else the first.
func pickJob(run *kilnpb.Run, name string) *kilnpb.Job {
	if len(run.Jobs) == 0 {
		return nil
	}
	for _, status := range []string{"", "failed", "running"} {
		for _, j := range run.Jobs {
			if (status == "" && j.Name == name) || (status != "" && j.Status == status) {
				return j
			}
		}
	}
	return run.Jobs[0]
}

// runState is what the run page redraws on every change.
type runState struct {
	Status string     `json:"status"`
	Reason string     `json:"reason"`
	Took   string     `json:"took"`
	Final  bool       `json:"final"`
	Jobs   []jobState `json:"jobs"`
}

type jobState struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Worker   string `json:"worker"`
	Attempts uint32 `json:"attempts"`
	Took     string `json:"took"`
	Waiting  string `json:"waiting"`
	Error    string `json:"error"`
}

func stateOf(run *kilnpb.Run) runState {
	st := runState{Status: run.Status, Reason: run.Reason, Took: span(run.Started, run.Finished),
		Final: final(run.Status)}
	for _, j := range run.Jobs {
		st.Jobs = append(st.Jobs, jobState{Name: j.Name, Status: j.Status, Worker: j.Worker,
			Attempts: j.Attempts, Took: span(j.Started, j.Finished), Waiting: j.Waiting,
			Error: j.Error})
	}
	return st
}

// sse starts a stream of server-sent events.
func sse(w http.ResponseWriter) (func(event, data string) error, bool) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	return func(event, data string) error {
		// An event stream ends a line at a lone CR too: a progress bar's
		// "50%\r100%" would lose what follows the CR.
		data = strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		var b strings.Builder
		b.WriteString("event: " + event + "\n")
		for _, line := range strings.Split(data, "\n") {
			b.WriteString("data: " + line + "\n")
		}
		b.WriteString("\n")
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}, true
}

// runEvents streams the run's state after every change until it ends.
func (h *Handler) runEvents(w http.ResponseWriter, r *http.Request) {
	stream, err := h.api.WatchRun(r.Context(), &kilnpb.GetRunRequest{Id: uintParam(r.PathValue("id"))})
	if err != nil {
		http.Error(w, status.Convert(err).Message(), http.StatusBadGateway)
		return
	}
	send, ok := sse(w)
	if !ok {
		return
	}
	// Durations of running jobs grow between changes: say so every second.
	var last *kilnpb.Run
	runs := make(chan *kilnpb.Run)
	errc := make(chan error, 1)
	go func() {
		for {
			run, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case runs <- run:
			case <-r.Context().Done():
				return
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case run := <-runs:
			last = run
		case <-tick.C:
			if last == nil || final(last.Status) {
				continue
			}
		case err := <-errc:
			if !errors.Is(err, io.EOF) {
				send("gone", status.Convert(err).Message())
			}
			return
		case <-r.Context().Done():
			return
		}
		data, _ := json.Marshal(stateOf(last))
		if send("run", string(data)) != nil {
			return
		}
	}
}

// logEvents streams a job's log as HTML, every attempt of it, following
// it until the job ends.
//
// TODO(kiln): a run's page holds two streams (this and runEvents), and a
// browser opens at most six connections to a host over HTTP/1.1, so a
// fourth page of a running run stalls the other tabs. Carry the log in
// the run's stream, or serve HTTP/2 once the port has TLS.
func (h *Handler) logEvents(w http.ResponseWriter, r *http.Request) {
	stream, err := h.api.Logs(r.Context(), &kilnpb.LogsRequest{
		RunId: uintParam(r.PathValue("id")), Job: r.URL.Query().Get("job"), Follow: true})
	if err != nil {
		http.Error(w, status.Convert(err).Message(), http.StatusBadGateway)
		return
	}
	send, ok := sse(w)
	if !ok {
		return
	}
	var conv ansi
	for {
		line, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			send("end", conv.close())
			return
		}
		if err != nil {
			send("gone", status.Convert(err).Message())
			return
		}
		if send("log", conv.write(line.Data)) != nil {
			return
		}
	}
}

// rawLog sends a job's whole log, as the job wrote it, as a download.
func (h *Handler) rawLog(w http.ResponseWriter, r *http.Request) {
	id, job := uintParam(r.PathValue("id")), r.URL.Query().Get("job")
	stream, err := h.api.Logs(r.Context(), &kilnpb.LogsRequest{RunId: id, Job: job})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	first, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition",
		fmt.Sprintf("attachment; filename=%q", fmt.Sprintf("run-%d-%s.log", id, safeFile(job))))
	if first != nil {
		w.Write(first.Data)
	}
	for {
		line, err := stream.Recv()
		if err != nil {
			return
		}
		if _, err := w.Write(line.Data); err != nil {
			return
		}
	}
}

// safeFile keeps a job's name fit for a file name.
func safeFile(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func (h *Handler) cancelRun(w http.ResponseWriter, r *http.Request) {
	id := uintParam(r.PathValue("id"))
	if _, err := h.api.CancelRun(r.Context(), &kilnpb.CancelRunRequest{Id: id}); err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("run cancelled from the dashboard", "run_id", id)
	h.back(w, r, fmt.Sprintf("/runs/%d", id), fmt.Sprintf("run %d cancelled", id))
}
