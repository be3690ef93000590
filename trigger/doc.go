// Package trigger decides what starts a run, apart from a user asking for
// one: a webhook delivery from a forge, a schedule's slot, or the end of
// an upstream pipeline's run. Its functions are pure: they read headers
// and bodies they are given, take the time as an argument, and keep
// nothing between calls.
//
// # Webhooks
//
// Read authenticates a delivery from GitHub, Gitea (and Forgejo) or
// GitLab against the pipeline's secret, over the body exactly as received
// and before parsing it, and says whether it is a push and of what. A
// delivery that is not signed is never accepted. Follows then says
// whether that push moves the ref the pipeline follows, reading the ref
// policy as registry.Resolve does.
//
// # Schedules
//
// A Schedule holds a pipeline's cron expressions in one time zone. Due
// answers once for any number of slots missed since the last look, so a
// master that was down runs a schedule once when it is back.
//
// # Upstream pipelines
//
// CheckUpstreams refuses a pipeline's upstreams that would let a run
// start itself again, naming the cycle; Downstream lists the pipelines
// that a finished run starts.
//
// # What the server keeps
//
// The server does everything that needs storage or a clock: it bounds and
// reads the request, answers the forge in time, records delivery IDs to
// drop redeliveries, puts the runs it starts on a durable queue, stores
// each schedule's last look, ticks, and decides which run outcomes start
// downstream runs. It also checks that upstream names exist, and guards
// against loops this package cannot see, such as a pipeline whose run
// pushes to the branch it follows.
package trigger
