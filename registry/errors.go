package registry

import (
	"errors"

	"github.com/kilnci/kiln/internal/kinderr"
)

// Errors the registry returns, matched with errors.Is. The text a user sees
// is the sentence of the error that wraps one of these, which names the
// pipeline, ref or job at fault; these texts only show when an error is
// printed without that context.
var (
	// ErrNotFound means no pipeline, or no version, has that name or number.
	ErrNotFound = errors.New("registry: not found")

	// ErrExists means a pipeline of that name already exists.
	ErrExists = errors.New("registry: pipeline already exists")

	// ErrNoVersion means a pipeline has no usable (ready) version yet.
	ErrNoVersion = errors.New("registry: no usable version")

	// ErrBadName means a pipeline name is not allowed.
	ErrBadName = errors.New("registry: invalid pipeline name")

	// ErrBadSource means a source URL cannot be fetched with git.
	ErrBadSource = errors.New("registry: invalid source")

	// ErrBadDir means a pipeline's folder is absolute, leaves the
	// repository, or does not exist in it.
	ErrBadDir = errors.New("registry: invalid pipeline folder")

	// ErrBadRef means a ref is malformed.
	ErrBadRef = errors.New("registry: invalid ref")

	// ErrRefNotFound means a ref matches no branch, tag or commit.
	ErrRefNotFound = errors.New("registry: ref not found")

	// ErrFetch means the source could not be listed or fetched.
	ErrFetch = errors.New("registry: fetch failed")

	// ErrNotModule means the pipeline's folder is not in a Go module or is
	// not a main package.
	ErrNotModule = errors.New("registry: not a Go main package")

	// ErrCompile means the Go compiler failed; the version's Output holds
	// its lines.
	ErrCompile = errors.New("registry: compile failed")

	// ErrDescribe means the built program could not be started or did not
	// describe itself.
	ErrDescribe = errors.New("registry: describe failed")

	// ErrProtocol means the program speaks another plugin protocol than
	// this master.
	ErrProtocol = errors.New("registry: plugin protocol mismatch")

	// ErrInvalidGraph means the program's jobs do not form a valid graph:
	// a job without a name, a name used twice, a dependency on a job that
	// does not exist, or a cycle.
	ErrInvalidGraph = errors.New("registry: invalid job graph")
)

// errorf makes an error of the given kind whose text is the formatted
// sentence alone. The format may wrap a cause with %w.
func errorf(kind error, format string, args ...any) error {
	return kinderr.Errorf(kind, format, args...)
}
