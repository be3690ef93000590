// A pipeline whose jobs form a cycle: lint -> test -> package -> lint.
package main

import (
	"context"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name: "cycle",
		Jobs: []sdk.Job{
			{Name: "prepare", Run: ok},
			{Name: "lint", DependsOn: []string{"prepare", "test"}, Run: ok},
			{Name: "test", DependsOn: []string{"package"}, Run: ok},
			{Name: "package", DependsOn: []string{"lint"}, Run: ok},
		},
	})
}

func ok(context.Context, *sdk.J) error { return nil }
