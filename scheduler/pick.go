package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Pending is a job that is ready to start.
type Pending struct {
	Run    uint64
	Job    string
	Labels map[string]string
	// OS and Arch are the platform of the run's binary; empty fits any.
	OS   string
	Arch string
}

// Choice gives the pending job at index Job to the worker with ID Worker.
type Choice struct {
	Job    int
	Worker uint64
}

// Pick is the dispatch decision. workers is a snapshot of the table, after
// the ID of the worker picked last. It returns the choices, the reason each
// pending job it could not place waits (by index), and the ID of the worker
// picked last. Pick changes nothing it is given.
func Pick(now time.Time, ttl time.Duration, workers []Worker, after uint64,
	jobs []Pending) (choices []Choice, waiting map[int]string, last uint64) {
	ws := slices.Clone(workers)
	sort.Slice(ws, func(i, j int) bool { return ws[i].ID < ws[j].ID })
	free := make([]int, len(ws))
	for i := range ws {
		if ws[i].State(now, ttl) == Ready {
			free[i] = ws[i].Free()
		}
	}

	last = after
	waiting = map[int]string{}
	for ji, p := range jobs {
		wi := next(ws, free, last, p)
		if wi < 0 {
			waiting[ji] = whyWaiting(now, ttl, ws, free, p)
			continue
		}
		free[wi]--
		last = ws[wi].ID
		choices = append(choices, Choice{Job: ji, Worker: last})
	}
	return choices, waiting, last
}

// next returns the index of the first worker after the ID last, wrapping
// around, that has a free slot and fits p; -1 when there is none.
func next(ws []Worker, free []int, last uint64, p Pending) int {
	start := sort.Search(len(ws), func(i int) bool { return ws[i].ID > last })
	for k := range ws {
		i := (start + k) % len(ws)
		if free[i] > 0 && ws[i].Fits(p.Labels, p.OS, p.Arch) {
			return i
		}
	}
	return -1
}

// whyWaiting explains, in a phrase for the user, why no worker takes p.
func whyWaiting(now time.Time, ttl time.Duration, ws []Worker, free []int, p Pending) string {
	if len(ws) == 0 {
		return "no worker has joined"
	}
	var fit []int
	for i := range ws {
		if ws[i].Fits(p.Labels, p.OS, p.Arch) {
			fit = append(fit, i)
		}
	}
	if len(fit) == 0 {
		return "no worker" + requirement(p)
	}
	states := map[State]int{}
	for _, i := range fit {
		states[ws[i].State(now, ttl)]++
	}
	if states[Ready] == 0 {
		return fmt.Sprintf("no worker%s is ready (%s)", requirement(p), countStates(states))
	}
	return fmt.Sprintf("all %d ready workers%s are busy", states[Ready], requirement(p))
}

// requirement says what a worker must have to run p, with a leading
// space, or "" when any worker fits.
func requirement(p Pending) string {
	var s strings.Builder
	if p.OS != "" || p.Arch != "" {
		s.WriteString(" for " + p.OS + "/" + p.Arch)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		fmt.Fprintf(&s, " with label %s=%s", k, p.Labels[k])
	}
	return s.String()
}

func countStates(states map[State]int) string {
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(states)) {
		parts = append(parts, fmt.Sprintf("%d %s", states[s], s))
	}
	return strings.Join(parts, ", ")
}
