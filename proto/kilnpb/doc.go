// Package kilnpb is the generated code of proto/kiln.proto: the master's
// API for the CLI (Master) and for workers (Link). `make proto` writes it.
package kilnpb
