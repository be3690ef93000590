package main

import "github.com/spf13/cobra"

// serverCommands lists the builders of the commands that run Kiln itself
// rather than talk to a master: server, worker, exec, demo. main passes
// them to newRootCommand, which adds one command per builder after the
// client commands. They must not set PersistentPreRunE (see
// newRootCommand).
func serverCommands() []func(*env) *cobra.Command {
	return []func(*env) *cobra.Command{
		newServerCommand,
		newWorkerCommand,
		newExecCommand,
		newDemoCommand,
	}
}
