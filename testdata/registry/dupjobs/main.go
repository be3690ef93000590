// A pipeline that declares the job "build" twice.
package main

import (
	"context"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name: "dupjobs",
		Jobs: []sdk.Job{
			{Name: "build", Run: ok},
			{Name: "test", DependsOn: []string{"build"}, Run: ok},
			{Name: "build", Run: ok},
		},
	})
}

func ok(context.Context, *sdk.J) error { return nil }
