package trigger

import (
	"slices"
	"strings"
)

// CheckUpstreams refuses giving pipeline name the upstream pipelines ups,
// given every pipeline's current upstreams (graph: name -> its upstreams;
// name's own entry is replaced by ups): a pipeline that depends on
// itself, a name twice, or a cycle. The error names the shortest cycle
// through name as "a → b → a", where each pipeline is started by the
// next, and says which edge to drop. Whether the names exist is the
// caller's to check.
func CheckUpstreams(name string, ups []string, graph map[string][]string) error {
	seen := make(map[string]bool, len(ups))
	for _, u := range ups {
		if u == name {
			return errorf(ErrBadUpstreams, "pipeline %q cannot be its own upstream: "+
				"drop %q from its upstreams", name, name)
		}
		if seen[u] {
			return errorf(ErrBadUpstreams, "pipeline %q names upstream %q twice: "+
				"drop one", name, u)
		}
		seen[u] = true
	}

	path := cycle(name, ups, graph)
	if path == nil {
		return nil
	}
	return errorf(ErrBadUpstreams, "the upstreams of %q would close the cycle %s "+
		"(each pipeline is started by the next), and a run would start itself "+
		"again: drop %q from the upstreams of %q, or %q from those of %q", name,
		strings.Join(path, " → "), path[1], name, name, path[len(path)-2])
}

// cycle returns the shortest path from name along upstream edges back to
// name, with name at both ends, or nil when there is none. Neighbours are
// visited in sorted order, so that the same graph always gives the same
// path.
func cycle(name string, ups []string, graph map[string][]string) []string {
	upstreams := func(n string) []string {
		if n == name {
			return sorted(ups)
		}
		return sorted(graph[n])
	}
	parent := map[string]string{name: ""}
	queue := []string{name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, u := range upstreams(n) {
			if u == name {
				return pathTo(n, parent, name)
			}
			if _, seen := parent[u]; !seen {
				parent[u] = n
				queue = append(queue, u)
			}
		}
	}
	return nil
}

// pathTo returns name, the nodes leading from it to n, n, and name again.
func pathTo(n string, parent map[string]string, name string) []string {
	path := []string{name}
	for ; n != name; n = parent[n] {
		path = append(path, n)
	}
	path = append(path, name)
	slices.Reverse(path[1 : len(path)-1])
	return path
}

// Downstream returns the pipelines whose upstreams include name, sorted.
// It never returns name itself, so that a graph that names a pipeline as
// its own upstream cannot make a run start itself.
func Downstream(name string, graph map[string][]string) []string {
	var down []string
	for p, ups := range graph {
		if p != name && slices.Contains(ups, name) {
			down = append(down, p)
		}
	}
	slices.Sort(down)
	return down
}

func sorted(names []string) []string {
	s := slices.Clone(names)
	slices.Sort(s)
	return slices.Compact(s)
}
