package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// env is what commands take from the process rather than from their
// arguments. Tests supply their own, so that they can run in parallel
// without t.Setenv and read "2s ago" off a clock that does not move.
type env struct {
	// getenv reads the KILN_* variables; os.Getenv by default.
	getenv func(string) string
	// now is the clock of "2s ago" and of running durations; time.Now by
	// default.
	now func() time.Time
}

// option changes the env of newRootCommand.
type option func(*env)

// withGetenv makes the commands read their variables through getenv.
func withGetenv(getenv func(string) string) option {
	return func(e *env) { e.getenv = getenv }
}

// withClock makes the commands tell the time with now.
func withClock(now func() time.Time) option {
	return func(e *env) { e.now = now }
}

// newRootCommand builds `ci` with every client command, then one command
// for each function of extra (server, worker, exec, demo: see extra.go).
//
// Flags bound with bindEnv take their variable in the root's
// PersistentPreRunE; a command that sets its own PersistentPreRunE hides it
// (cobra runs only the nearest one), so the added commands should use
// PreRunE instead.
func newRootCommand(extra []func(*env) *cobra.Command, opts ...option) *cobra.Command {
	e := &env{getenv: os.Getenv, now: time.Now}
	for _, opt := range opts {
		opt(e)
	}

	root := &cobra.Command{
		Use:   "ci",
		Short: "Kiln: CI/CD pipelines written as Go programs",
		// main prints the error as one line; a refused call is no reason
		// to print the usage.
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          unknownSubcommand,
		RunE:          showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd, e.getenv)
		},
	}
	root.SetFlagErrorFunc(flagError)

	root.AddCommand(
		newPipelineCommand(e),
		newRegistryCommand(e),
		newRecompileCommand(e),
		newPinCommand(e),
		newRunCommand(e),
		newRunsCommand(e),
		newLogsCommand(e),
		newWorkersCommand(e),
	)
	for _, build := range extra {
		root.AddCommand(build(e))
	}
	return root
}

// newGroupCommand builds a command that only holds subcommands, such as
// `ci pipeline`. Without Args and RunE cobra would print the help and exit
// 0 for `ci pipeline bogus`.
func newGroupCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  unknownSubcommand,
		RunE:  showHelp,
	}
	cmd.AddCommand(subs...)
	return cmd
}

func showHelp(cmd *cobra.Command, _ []string) error {
	return cmd.Help()
}

// unknownSubcommand refuses any argument of a command that only holds
// subcommands: the argument is a subcommand that does not exist.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(", did you mean %q?", s[0])
	}
	return &usageError{msg: msg, hint: "see " + cmd.CommandPath() + " --help"}
}

// wantArgs accepts between min and max positional arguments.
func wantArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && len(args) <= max {
			return nil
		}
		return usageErrorf(cmd, "want %s, got %d", argCount(min, max), len(args))
	}
}

// argCount says how many arguments a command takes.
func argCount(min, max int) string {
	switch {
	case max == 0:
		return "no arguments"
	case min == max && min == 1:
		return "1 argument"
	case min == max:
		return fmt.Sprintf("%d arguments", min)
	}
	return fmt.Sprintf("%d to %d arguments", min, max)
}

// usageError is a mistake in the command line, as opposed to a failure of
// the work; main exits 2 for it.
type usageError struct {
	msg  string
	hint string // how to find the right usage, e.g. "usage: ci pin NAME@REF"
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%s (%s)", e.msg, e.hint)
}

// usageErrorf reports a mistake in the command line of cmd.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{
		msg:  fmt.Sprintf(format, args...),
		hint: "usage: " + cmd.UseLine(),
	}
}

// flagError is the root's FlagErrorFunc: cobra asks every command's parents
// for one, so this covers every command.
func flagError(cmd *cobra.Command, err error) error {
	return usageErrorf(cmd, "%v", err)
}

// envAnnotation is the flag annotation that names the variable a flag falls
// back to.
const envAnnotation = "kiln_env"

// bindEnv makes the variable the fallback of the flag of fs named name, and
// says so in its help. Bind scalar flags only: a list flag would append.
func bindEnv(fs *pflag.FlagSet, name, variable string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("bindEnv: no flag " + name) // a programming mistake
	}
	f.Usage += " (env " + variable + ")"
	_ = fs.SetAnnotation(name, envAnnotation, []string{variable})
}

// applyEnv gives each flag of cmd that the command line left out the value
// of its variable, when the variable is set. It sets the value without
// marking the flag changed, so that Changed still means "on the command
// line": the token's precedence relies on that.
func applyEnv(cmd *cobra.Command, getenv func(string) string) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		vars := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(vars) == 0 {
			return
		}
		v := getenv(vars[0])
		if v == "" {
			return
		}
		if setErr := f.Value.Set(v); setErr != nil {
			err = usageErrorf(cmd, "%s=%q: %v", vars[0], v, setErr)
		}
	})
	return err
}
