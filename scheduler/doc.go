// Package scheduler makes the master's decisions: which workers may take
// work, which jobs are ready, which worker gets which job, when an attempt
// is lost, and what a run's state is. It does no I/O and reads no clock:
// every call takes the time, and the server applies what it returns
// (sending assignments and revocations, writing runs to disk). Its tests
// need no network.
//
// # Workers
//
// The worker table lives in memory. A worker is ready when its event stream
// is connected, its last heartbeat is fresh (within the TTL), it is neither
// suspended nor draining, and it reports itself healthy. Freshness is
// checked at the moment a worker is picked, so a worker that died between
// heartbeats gets no new job once its TTL has passed, even before anything
// marks it lost.
//
// # Dispatch
//
// Pick is a pure function: ready jobs in FIFO order (oldest run first, then
// the pipeline's declared job order), and for each the next worker in
// round-robin order (by worker ID, after the one picked last) that is ready,
// has a free slot and carries the job's labels and platform. A job no
// worker can take gets a reason that says why it waits.
//
// # Attempts and leases
//
// Each assignment is an attempt with a lease. An attempt must be accepted
// within the accept timeout, or it is revoked and the job is queued again
// without spending its retry budget. Heartbeats that list a running attempt
// renew its lease. When a lease expires the attempt is lost: the job is
// queued again while its retry budget lasts, otherwise it fails with the
// reason. A result for an attempt that is not the job's live attempt is
// refused (ErrStale), so a job never completes twice.
//
// # Runs
//
// A job starts when all its dependencies succeeded. A failed job skips its
// dependents, and the run fails once nothing is left running. Cancel marks
// queued jobs cancelled and revokes running attempts at once; the run is
// final immediately and later results for it are refused.
package scheduler
