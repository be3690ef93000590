// Package kinderr makes errors whose text is one full sentence for the
// user and which still match a package's sentinel error through
// errors.Is, without the sentinel's own text in the sentence.
package kinderr

import "fmt"

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }

func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// Errorf formats an error that matches kind, and whatever the format wraps
// with %w.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}
