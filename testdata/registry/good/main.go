// A small valid pipeline: build, then test.
package main

import (
	"context"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "good",
		Description: "A small test pipeline",
		Jobs: []sdk.Job{
			{Name: "build", Run: ok},
			{Name: "test", DependsOn: []string{"build"}, Run: ok},
		},
	})
}

func ok(ctx context.Context, j *sdk.J) error {
	j.Logf("%s ok", j.Name())
	return nil
}
