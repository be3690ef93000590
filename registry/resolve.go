package registry

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/Masterminds/semver/v3"
)

// RefKind says what a ref turned out to be.
type RefKind string

// The kinds of ref, in the order Resolve tries them.
const (
	KindCommit RefKind = "commit"
	KindTag    RefKind = "tag"
	KindBranch RefKind = "branch"
	KindSemver RefKind = "semver"
)

// Resolved is a ref resolved to a commit.
type Resolved struct {
	// Ref is the ref as asked; when none was asked, the default branch.
	Ref  string
	Kind RefKind
	// Name is the branch or tag the ref led to ("main", "v1.4.2"); for a
	// commit, the commit.
	Name   string
	Commit string
	// Advertised is false for a commit that no branch or tag of the remote
	// points at: it may still be in the history, which only a fetch can
	// tell.
	Advertised bool
}

// lsRemoteTimeout bounds `git ls-remote`, which only lists refs.
const lsRemoteTimeout = time.Minute

var (
	fullCommit = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	hexPrefix  = regexp.MustCompile(`^[0-9a-fA-F]{4,39}$`)
)

// Resolve lists the refs of the git repository at gitURL and resolves ref
// to a commit. A ref is, in this order:
//
//   - a full 40-hex commit;
//   - a tag or branch name, or a full "refs/tags/…" or "refs/heads/…" name
//     (a tag wins over a branch of the same name, as in git);
//   - a semver constraint ("^1.2", "~1.4.0", ">=2, <3") that picks the
//     newest tag named "1.2.3" or "v1.2.3" that it allows.
//
// An empty ref resolves to the remote's default branch (its HEAD).
// Annotated tags resolve to the commit they point at.
func Resolve(ctx context.Context, gitURL, ref string) (Resolved, error) {
	if err := CheckRef(ref); err != nil {
		return Resolved{}, err
	}
	refs, err := lsRemote(ctx, gitURL)
	if err != nil {
		return Resolved{}, err
	}
	if ref == "" {
		return refs.defaultBranch(gitURL)
	}
	return refs.resolve(ref)
}

// CheckRef refuses refs that cannot name anything Resolve accepts: a
// leading '-', "..", control characters, and a few characters git forbids
// in ref names that are not semver operators either.
func CheckRef(ref string) error {
	switch {
	case len(ref) > 255:
		return errorf(ErrBadRef, "ref %.20q… is longer than 255 characters", ref)
	case strings.HasPrefix(ref, "-"):
		return errorf(ErrBadRef, "ref %q must not start with '-'", ref)
	case strings.Contains(ref, ".."):
		return errorf(ErrBadRef, "ref %q must not contain \"..\"", ref)
	case strings.ContainsAny(ref, "\\:?[@{}"):
		return errorf(ErrBadRef, "ref %q contains a character that no branch, tag "+
			"or version constraint has", ref)
	}
	for _, r := range ref {
		if unicode.IsControl(r) || (unicode.IsSpace(r) && r != ' ') {
			return errorf(ErrBadRef, "ref %q contains a control character", ref)
		}
	}
	return nil
}

// remoteRefs is what `git ls-remote --symref` said.
type remoteRefs struct {
	head     string            // the branch HEAD points at, if the remote said
	headSHA  string            // the commit HEAD points at
	branches map[string]string // name -> commit
	tags     map[string]string // name -> commit, annotated tags peeled
}

func lsRemote(ctx context.Context, gitURL string) (*remoteRefs, error) {
	ctx, cancel := context.WithTimeout(ctx, lsRemoteTimeout)
	defer cancel()
	// "--" keeps a URL from ever being read as an option; no shell runs.
	cmd := exec.CommandContext(ctx, "git", "ls-remote", "--symref", "--", gitURL)
	cmd.Env = gitEnv()
	// git's transport helpers inherit the output pipes and outlive a killed
	// git: WaitDelay stops waiting for them, so the timeout holds.
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errorf(ErrFetch, "cannot list the refs of %s: %s", redact(gitURL),
			firstLine(stderr.String(), err))
	}
	return parseLsRemote(out), nil
}

// gitEnv is the environment of the git commands the registry runs: the
// master's, with prompts off, so that a repository that wants a password
// fails instead of waiting for a terminal that is not there.
func gitEnv() []string {
	// A server that sends less than a byte a second for 30 seconds is cut
	// off rather than waited on.
	return append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GCM_INTERACTIVE=never",
		"GIT_HTTP_LOW_SPEED_LIMIT=1", "GIT_HTTP_LOW_SPEED_TIME=30")
}

func parseLsRemote(out []byte) *remoteRefs {
	refs := &remoteRefs{branches: map[string]string{}, tags: map[string]string{}}
	peeled := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		left, name, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		if target, ok := strings.CutPrefix(left, "ref: "); ok {
			if name == "HEAD" {
				refs.head = strings.TrimPrefix(target, "refs/heads/")
			}
			continue
		}
		refs.add(left, name, peeled)
	}
	// A peeled annotated tag names the commit; the unpeeled line names the
	// tag object, which is not what a build checks out.
	for tag, commit := range peeled {
		refs.tags[tag] = commit
	}
	return refs
}

