// Package e2e holds Kiln's end-to-end tests: a real `ci` binary started as
// a master and as workers on loopback, real pipelines in git repositories
// made for each test, and processes killed with real signals.
package e2e
