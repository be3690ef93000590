// A pipeline program whose jobs misbehave on purpose, for the host's tests.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "behave",
		Description: "jobs that pass, fail, panic, hang and leak",
		Jobs: []sdk.Job{
			{Name: "ok", Run: func(ctx context.Context, j *sdk.J) error {
				j.Logf("hello from %s in %s", j.Name(), j.Workspace())
				j.SetOutput("answer", "42")
				j.SetOutput("env_secret", os.Getenv("KILN_TEST_SECRET"))
				return nil
			}},
			{Name: "fail", DependsOn: []string{"ok"}, Run: func(ctx context.Context, j *sdk.J) error {
				j.Logf("about to fail")
				return errors.New("the tests are red")
			}},
			{Name: "panic", Run: func(ctx context.Context, j *sdk.J) error {
				var m map[string]int
				m["boom"]++
				return nil
			}},
			{Name: "hang", Run: func(ctx context.Context, j *sdk.J) error {
				j.Logf("ignoring my context")
				time.Sleep(time.Hour)
				return nil
			}},
			{Name: "slow", Timeout: 300 * time.Millisecond, Run: func(ctx context.Context, j *sdk.J) error {
				<-ctx.Done()
				return ctx.Err()
			}},
			{Name: "child", Run: func(ctx context.Context, j *sdk.J) error {
				cmd := exec.Command("sleep", "600")
				if err := cmd.Start(); err != nil {
					return err
				}
				j.Logf("child %s", strconv.Itoa(cmd.Process.Pid))
				j.SetOutput("pid", strconv.Itoa(cmd.Process.Pid))
				return nil
			}},
			{Name: "crash", Run: func(ctx context.Context, j *sdk.J) error {
				// A panic outside the job's goroutine takes the program down.
				go func() { panic("giving up") }()
				time.Sleep(time.Minute)
				return nil
			}},
			{Name: "exit", Run: func(ctx context.Context, j *sdk.J) error {
				fmt.Fprintln(os.Stderr, "bye")
				os.Exit(3)
				return nil
			}},
			{Name: "print", Run: func(ctx context.Context, j *sdk.J) error {
				fmt.Println("hello on stdout")
				fmt.Fprintln(os.Stderr, "hello on stderr")
				return nil
			}},
			{Name: "exec", Run: func(ctx context.Context, j *sdk.J) error {
				return j.Exec(ctx, "sh", "-c", "echo out; echo err >&2; exit 4")
			}},
		},
	})
}
