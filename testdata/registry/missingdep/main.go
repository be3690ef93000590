// A pipeline whose job "test" depends on "bulid", which does not exist.
package main

import (
	"context"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name: "missingdep",
		Jobs: []sdk.Job{
			{Name: "build", Run: ok},
			{Name: "test", DependsOn: []string{"bulid"}, Run: ok},
		},
	})
}

func ok(context.Context, *sdk.J) error { return nil }
