package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/kilnci/kiln/proto/kilnpb"
)

type pipelinesData struct {
	Pipelines               []*kilnpb.Pipeline
	Page, Pages, Prev, Next int
	Total                   int
}

func (h *Handler) pipelinesPage(w http.ResponseWriter, r *http.Request) {
	resp, err := h.api.ListPipelines(r.Context(), &kilnpb.ListPipelinesRequest{})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	all := resp.Pipelines
	d := pipelinesData{Total: len(all), Pages: max(1, (len(all)+pageSize-1)/pageSize)}
	d.Page = min(max(1, int(uintParam(r.URL.Query().Get("page")))), d.Pages)
	from := (d.Page - 1) * pageSize
	d.Pipelines = all[from:min(from+pageSize, len(all))]
	if d.Page > 1 {
		d.Prev = d.Page - 1
	}
	if d.Page < d.Pages {
		d.Next = d.Page + 1
	}
	h.render(w, r, "pipelines", "Pipelines", "pipelines", d)
}

// maxVersions is how many versions a pipeline's page shows, newest first.
const maxVersions = 20

type pipelineData struct {
	Pipeline      *kilnpb.Pipeline
	Runs          []*kilnpb.Run
	Before, Next  uint64
	Versions      []*kilnpb.Version
	MoreVersions  bool
	TotalVersions int
}

func (h *Handler) pipelinePage(w http.ResponseWriter, r *http.Request) {
	ctx, name := r.Context(), r.PathValue("name")
	p, err := h.api.GetPipeline(ctx, &kilnpb.GetPipelineRequest{Name: name})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d := pipelineData{Pipeline: p, Before: uintParam(r.URL.Query().Get("before"))}
	runs, err := h.api.ListRuns(ctx, &kilnpb.ListRunsRequest{Pipeline: name,
		Limit: pageSize, Before: d.Before})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Runs = runs.Runs
	if len(d.Runs) == pageSize {
		d.Next = d.Runs[len(d.Runs)-1].Id
	}
	vs, err := h.api.ListVersions(ctx, &kilnpb.ListVersionsRequest{Name: name})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Versions, d.TotalVersions = slices.Clone(vs.Versions), len(vs.Versions)
	slices.Reverse(d.Versions)
	if len(d.Versions) > maxVersions {
		d.Versions, d.MoreVersions = d.Versions[:maxVersions], true
	}
	h.render(w, r, "pipeline", p.Name, "pipelines", d)
}

type runFormData struct{ Pipeline *kilnpb.Pipeline }

func (h *Handler) runFormPage(w http.ResponseWriter, r *http.Request) {
	p, err := h.api.GetPipeline(r.Context(), &kilnpb.GetPipelineRequest{Name: r.PathValue("name")})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, "runform", "Run "+p.Name, "pipelines", runFormData{Pipeline: p})
}

// startRun starts a run with the form's parameters, which the master
// checks, and shows it.
func (h *Handler) startRun(w http.ResponseWriter, r *http.Request) {
	params := map[string]string{}
	for k, v := range r.PostForm {
		if name, ok := strings.CutPrefix(k, "param."); ok && len(v) > 0 {
			params[name] = v[0]
		}
	}
	name := r.PathValue("name")
	run, err := h.api.StartRun(r.Context(), &kilnpb.StartRunRequest{Name: name, Params: params})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("run started from the dashboard", "pipeline", name, "run_id", run.Id)
	h.back(w, r, fmt.Sprintf("/runs/%d", run.Id), "")
}

// recompileTimeout bounds a recompile the dashboard started.
const recompileTimeout = 30 * time.Minute

// recompile starts a build of the followed ref and returns at once: a
// compile takes longer than a page should wait. The build goes on without
// the request; the new version shows on the pipeline's page.
func (h *Handler) recompile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	md, _ := metadata.FromOutgoingContext(r.Context())
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md),
		recompileTimeout)
	stream, err := h.api.Recompile(ctx, &kilnpb.RecompileRequest{Name: name})
	if err != nil {
		cancel()
		h.fail(w, r, err)
		return
	}
	go func() {
		defer cancel()
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				h.log.Warn("recompile from the dashboard", "pipeline", name, "err", err)
				return
			}
			if v := ev.GetVersion(); v != nil {
				h.log.Info("recompiled from the dashboard", "pipeline", name,
					"version", v.Version, "status", v.Status)
			}
		}
	}()
	h.back(w, r, "/pipelines/"+name, "recompiling "+name+": the new version shows below once built")
}

// workerJob is a job a worker runs now.
type workerJob struct {
	Run uint64
	Job string
}

type workerRow struct {
	W    *kilnpb.Worker
	Jobs []workerJob
}

type workersData struct{ Workers []workerRow }

// activeRuns is how many of the newest runs the workers page looks through
// for running jobs.
const activeRuns = 200

func (h *Handler) workersPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	resp, err := h.api.ListWorkers(ctx, &kilnpb.ListWorkersRequest{})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	runs, err := h.api.ListRuns(ctx, &kilnpb.ListRunsRequest{Limit: activeRuns})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	jobs := map[string][]workerJob{}
	for _, run := range runs.Runs {
		for _, j := range run.Jobs {
			if j.Status == "running" && j.Worker != "" {
				jobs[j.Worker] = append(jobs[j.Worker], workerJob{Run: run.Id, Job: j.Name})
			}
		}
	}
	var d workersData
	for _, wk := range resp.Workers {
		d.Workers = append(d.Workers, workerRow{W: wk, Jobs: jobs[wk.Name]})
	}
	h.render(w, r, "workers", "Workers", "workers", d)
}

func (h *Handler) suspend(w http.ResponseWriter, r *http.Request) {
	h.setSuspended(w, r, true)
}

func (h *Handler) resume(w http.ResponseWriter, r *http.Request) {
	h.setSuspended(w, r, false)
}

func (h *Handler) setSuspended(w http.ResponseWriter, r *http.Request, on bool) {
	name := r.PathValue("name")
	req := &kilnpb.WorkerRequest{Name: name}
	var err error
	if on {
		_, err = h.api.SuspendWorker(r.Context(), req)
	} else {
		_, err = h.api.ResumeWorker(r.Context(), req)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	verb := map[bool]string{true: "suspended", false: "resumed"}[on]
	h.log.Info("worker "+verb+" from the dashboard", "worker", name)
	h.back(w, r, "/workers", "worker "+name+" "+verb)
}

// triggers summarises what starts a pipeline's runs.
func triggers(t *kilnpb.Triggers) string {
	var out []string
	if t.GetWebhook() {
		out = append(out, "webhook")
	}
	if t.GetPollMs() > 0 {
		out = append(out, "poll every "+roundDur(time.Duration(t.GetPollMs())*time.Millisecond))
	}
	if len(t.GetSchedules()) > 0 {
		out = append(out, "schedule "+strings.Join(t.GetSchedules(), "; "))
	}
	if len(t.GetDependsOn()) > 0 {
		out = append(out, "after "+strings.Join(t.GetDependsOn(), ", "))
	}
	if len(out) == 0 {
		return "manual only"
	}
	return strings.Join(out, ", ")
}
