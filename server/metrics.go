package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnci/kiln/scheduler"
)

// metrics are the master's Prometheus series, on the HTTP port's /metrics.
type metrics struct {
	reg         *prometheus.Registry
	runs        *prometheus.CounterVec
	jobs        *prometheus.CounterVec
	lost        prometheus.Counter
	runDuration prometheus.Histogram
	hooks       *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_runs_finished_total", Help: "Runs that ended, by status.",
		}, []string{"status"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_jobs_finished_total", Help: "Jobs of ended runs, by status.",
		}, []string{"status"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_attempts_lost_total", Help: "Attempts lost with their worker.",
		}),
		runDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kiln_run_duration_seconds", Help: "Time from a run's start to its end.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_webhook_deliveries_total", Help: "Webhook deliveries, by HTTP answer.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(m.runs, m.jobs, m.lost, m.runDuration, m.hooks, &tableCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ended counts a run that ended.
func (m *metrics) ended(r *scheduler.Run) {
	m.runs.WithLabelValues(string(r.Status)).Inc()
	for _, j := range r.Jobs {
		m.jobs.WithLabelValues(string(j.Status)).Inc()
	}
	if !r.Started.IsZero() {
		m.runDuration.Observe(r.Finished.Sub(r.Started).Seconds())
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// tableCollector reads the worker table and the active runs at scrape time.
type tableCollector struct{ s *Server }

var (
	workersDesc = prometheus.NewDesc("kiln_workers", "Workers by state.", []string{"state"}, nil)
	slotsDesc   = prometheus.NewDesc("kiln_worker_slots", "Slots of all workers, by use.",
		[]string{"use"}, nil)
	activeDesc = prometheus.NewDesc("kiln_runs_active", "Runs that have not ended.", nil, nil)
)

func (c *tableCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- workersDesc
	ch <- slotsDesc
	ch <- activeDesc
}

func (c *tableCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	workers, active := s.eng.Workers(), len(s.eng.Runs())
	s.mu.Unlock()
	now := s.now()
	states := map[scheduler.State]int{scheduler.Ready: 0, scheduler.Suspended: 0,
		scheduler.Draining: 0, scheduler.Unhealthy: 0, scheduler.Lost: 0, scheduler.Disconnected: 0}
	busy, total := 0, 0
	for _, w := range workers {
		states[w.State(now, s.eng.TTL())]++
		busy += len(w.Running)
		total += w.Slots
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(n), string(st))
	}
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(busy), "busy")
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(total-busy), "free")
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(active))
}
