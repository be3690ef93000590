package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kilnci/kiln/proto/pluginpb"
)

// ResolveParams checks a run's parameters against the pipeline's
// declaration and fills in defaults. Errors name the parameter and what it
// accepts.
func ResolveParams(pipeline string, decl []*pluginpb.Param,
	given map[string]string) (map[string]string, error) {
	byName := map[string]*pluginpb.Param{}
	for _, p := range decl {
		byName[p.Name] = p
	}
	for _, name := range slices.Sorted(maps.Keys(given)) {
		if byName[name] == nil {
			return nil, fmt.Errorf("pipeline %q has no parameter %q (%s)", pipeline, name,
				declared(decl))
		}
	}
	out := map[string]string{}
	for _, p := range decl {
		v, ok := given[p.Name]
		if !ok {
			v = p.Default
			if p.Type == "bool" && v == "" {
				v = "false"
			}
		}
		if err := checkParam(p, v); err != nil {
			return nil, fmt.Errorf("pipeline %q: parameter %q: %w", pipeline, p.Name, err)
		}
		out[p.Name] = v
	}
	return out, nil
}

func checkParam(p *pluginpb.Param, v string) error {
	switch p.Type {
	case "bool":
		if v != "true" && v != "false" {
			return fmt.Errorf("%q is not a bool: use true or false", v)
		}
	case "choice":
		if !slices.Contains(p.Choices, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(p.Choices, ", "))
		}
	}
	return nil
}

func declared(decl []*pluginpb.Param) string {
	if len(decl) == 0 {
		return "it takes none"
	}
	names := make([]string, len(decl))
	for i, p := range decl {
		names[i] = p.Name
	}
	return "it takes " + strings.Join(names, ", ")
}
