// Package web is the master's dashboard, served on its HTTP port: the
// pipelines, one pipeline's versions and runs, a run's job graph and logs
// as they are written, and the workers.
//
// The dashboard is a client of the Master API, as `ci` is: it holds a gRPC
// connection to its own master and renders what the API answers, so that
// it shows nothing the API does not and needs no access of its own to the
// store. Pages are rendered on the server with html/template, which
// escapes everything a pipeline or a log prints; a little JavaScript
// (static/kiln.js, no build step) follows runs and logs through
// server-sent events and redraws what changed.
//
// Reading is open, as the API's reads are. Changing anything (starting,
// cancelling, recompiling, suspending) needs a session: the login page
// takes the admin token and sets an HTTP-only, SameSite=Strict cookie
// signed with a key derived from the token, so a new token ends every
// session. Every form carries a token derived from the session, and
// requests from another origin are refused.
package web
