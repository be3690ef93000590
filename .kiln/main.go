// Kiln's own CI, as a Kiln pipeline: check formatting, vet and test in
// parallel, then build the ci binary.
//
//	gofmt ──┬── vet ───┬── build
//	        └── test ──┘
//
// Run it with `ci exec .kiln` from the repository's root, or register it:
// `ci pipeline create kiln --source file://$PWD --dir .kiln`.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "kiln",
		Description: "Kiln's own CI: gofmt, vet, short tests, build",
		Jobs: []sdk.Job{
			{Name: "gofmt", Run: gofmt, Timeout: 5 * time.Minute},
			{Name: "vet", DependsOn: []string{"gofmt"}, Run: vet, Timeout: 15 * time.Minute},
			{Name: "test", DependsOn: []string{"gofmt"}, Run: test, Timeout: 30 * time.Minute},
			{Name: "build", DependsOn: []string{"vet", "test"}, Run: build, Timeout: 15 * time.Minute},
		},
	})
}

// gofmt fails when a Go file outside testdata is not formatted.
func gofmt(ctx context.Context, j *sdk.J) error {
	src, err := j.Checkout(ctx)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "gofmt", "-l", ".")
	cmd.Dir, cmd.Stdout, cmd.Stderr = src, &out, j.Log()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gofmt: %w", err)
	}
	var bad []string
	for _, f := range strings.Fields(out.String()) {
		if !strings.Contains(f, "testdata/") {
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("not gofmt-ed: %s", strings.Join(bad, ", "))
	}
	j.Logf("every Go file is formatted")
	return nil
}

func vet(ctx context.Context, j *sdk.J) error {
	src, err := j.Checkout(ctx)
	if err != nil {
		return err
	}
	return j.ExecIn(ctx, src, "go", "vet", "./...")
}

// test runs the short tests: the full suite, with its end-to-end runs of
// this very pipeline, is .ci/run's.
func test(ctx context.Context, j *sdk.J) error {
	src, err := j.Checkout(ctx)
	if err != nil {
		return err
	}
	return j.ExecIn(ctx, src, "go", "test", "-short", "-count=1", "./...")
}

// build builds ci and hands its size and digest to whoever comes next.
func build(ctx context.Context, j *sdk.J) error {
	src, err := j.Checkout(ctx)
	if err != nil {
		return err
	}
	bin := filepath.Join(j.Workspace(), "ci")
	if err := j.ExecIn(ctx, src, "go", "build", "-trimpath", "-o", bin, "./cmd/ci"); err != nil {
		return err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	j.SetOutput("size", fmt.Sprint(len(data)))
	j.SetOutput("sha256", fmt.Sprintf("%x", sha256.Sum256(data)))
	j.Logf("built ci: %d bytes, sha256 %x", len(data), sha256.Sum256(data))
	return nil
}
