// The demo pipeline: a small release graph with a fan-out, a fan-in and an
// output passed from one job to the jobs after it.
//
//	          ┌── lint ───────┐
//	prepare ──┼── unit ───────┼── package ── publish
//	          └── integration ┘
package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "demo",
		Description: "A release graph: prepare, three checks in parallel, package, publish",
		Params: []sdk.Param{
			{Name: "channel", Type: sdk.Choice, Choices: []string{"beta", "stable"},
				Default: "beta", Description: "where publish puts the package"},
		},
		Jobs: []sdk.Job{
			{Name: "prepare", Run: prepare},
			{Name: "lint", DependsOn: []string{"prepare"}, Run: check("lint", 150*time.Millisecond)},
			{Name: "unit", DependsOn: []string{"prepare"}, Run: unit},
			{Name: "integration", DependsOn: []string{"prepare"},
				Run: check("integration", 300*time.Millisecond)},
			{Name: "package", DependsOn: []string{"prepare", "lint", "unit", "integration"},
				Run: pkg, Timeout: time.Minute},
			{Name: "publish", DependsOn: []string{"package"}, Run: publish},
		},
	})
}

// prepare decides the version that every later job works on.
func prepare(ctx context.Context, j *sdk.J) error {
	commit := j.Run().Commit
	if len(commit) > 7 {
		commit = commit[:7]
	}
	version := fmt.Sprintf("1.0.%d+%s", j.Run().RunID, commit)
	j.SetOutput("version", version)
	j.Logf("version %s", version)
	return nil
}

func check(what string, d time.Duration) func(context.Context, *sdk.J) error {
	return func(ctx context.Context, j *sdk.J) error {
		j.Logf("%s of %s", what, j.Input("prepare", "version"))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		j.Logf("%s passed", what)
		return nil
	}
}

func unit(ctx context.Context, j *sdk.J) error {
	for i := 1; i <= 3; i++ {
		j.Logf("suite %d/3 ok", i)
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	j.SetOutput("coverage", "87.5%")
	return nil
}

// pkg writes the package into its workspace and reports its checksum.
func pkg(ctx context.Context, j *sdk.J) error {
	version := j.Input("prepare", "version")
	body := fmt.Sprintf("demo %s, coverage %s\n", version, j.Input("unit", "coverage"))
	path := filepath.Join(j.Workspace(), "demo-"+version+".txt")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(body))
	j.SetOutput("sha256", fmt.Sprintf("%x", sum))
	j.Logf("packaged %s (sha256 %x)", filepath.Base(path), sum[:6])
	return nil
}

func publish(ctx context.Context, j *sdk.J) error {
	j.Logf("publishing package %s to %s", j.Input("package", "sha256")[:12], j.Param("channel"))
	return nil
}
