// The pipeline of Kiln's fault suite: a job whose parameter makes it
// misbehave in the ways pipeline programs do, with a timeout short enough
// to be passed in a test, and a job that floods its log, with a timeout
// long enough for that. Each does nothing unless the mode is its own.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	sdk.Serve(sdk.Pipeline{
		Name:        "faults",
		Description: "one job that misbehaves on request",
		Params: []sdk.Param{
			{Name: "mode", Type: sdk.Choice, Default: "ok",
				Choices: []string{"ok", "crash", "panic", "exit", "hang", "children", "flood", "sleep"}},
			{Name: "marker", Default: "0", Description: "a number that marks the children"},
			{Name: "lines", Default: "1000", Description: "how many lines flood writes"},
			{Name: "sleep", Default: "1s", Description: "how long sleep sleeps (under 3s)"},
		},
		Jobs: []sdk.Job{
			{Name: "act", Run: act, Timeout: 3 * time.Second},
			{Name: "flood", Run: flood, Timeout: 10 * time.Minute},
		},
	})
}

func act(ctx context.Context, j *sdk.J) error {
	switch j.Param("mode") {
	case "crash":
		go func() { panic("the program crashes outside its job") }()
		time.Sleep(time.Minute)
	case "panic":
		var m map[string]int
		m["x"]++
	case "exit":
		j.Logf("exiting with 7")
		os.Exit(7)
	case "hang":
		j.Logf("hanging past the timeout, deaf to my context")
		time.Sleep(time.Hour)
	case "children":
		return children(ctx, j)
	case "sleep":
		d, err := time.ParseDuration(j.Param("sleep"))
		if err != nil {
			return err
		}
		j.Logf("sleeping %s on %s", d, j.Run().Worker)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	j.Logf("done")
	return nil
}

// children starts a process tree that ignores the job's end, then hangs:
// the worker must kill the whole tree.
func children(ctx context.Context, j *sdk.J) error {
	arg := "600." + j.Param("marker")
	cmd := exec.Command("sh", "-c", "sleep "+arg+" & sleep "+arg)
	if err := cmd.Start(); err != nil {
		return err
	}
	j.Logf("started children sleeping %s (pid %d)", arg, cmd.Process.Pid)
	time.Sleep(time.Hour)
	return nil
}

// flood writes numbered lines that hold what logs must survive: invalid
// UTF-8, ANSI escapes, carriage returns, every 100th line is 64 KiB, and
// line 150 is a whole MiB.
// The suite regenerates the same bytes to check every one arrived.
func flood(ctx context.Context, j *sdk.J) error {
	if j.Param("mode") != "flood" {
		return nil
	}
	n, err := strconv.Atoi(j.Param("lines"))
	if err != nil {
		return err
	}
	w := j.Log()
	for i := 0; i < n; i++ {
		if _, err := w.Write(FloodLine(i)); err != nil {
			return err
		}
	}
	return nil
}

// FloodLine is line i of the flood; the suite has the same function.
func FloodLine(i int) []byte {
	body := fmt.Sprintf("%08d \x1b[3%dmcolour\x1b[0m \xff\xfe progress %d%%\r", i, i%8, i%100)
	if i%100 == 99 || i == 150 {
		size := 64 << 10
		if i == 150 {
			size = 1 << 20 // one line of a whole MiB
		}
		pad := make([]byte, size)
		for k := range pad {
			pad[k] = byte('a' + (i+k)%26)
		}
		body += string(pad)
	}
	return []byte(body + "\n")
}
