// One job that does nothing: what Kiln's latency benchmark runs.
package main

import (
	"context"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "noop",
		Description: "one job that does nothing",
		Jobs: []sdk.Job{
			{Name: "noop", Run: func(context.Context, *sdk.J) error { return nil }},
		},
	})
}
