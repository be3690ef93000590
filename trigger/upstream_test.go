package trigger

import (
	"errors"
	"slices"
	"testing"
)

func TestCheckUpstreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		pipe  string
		ups   []string
		graph map[string][]string
		err   string // the whole error; "" when accepted
	}{{
		name: "no upstreams",
		pipe: "a",
	}, {
		name:  "a diamond",
		pipe:  "deploy",
		ups:   []string{"test", "lint"},
		graph: map[string][]string{"test": {"build"}, "lint": {"build"}, "build": nil},
	}, {
		name:  "replacing the entry that made a cycle",
		pipe:  "a",
		ups:   []string{"c"},
		graph: map[string][]string{"a": {"b"}, "b": {"a"}},
	}, {
		name:  "a cycle elsewhere is not this change's",
		pipe:  "a",
		ups:   []string{"b"},
		graph: map[string][]string{"x": {"y"}, "y": {"x"}},
	}, {
		name: "itself",
		pipe: "a",
		ups:  []string{"b", "a"},
		err:  `pipeline "a" cannot be its own upstream: drop "a" from its upstreams`,
	}, {
		name: "a name twice",
		pipe: "a",
		ups:  []string{"b", "c", "b"},
		err:  `pipeline "a" names upstream "b" twice: drop one`,
	}, {
		name:  "a 2-cycle",
		pipe:  "a",
		ups:   []string{"b"},
		graph: map[string][]string{"b": {"a"}},
		err: `the upstreams of "a" would close the cycle a → b → a (each pipeline is ` +
			`started by the next), and a run would start itself again: drop "b" from ` +
			`the upstreams of "a", or "a" from those of "b"`,
	}, {
		name:  "a 3-cycle",
		pipe:  "a",
		ups:   []string{"b"},
		graph: map[string][]string{"b": {"c"}, "c": {"a"}},
		err: `the upstreams of "a" would close the cycle a → b → c → a (each pipeline ` +
			`is started by the next), and a run would start itself again: drop "b" ` +
			`from the upstreams of "a", or "a" from those of "c"`,
	}, {
		name: "the shortest of two cycles, whatever the order given",
		pipe: "a",
		ups:  []string{"z", "b"},
		graph: map[string][]string{
			"b": {"c"}, "c": {"d"}, "d": {"a"},
			"z": {"y", "a"},
		},
		err: `the upstreams of "a" would close the cycle a → z → a (each pipeline is ` +
			`started by the next), and a run would start itself again: drop "z" from ` +
			`the upstreams of "a", or "a" from those of "z"`,
	}, {
		name: "of two equal cycles, the first in sorted order",
		pipe: "a",
		ups:  []string{"c", "b"},
		graph: map[string][]string{
			"b": {"x", "a"}, "c": {"a"},
		},
		err: `the upstreams of "a" would close the cycle a → b → a (each pipeline is ` +
			`started by the next), and a run would start itself again: drop "b" from ` +
			`the upstreams of "a", or "a" from those of "b"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckUpstreams(tt.pipe, tt.ups, tt.graph)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadUpstreams) || err.Error() != tt.err {
				t.Fatalf("error = %v\nwant    %s", err, tt.err)
			}
		})
	}
}

func TestDownstream(t *testing.T) {
	t.Parallel()
	graph := map[string][]string{
		"deploy":  {"test", "lint"},
		"test":    {"build"},
		"lint":    {"build"},
		"docs":    {"build", "build"},
		"build":   nil,
		"odd":     {"odd"},
		"nightly": {},
	}
	tests := []struct {
		name string
		want []string
	}{
		{"build", []string{"docs", "lint", "test"}},
		{"test", []string{"deploy"}},
		{"deploy", nil},
		{"odd", nil},
		{"unknown", nil},
	}
	for _, tt := range tests {
		if got := Downstream(tt.name, graph); !slices.Equal(got, tt.want) {
			t.Errorf("Downstream(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
