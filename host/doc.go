// Package host is the worker's side of running pipelines: it pulls and
// verifies binaries, starts pipeline programs through go-plugin and runs
// their jobs.
//
// # Programs
//
// A pipeline program is started with go-plugin's checksum check, gRPC only,
// automatic mTLS and an environment made from scratch (Env), so that nothing
// of the worker's, its secret above all, reaches pipeline code. The program
// runs in a process group of its own; Stop kills the whole group, so that
// commands a job started die with it. On Linux the kernel also kills the
// program when its worker dies.
//
// # Cancellation
//
// Execute takes the job's context. When it ends (cancel, timeout, or the
// attempt was given to another worker) the job's context in the program is
// cancelled; a job that has not returned within the grace period gets its
// whole program killed.
package host
