package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// The exit codes, documented for scripts in doc.go.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	// An interrupt cancels the command's context, so that a following
	// command (logs --follow, run --wait) ends its stream and says so.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRootCommand(serverCommands())
	root.SetArgs(os.Args[1:])
	code := execute(ctx, root, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs root and turns its error into the one line and the exit code
// that doc.go promises.
func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}

	// A message from the master may hold line breaks; the promise is one line.
	fmt.Fprintf(stderr, "ci: %s\n", oneLine(err.Error()))

	var usage *usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	return exitFailure
}

// oneLine puts a message that may hold line breaks (a master's, a
// compiler's) on one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
