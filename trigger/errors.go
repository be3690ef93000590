package trigger

import (
	"errors"

	"github.com/kilnci/kiln/internal/kinderr"
)

// Errors this package returns, matched with errors.Is. The text a user
// sees is the sentence of the error that wraps one of these, which names
// the header, expression or pipeline at fault and what to do; these texts
// only show when an error is printed without that context.
var (
	// ErrUnknownSender means a request carries none of the event headers
	// of GitHub, Gitea, Forgejo or GitLab.
	ErrUnknownSender = errors.New("trigger: unknown webhook sender")

	// ErrUnsigned means a delivery carries no signature or token, or no
	// secret is set to check one with. Such a delivery is never accepted.
	ErrUnsigned = errors.New("trigger: unsigned delivery")

	// ErrBadSignature means a delivery's signature or token does not match
	// the secret and the body as received.
	ErrBadSignature = errors.New("trigger: bad signature")

	// ErrMalformed means a signed delivery cannot be read: a push body that
	// is not JSON, has no ref, or names no commit, or a header that is
	// unusable.
	ErrMalformed = errors.New("trigger: malformed delivery")

	// ErrBadSchedule means a cron expression or a time zone is refused.
	ErrBadSchedule = errors.New("trigger: invalid schedule")

	// ErrBadUpstreams means a pipeline's upstream pipelines name itself,
	// name one pipeline twice, or close a cycle.
	ErrBadUpstreams = errors.New("trigger: invalid upstream pipelines")
)

// errorf makes an error of the given kind whose text is the formatted
// sentence alone. The format may wrap a cause with %w.
func errorf(kind error, format string, args ...any) error {
	return kinderr.Errorf(kind, format, args...)
}
