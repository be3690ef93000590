package main

import "github.com/spf13/cobra"

// serverCommands lists the builders of the commands that live outside the
// client: server, worker, exec, demo. main passes them to newRootCommand,
// which adds one command per builder after the client commands.
//
// To add a command, return its constructor here. It may reuse the client's
// pieces: clientOptions (addFlags, dial, wantJSON), bindEnv for KILN_*
// variables, wantArgs and usageErrorf for exit code 2, writeJSON and
// newTable for output. It must not set PersistentPreRunE (see
// newRootCommand).
func serverCommands() []func() *cobra.Command {
	return nil
}
