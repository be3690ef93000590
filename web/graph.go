package web

import (
	"fmt"
	"strings"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// The size of a job's box in the graph and the gaps between boxes, in
// SVG units.
const (
	boxW, boxH = 168, 46
	gapX, gapY = 56, 18
	pad        = 8
)

// graph is a run's jobs laid out left to right: a job sits one column
// right of the furthest job it depends on, and jobs of one column keep
// the order the pipeline declared them in.
type graph struct {
	W, H  int
	Nodes []node
	Edges []edge
}

type node struct {
	Job  *kilnpb.Job
	X, Y int
}

type edge struct {
	From, To string
	Path     string // the SVG path's d attribute
}

func layout(jobs []*kilnpb.Job) graph {
	byName := map[string]*kilnpb.Job{}
	for _, j := range jobs {
		byName[j.Name] = j
	}
	col := map[string]int{}
	var depth func(name string, seen map[string]bool) int
	depth = func(name string, seen map[string]bool) int {
		if c, ok := col[name]; ok {
			return c
		}
		if seen[name] { // versions are checked acyclic; never loop anyway
			return 0
		}
		seen[name] = true
		c := 0
		if j := byName[name]; j != nil {
			for _, d := range j.DependsOn {
				if byName[d] != nil {
					c = max(c, depth(d, seen)+1)
				}
			}
		}
		col[name] = c
		return c
	}
	rows := map[int]int{}
	var g graph
	pos := map[string]node{}
	for _, j := range jobs {
		c := depth(j.Name, map[string]bool{})
		n := node{Job: j, X: pad + c*(boxW+gapX), Y: pad + rows[c]*(boxH+gapY)}
		rows[c]++
		pos[j.Name] = n
		g.Nodes = append(g.Nodes, n)
		g.W = max(g.W, n.X+boxW+pad)
		g.H = max(g.H, n.Y+boxH+pad)
	}
	for _, j := range jobs {
		to := pos[j.Name]
		for _, d := range j.DependsOn {
			from, ok := pos[d]
			if !ok {
				continue
			}
			x1, y1 := from.X+boxW, from.Y+boxH/2
			x2, y2 := to.X-6, to.Y+boxH/2
			mid := (x1 + x2) / 2
			g.Edges = append(g.Edges, edge{From: d, To: j.Name,
				Path: fmt.Sprintf("M%d %d C%d %d, %d %d, %d %d", x1, y1, mid, y1, mid, y2, x2, y2)})
		}
	}
	return g
}

// label fits a job's name into its box.
func label(name string) string {
	const max = 20
	if len(name) <= max {
		return name
	}
	return strings.TrimSpace(name[:max-1]) + "…"
}
