// The pipeline of Kiln's end-to-end tests: its parameters make jobs slow,
// fail or hang, so that tests can kill workers and masters mid-job.
//
//	first ── slow ── last
//	      └─ flaky ─┘
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "e2e",
		Description: "jobs that sleep, fail or hang on request",
		Params: []sdk.Param{
			{Name: "sleep", Default: "0s", Description: "how long slow sleeps"},
			{Name: "fail", Type: sdk.Bool, Default: "false", Description: "whether flaky fails"},
			{Name: "hang", Type: sdk.Bool, Default: "false", Description: "whether slow ignores cancel"},
		},
		Jobs: []sdk.Job{
			{Name: "first", Run: first},
			{Name: "slow", DependsOn: []string{"first"}, Run: slow, Timeout: 30 * time.Second},
			{Name: "flaky", DependsOn: []string{"first"}, Run: flaky},
			{Name: "last", DependsOn: []string{"slow", "flaky"}, Run: last},
		},
	})
}

func first(ctx context.Context, j *sdk.J) error {
	j.SetOutput("token", fmt.Sprintf("run-%d", j.Run().RunID))
	j.Logf("first on %s", j.Run().Worker)
	return nil
}

func slow(ctx context.Context, j *sdk.J) error {
	d, err := time.ParseDuration(j.Param("sleep"))
	if err != nil {
		return fmt.Errorf("param sleep: %w", err)
	}
	j.Logf("slow starts on %s, attempt %d, sleeping %s", j.Run().Worker, j.Run().Attempt, d)
	if j.Param("hang") == "true" {
		time.Sleep(d)
		return nil
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		j.Logf("slow stopped: %v", context.Cause(ctx))
		return ctx.Err()
	}
	j.Logf("slow done on %s", j.Run().Worker)
	return nil
}

func flaky(ctx context.Context, j *sdk.J) error {
	if j.Param("fail") == "true" {
		j.Logf("flaky fails as asked")
		return errors.New("flaky failed on request")
	}
	return nil
}

func last(ctx context.Context, j *sdk.J) error {
	j.Logf("last got %s", j.Input("slow", "missing")+j.Input("flaky", "missing"))
	return nil
}
