// A hundred independent jobs that do nothing: what Kiln's throughput
// benchmark runs.
package main

import (
	"context"
	"fmt"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	jobs := make([]sdk.Job, 100)
	for i := range jobs {
		jobs[i] = sdk.Job{Name: fmt.Sprintf("noop-%03d", i),
			Run: func(context.Context, *sdk.J) error { return nil }}
	}
	sdk.Serve(sdk.Pipeline{Name: "wide", Description: "100 jobs that do nothing", Jobs: jobs})
}
