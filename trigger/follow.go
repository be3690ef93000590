package trigger

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
)

var (
	// The shapes of ref registry.Resolve tells apart before it tries a
	// semver constraint: a full commit, and a commit's prefix, which is
	// never read as a constraint even though "1234" parses as one.
	fullCommit = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	hexPrefix  = regexp.MustCompile(`^[0-9a-fA-F]{4,39}$`)
)

// Follows reports whether a push to ref (a full name: refs/heads/X or
// refs/tags/X) is one that a pipeline whose ref policy is policy runs,
// and when not, a short reason for the answer body ("the pipeline follows
// main").
//
// The policy is read as registry.Resolve reads it: a full commit follows
// no push; "refs/heads/X" and "refs/tags/X" follow that branch or tag; a
// plain name follows a branch or a tag of that name; and a semver
// constraint follows every tag named "1.2.3" or "v1.2.3" whose version it
// allows. Follows sees no list of refs, so a policy that is both a name
// and a constraint ("v2", "1.x") follows both: a tag push that satisfies
// it starts a run even when a branch of that name exists and Resolve
// would pick that branch. Likewise a tag older than the newest one the
// constraint allows starts a run that resolves to the same commit as the
// last; telling the two apart needs the refs, which is the caller's part.
func Follows(policy, ref string) (bool, string) {
	kind, name := splitRef(ref)
	switch {
	case kind == "":
		return false, fmt.Sprintf("ref %s is neither a branch nor a tag", ref)
	case policy == "":
		return false, "the pipeline follows the repository's default branch, which a " +
			"push does not name: give the pipeline a ref"
	case fullCommit.MatchString(policy):
		return false, "the pipeline is pinned to commit " + strings.ToLower(policy)
	}

	if branch, ok := strings.CutPrefix(policy, "refs/heads/"); ok {
		return answer(kind == "branch" && name == branch, "the pipeline follows branch "+branch)
	}
	if tag, ok := strings.CutPrefix(policy, "refs/tags/"); ok {
		return answer(kind == "tag" && name == tag, "the pipeline follows tag "+tag)
	}
	if name == policy {
		return true, ""
	}

	c := constraint(policy)
	if c == nil {
		return false, "the pipeline follows " + policy
	}
	reason := "the pipeline follows the version tags that " + policy + " allows"
	if kind != "tag" {
		return false, reason
	}
	v, err := semver.StrictNewVersion(strings.TrimPrefix(name, "v"))
	if err != nil {
		return false, reason + "; tag " + name + " is not a version such as v1.2.3"
	}
	return answer(c.Check(v), reason)
}

// answer gives the reason only with a no.
func answer(follows bool, reason string) (bool, string) {
	if follows {
		return true, ""
	}
	return false, reason
}

// splitRef returns "branch" or "tag" and the short name of a full ref, or
// "" for any other ref.
func splitRef(ref string) (kind, name string) {
	if name, ok := strings.CutPrefix(ref, "refs/heads/"); ok && name != "" {
		return "branch", name
	}
	if name, ok := strings.CutPrefix(ref, "refs/tags/"); ok && name != "" {
		return "tag", name
	}
	return "", ""
}

// constraint returns policy as a semver constraint, or nil when
// registry.Resolve would never read it as one.
func constraint(policy string) *semver.Constraints {
	if hexPrefix.MatchString(policy) {
		return nil
	}
	c, err := semver.NewConstraint(policy)
	if err != nil {
		return nil
	}
	return c
}