func (rr *remoteRefs) add(sha, name string, peeled map[string]string) {
	switch {
	case name == "HEAD":
		rr.headSHA = sha
	case strings.HasPrefix(name, "refs/heads/"):
		rr.branches[strings.TrimPrefix(name, "refs/heads/")] = sha
	case strings.HasPrefix(name, "refs/tags/") && strings.HasSuffix(name, "^{}"):
		peeled[strings.TrimSuffix(strings.TrimPrefix(name, "refs/tags/"), "^{}")] = sha
	case strings.HasPrefix(name, "refs/tags/"):
		rr.tags[strings.TrimPrefix(name, "refs/tags/")] = sha
	}
}

func (rr *remoteRefs) defaultBranch(gitURL string) (Resolved, error) {
	name := rr.head
	if name == "" {
		// Old servers do not say where HEAD points; a single branch at
		// HEAD's commit is unambiguous.
		name = rr.onlyBranchAt(rr.headSHA)
	}
	sha, ok := rr.branches[name]
	if name == "" || !ok {
		return Resolved{}, errorf(ErrRefNotFound, "%s has no default branch (HEAD); "+
			"give a ref", redact(gitURL))
	}
	return Resolved{Ref: name, Kind: KindBranch, Name: name, Commit: sha, Advertised: true}, nil
}

func (rr *remoteRefs) onlyBranchAt(sha string) string {
	found := ""
	for name, s := range rr.branches {
		if s == sha && sha != "" {
			if found != "" {
				return ""
			}
			found = name
		}
	}
	return found
}

func (rr *remoteRefs) resolve(ref string) (Resolved, error) {
	if fullCommit.MatchString(ref) {
		return rr.commit(ref), nil
	}
	if r, ok := rr.named(ref); ok {
		return r, nil
	}
	if hexPrefix.MatchString(ref) {
		return Resolved{}, errorf(ErrRefNotFound, "ref %q matches no branch or tag; "+
			"give a commit as its full 40 characters", ref)
	}
	if c, err := semver.NewConstraint(ref); err == nil {
		return rr.newestTag(ref, c)
	}
	return Resolved{}, errorf(ErrRefNotFound, "ref %q matches no branch or tag", ref)
}

func (rr *remoteRefs) commit(ref string) Resolved {
	sha := strings.ToLower(ref)
	r := Resolved{Ref: ref, Kind: KindCommit, Name: sha, Commit: sha}
	for _, m := range []map[string]string{rr.branches, rr.tags} {
		for _, s := range m {
			r.Advertised = r.Advertised || s == sha
		}
	}
	return r
}

func (rr *remoteRefs) named(ref string) (Resolved, bool) {
	tag, branch := ref, ref
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		tag, branch = t, ""
	} else if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		tag, branch = "", b
	}
	if sha, ok := rr.tags[tag]; ok {
		return Resolved{Ref: ref, Kind: KindTag, Name: tag, Commit: sha, Advertised: true}, true
	}
	if sha, ok := rr.branches[branch]; ok {
		return Resolved{Ref: ref, Kind: KindBranch, Name: branch, Commit: sha,
			Advertised: true}, true
	}
	return Resolved{}, false
}

// newestTag picks the highest version among the tags c allows. Tags are
// read as strict semver with an optional "v": "v1.2" is no version.
func (rr *remoteRefs) newestTag(ref string, c *semver.Constraints) (Resolved, error) {
	var best *semver.Version
	var bestTag string
	for tag := range rr.tags {
		v, err := semver.StrictNewVersion(strings.TrimPrefix(tag, "v"))
		if err != nil || !c.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(best) || (v.Equal(best) && tag < bestTag) {
			best, bestTag = v, tag
		}
	}
	if best == nil {
		return Resolved{}, errorf(ErrRefNotFound, "ref %q matches no branch or tag, "+
			"and no version tag satisfies it%s", ref, rr.newestVersionHint())
	}
	return Resolved{Ref: ref, Kind: KindSemver, Name: bestTag, Commit: rr.tags[bestTag],
		Advertised: true}, nil
}

// newestVersionHint names the newest release tag, or the newest version
// tag when all are pre-releases, for an error about a constraint.
func (rr *remoteRefs) newestVersionHint() string {
	var best *semver.Version
	var bestTag string
	for tag := range rr.tags {
		v, err := semver.StrictNewVersion(strings.TrimPrefix(tag, "v"))
		if err != nil {
			continue
		}
		release := v.Prerelease() == ""
		if best == nil || (release && best.Prerelease() != "") ||
			(release == (best.Prerelease() == "") && v.GreaterThan(best)) {
			best, bestTag = v, tag
		}
	}
	if best == nil {
		return " (the repository has no version tags)"
	}
	return fmt.Sprintf(" (the newest version tag is %s)", bestTag)
}

// firstLine returns the first non-empty line of a command's stderr, or the
// command's error when it printed nothing.
func firstLine(stderr string, err error) string {
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return err.Error()
}
