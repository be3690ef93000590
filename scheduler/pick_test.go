package scheduler

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

const ttl = 2 * time.Second

func ready(id uint64, name string, slots int) Worker {
	return Worker{ID: id, Name: name, Slots: slots, Connected: true, Healthy: true,
		LastSeen: t0, OS: "linux", Arch: "amd64", Running: map[uint64]bool{}}
}

func jobs(n int) []Pending {
	out := make([]Pending, n)
	for i := range out {
		out[i] = Pending{Run: 1, Job: string(rune('a' + i))}
	}
	return out
}

func TestPickRoundRobinStartsAfterLastPicked(t *testing.T) {
	t.Parallel()
	ws := []Worker{ready(3, "c", 4), ready(1, "a", 4), ready(2, "b", 4)}
	choices, waiting, last := Pick(t0, ttl, ws, 1, jobs(4))
	if len(waiting) != 0 {
		t.Fatalf("waiting = %v, want none", waiting)
	}
	var got []uint64
	for _, c := range choices {
		got = append(got, c.Worker)
	}
	want := []uint64{2, 3, 1, 2}
	if len(got) != len(want) {
		t.Fatalf("picked %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("picked %v, want %v", got, want)
		}
	}
	if last != 2 {
		t.Errorf("last = %d, want 2", last)
	}
}

func TestPickSkipsWorkersThatAreNotReady(t *testing.T) {
	t.Parallel()
	stale := ready(1, "stale", 1)
	stale.LastSeen = t0.Add(-3 * time.Second)
	suspended := ready(2, "suspended", 1)
	suspended.Suspended = true
	sick := ready(3, "sick", 1)
	sick.Healthy, sick.Reason = false, "low disk"
	gone := ready(4, "gone", 1)
	gone.Connected = false
	draining := ready(5, "draining", 1)
	draining.Draining = true
	busy := ready(6, "busy", 1)
	busy.Running[99] = true
	ok := ready(7, "ok", 1)

	choices, waiting, _ := Pick(t0, ttl,
		[]Worker{stale, suspended, sick, gone, draining, busy, ok}, 0, jobs(2))
	if len(choices) != 1 || choices[0].Worker != 7 {
		t.Fatalf("choices = %+v, want only worker 7", choices)
	}
	if got, want := waiting[1], "all 2 ready workers are busy"; got != want {
		t.Errorf("waiting = %q, want %q", got, want)
	}
}

func TestPickExplainsWhyAJobWaits(t *testing.T) {
	t.Parallel()
	lost := ready(1, "a", 1)
	lost.LastSeen = t0.Add(-time.Minute)
	suspended := ready(2, "b", 1)
	suspended.Suspended = true
	gpu := ready(3, "c", 1)
	gpu.Labels = map[string]string{"gpu": "yes"}
	gpu.Suspended = true

	tests := []struct {
		name    string
		workers []Worker
		job     Pending
		want    string
	}{
		{"none joined", nil, Pending{}, "no worker has joined"},
		{"label", []Worker{lost}, Pending{Labels: map[string]string{"gpu": "yes"}},
			"no worker with label gpu=yes"},
		{"platform", []Worker{suspended}, Pending{OS: "linux", Arch: "arm64"},
			"no worker for linux/arm64"},
		{"states", []Worker{lost, suspended}, Pending{},
			"no worker is ready (1 lost, 1 suspended)"},
		{"label not ready", []Worker{lost, gpu}, Pending{Labels: map[string]string{"gpu": "yes"}},
			"no worker with label gpu=yes is ready (1 suspended)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, waiting, _ := Pick(t0, ttl, tt.workers, 0, []Pending{tt.job})
			if waiting[0] != tt.want {
				t.Errorf("waiting = %q, want %q", waiting[0], tt.want)
			}
		})
	}
}

// TestPickProperties checks the dispatch invariants over random tables:
// no worker gets more than its free slots, only ready workers that fit get
// jobs, every job is either placed or has a reason, and ready identical
// workers share the jobs evenly.
func TestPickProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		ws := randomWorkers(rng)
		js := randomJobs(rng)
		choices, waiting, _ := Pick(t0, ttl, ws, rng.Uint64N(8), js)

		byID := map[uint64]Worker{}
		for _, w := range ws {
			byID[w.ID] = w
		}
		used := map[uint64]int{}
		placed := map[int]bool{}
		for _, c := range choices {
			w := byID[c.Worker]
			if w.State(t0, ttl) != Ready {
				t.Fatalf("iter %d: job %d went to %s worker %d", iter, c.Job, w.State(t0, ttl), w.ID)
			}
			if !w.Fits(js[c.Job].Labels, js[c.Job].OS, js[c.Job].Arch) {
				t.Fatalf("iter %d: job %d went to worker %d that does not fit", iter, c.Job, w.ID)
			}
			used[w.ID]++
			if used[w.ID] > w.Free() {
				t.Fatalf("iter %d: worker %d got %d jobs with %d free", iter, w.ID, used[w.ID], w.Free())
			}
			if placed[c.Job] {
				t.Fatalf("iter %d: job %d placed twice", iter, c.Job)
			}
			placed[c.Job] = true
		}
		for i := range js {
			if !placed[i] && waiting[i] == "" {
				t.Fatalf("iter %d: job %d neither placed nor explained", iter, i)
			}
			if placed[i] && waiting[i] != "" {
				t.Fatalf("iter %d: job %d placed and waiting", iter, i)
			}
		}
	}
}

func TestPickSharesEvenly(t *testing.T) {
	t.Parallel()
	ws := []Worker{ready(1, "a", 100), ready(2, "b", 100), ready(3, "c", 100), ready(4, "d", 100)}
	last := uint64(0)
	count := map[uint64]int{}
	for round := 0; round < 25; round++ {
		var choices []Choice
		choices, _, last = Pick(t0, ttl, ws, last, jobs(3))
		for _, c := range choices {
			count[c.Worker]++
		}
	}
	for id, n := range count {
		if n < 18 || n > 19 {
			t.Errorf("worker %d got %d of 75 jobs, want 18 or 19", id, n)
		}
	}
}

func randomWorkers(rng *rand.Rand) []Worker {
	n := rng.IntN(6)
	ws := make([]Worker, n)
	for i := range ws {
		w := ready(uint64(i+1), string(rune('a'+i)), 1+rng.IntN(3))
		switch rng.IntN(6) {
		case 0:
			w.LastSeen = t0.Add(-time.Minute)
		case 1:
			w.Suspended = true
		case 2:
			w.Healthy = false
		}
		if rng.IntN(3) == 0 {
			w.Labels = map[string]string{"gpu": "yes"}
		}
		if rng.IntN(4) == 0 {
			w.Arch = "arm64"
		}
		for k := 0; k < rng.IntN(3); k++ {
			w.Running[uint64(100+k)] = true
		}
		ws[i] = w
	}
	return ws
}

func randomJobs(rng *rand.Rand) []Pending {
	js := make([]Pending, rng.IntN(10))
	for i := range js {
		if rng.IntN(3) == 0 {
			js[i].Labels = map[string]string{"gpu": "yes"}
		}
		if rng.IntN(3) == 0 {
			js[i].OS, js[i].Arch = "linux", "amd64"
		}
	}
	return js
}
