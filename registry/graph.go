package registry

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/sdk"
)

// CheckDescription checks what a pipeline program said about itself: that
// it speaks this master's plugin protocol, and that its jobs form a valid
// graph (see ValidateGraph).
func CheckDescription(d *pluginpb.Description) error {
	if d.GetSdkProtocol() != sdk.ProtocolVersion {
		return errorf(ErrProtocol, "the program speaks plugin protocol %d (SDK %s), "+
			"this master speaks %d (SDK %s): rebuild it against SDK %s",
			d.GetSdkProtocol(), orUnknown(d.GetSdkVersion()), sdk.ProtocolVersion,
			sdk.Version, sdk.Version)
	}
	if err := ValidateGraph(d); err != nil {
		return err
	}
	return checkParams(d.GetParams())
}

// checkParams checks the pipeline's parameter declarations, so that a
// pipeline that could never be run is refused when it is built.
func checkParams(params []*pluginpb.Param) error {
	var problems []string
	seen := map[string]bool{}
	for _, p := range params {
		name := p.GetName()
		switch {
		case strings.TrimSpace(name) == "":
			problems = append(problems, "a parameter has no name")
		case seen[name]:
			problems = append(problems, fmt.Sprintf("parameter %q is declared more than once", name))
		}
		seen[name] = true
		problems = append(problems, checkParam(p)...)
	}
	if len(problems) == 0 {
		return nil
	}
	return errorf(ErrInvalidGraph, "invalid parameters: %s", strings.Join(problems, "; "))
}

func checkParam(p *pluginpb.Param) []string {
	name, def := p.GetName(), p.GetDefault()
	switch p.GetType() {
	case "string":
	case "bool":
		if def != "" && def != "true" && def != "false" {
			return []string{fmt.Sprintf("bool parameter %q has default %q: use true or false",
				name, def)}
		}
	case "choice":
		if len(p.GetChoices()) == 0 {
			return []string{fmt.Sprintf("choice parameter %q has no choices", name)}
		}
		if def != "" && !slices.Contains(p.GetChoices(), def) {
			return []string{fmt.Sprintf("choice parameter %q has default %q, which is not "+
				"one of %s", name, def, strings.Join(p.GetChoices(), ", "))}
		}
	default:
		return []string{fmt.Sprintf("parameter %q has type %q: use string, bool or choice",
			name, p.GetType())}
	}
	return nil
}

// ValidateGraph checks a pipeline's jobs: every job has a name, no two jobs
// share one, every dependency names a job of the pipeline, and the
// dependencies have no cycle. The error, which wraps ErrInvalidGraph, has
// one sentence per problem, each naming the jobs at fault.
func ValidateGraph(d *pluginpb.Description) error {
	jobs := d.GetJobs()
	if len(jobs) == 0 {
		return errorf(ErrInvalidGraph, "the pipeline declares no jobs: give sdk.Pipeline at "+
			"least one Job")
	}
	problems := append(checkNames(jobs), checkDependencies(jobs)...)
	if len(problems) == 0 {
		if cycle := findCycle(jobs); cycle != nil {
			problems = append(problems, "jobs form a cycle: "+strings.Join(cycle, " -> "))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errorf(ErrInvalidGraph, "invalid job graph: %s", strings.Join(problems, "; "))
}

func checkNames(jobs []*pluginpb.JobSpec) []string {
	var problems []string
	count := map[string]int{}
	for i, j := range jobs {
		if strings.TrimSpace(j.GetName()) == "" {
			problems = append(problems, fmt.Sprintf("job #%d has no name", i+1))
			continue
		}
		count[j.GetName()]++
	}
	var dups []string
	for name, n := range count {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%q (%d times)", name, n))
		}
	}
	sort.Strings(dups)
	for _, d := range dups {
		problems = append(problems, fmt.Sprintf("job %s is declared more than once", d))
	}
	return problems
}

func checkDependencies(jobs []*pluginpb.JobSpec) []string {
	names := map[string]bool{}
	for _, j := range jobs {
		names[j.GetName()] = true
	}
	var problems []string
	for _, j := range jobs {
		for _, dep := range j.GetDependsOn() {
			if !names[dep] || dep == "" {
				problems = append(problems, fmt.Sprintf("job %q depends on %q, which is not "+
					"a job of the pipeline", j.GetName(), dep))
			}
		}
	}
	return problems
}

// findCycle returns the jobs of one dependency cycle, the first job
// repeated at its end ("a", "b", "a"), or nil when there is none. Jobs are
// visited in declaration order so that the cycle reported is stable.
func findCycle(jobs []*pluginpb.JobSpec) []string {
	deps := map[string][]string{}
	for _, j := range jobs {
		deps[j.GetName()] = j.GetDependsOn()
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(string) []string
	visit = func(n string) []string {
		state[n] = onPath
		path = append(path, n)
		for _, d := range deps[n] {
			switch state[d] {
			case onPath:
				return cycleFrom(path, d)
			case unseen:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, j := range jobs {
		if state[j.GetName()] == unseen {
			if c := visit(j.GetName()); c != nil {
				return c
			}
		}
	}
	return nil
}

// cycleFrom cuts the cycle that starts at start out of a depth-first path
// and closes it. The path follows dependencies, so it reads "a depends on
// b depends on … depends on a".
func cycleFrom(path []string, start string) []string {
	for i, n := range path {
		if n == start {
			return append(append([]string(nil), path[i:]...), start)
		}
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
