// The pipeline the dashboard's browser test runs: a diamond whose two
// middle jobs show what a log page must get right, a coloured and
// hostile log and a job still running while its log is read.
//
//	        ┌── paint ──┐
//	fetch ──┤           ├── report
//	        └── hold ───┘
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "dashboard",
		Description: "A diamond with a coloured log and a job that waits for a file",
		Params: []sdk.Param{
			{Name: "target", Type: sdk.Choice, Choices: []string{"staging", "production"},
				Default: "staging", Description: "what report names"},
			{Name: "gate", Description: "a file hold waits for; empty waits 3s"},
		},
		Jobs: []sdk.Job{
			{Name: "fetch", Run: fetch},
			{Name: "paint", DependsOn: []string{"fetch"}, Run: paint},
			{Name: "hold", DependsOn: []string{"fetch"}, Run: hold, Timeout: time.Minute},
			{Name: "report", DependsOn: []string{"paint", "hold"}, Run: report},
		},
	})
}

func fetch(ctx context.Context, j *sdk.J) error {
	j.Logf("fetched run %d", j.Run().RunID)
	return nil
}

// paint prints colours, which the page shows as spans, markup, which it
// must show as text, and a progress line redrawn after a carriage return,
// as tools that draw progress bars do.
func paint(ctx context.Context, j *sdk.J) error {
	j.Logf("\x1b[31mred alert\x1b[0m then \x1b[1;32mbold green\x1b[0m")
	j.Logf("<script>alert(1)</script> & <b>not bold</b>")
	j.Logf("progress 50%%\rprogress 100%%")
	j.Logf("painted")
	return nil
}

// hold runs until the file named by the gate parameter exists, so that a
// test can read its log while it runs; without a gate it waits 3s.
func hold(ctx context.Context, j *sdk.J) error {
	gate := j.Param("gate")
	j.Logf("holding for %s", orDefault(gate, "3s"))
	if gate == "" {
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		j.Logf("released")
		return nil
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(gate); err == nil {
			j.Logf("released")
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func report(ctx context.Context, j *sdk.J) error {
	j.Logf("report for %s", j.Param("target"))
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
