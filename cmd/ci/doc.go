// Command ci is Kiln's command-line tool: it drives a master (`ci server`)
// through the gRPC API of proto/kiln.proto, and other files add the server,
// worker and demo commands through extra.go.
//
// # Connection and token
//
// Every command that talks to the master takes --master (default
// 127.0.0.1:7070, env KILN_MASTER), --token (env KILN_TOKEN), --token-file
// (env KILN_TOKEN_FILE) and -o table|json (env KILN_OUTPUT). A flag on the
// command line wins over its variable; --token wins over --token-file at the
// same level. The token is sent with every call when one is given, since the
// master is the one that decides which calls need it (today: every call that
// changes something). The master writes the token to DATA/admin.token.
//
// # Exit codes
//
//	0  success
//	1  failure: the master refused the call or could not be reached, a build
//	   failed, or the run that `ci run --wait` followed ended other than
//	   succeeded
//	2  usage: unknown command or flag, wrong number of arguments, a malformed
//	   NAME@REF, --param or run ID, flags that contradict each other, a
//	   `pipeline update` with nothing to change, a webhook secret file that
//	   is missing or empty
//
// Every failure prints one line, `ci: <message>`, to stderr. The message of
// a refused call is the master's own sentence.
//
// # JSON
//
// With -o json a command prints one JSON value on stdout: an object for one
// thing, an array (never null) for a list. Keys are snake_case and always
// present: strings are "" when unknown, maps are {} when empty, and
// timestamps are RFC 3339 strings in UTC with milliseconds, or null when the
// event has not happened yet (the API's zero). IDs are numbers.
//
// A pipeline (pipeline list, show, update). "triggers" say what starts its
// runs besides `ci run`: "webhook" is true when a secret is set (the secret
// itself is never shown), "poll_ms" 0 is no polling, "timezone" "" is UTC
// and "depends_on" names the pipelines whose successful runs start it.
// "trigger_state" is what the master's trigger loops last saw, with the
// commit a poll saw in full and "next_schedule" the next slot of the
// schedules. "events" are the newest trigger events, newest first, and []
// in pipeline list; an event's "outcome" is started, ignored or failed.
// "params" are what the current version declares ([] in pipeline list),
// "type" string, bool or choice:
//
//	{"id", "name", "description", "source", "dir", "ref", "current_version",
//	 "created", "modified",
//	 "last_run": null | {"id", "status", "at", "by"},
//	 "triggers": {"webhook", "poll_ms", "schedules", "timezone",
//	              "depends_on"},
//	 "trigger_state": {"poll_commit", "polled_at", "poll_error",
//	                   "scheduled_at", "next_schedule"},
//	 "events": [{"at", "trigger", "outcome", "message", "run_id",
//	             "version"}],
//	 "params": [{"name", "type", "default", "description", "choices"}]}
//
// A trigger says what started a run, or tried to: "kind" is manual,
// webhook, poll, schedule or upstream, "by" who (a token's name, the
// pusher, the cron expression), "detail" one line for people, "delivery"
// the webhook delivery's ID, and "ref" and "commit" what a webhook or a
// poll asked to build:
//
//	{"kind", "by", "detail", "delivery", "upstream_pipeline",
//	 "upstream_run", "ref", "commit"}
//
// A version (registry list, pipeline create, recompile, pin); "digest" is
// "sha256:<hex>" and "commit" the full hash, "status" is building, ready or
// failed, "output" holds the compiler's lines and "jobs" the names of the
// jobs the program declares:
//
//	{"pipeline", "version", "ref", "commit", "digest", "status", "build_ms",
//	 "reused", "error", "output", "goos", "goarch", "created", "jobs"}
//
// A run (run, runs list, runs show, runs cancel); "status" is queued,
// running, succeeded, failed or cancelled, and a job's status is one of
// those or skipped; "started_by" is who or what started it in short
// ("admin", "webhook alice", "upstream build#12") and "trigger" the whole
// trigger; "worker" is the name of the worker of the job's latest attempt
// and "waiting" why a queued job has not started:
//
//	{"id", "pipeline", "version", "commit", "digest", "status", "reason",
//	 "started_by", "trigger", "params", "created", "started", "finished",
//	 "jobs": [{"name", "status", "worker", "attempts", "started",
//	           "finished", "error", "waiting", "depends_on", "outputs",
//	           "history": [{"id", "worker", "status", "started",
//	                        "finished", "error"}]}]}
//
// An attempt's status is assigned, running, succeeded, failed, lost,
// revoked or cancelled.
//
// A worker (workers list, suspend, resume); "state" is ready, suspended,
// draining, unhealthy, lost or disconnected:
//
//	{"id", "name", "hostname", "state", "reason", "last_seen", "joined",
//	 "goos", "goarch", "labels", "slots", "busy"}
//
// `ci pipeline delete` prints {"name", "deleted": true}. `ci logs -o json`
// prints JSON Lines, one {"job", "data"} object per chunk of log, data being
// the bytes as a string.
package main
