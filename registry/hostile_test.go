package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hostile or strange sources: each is built correctly or refused with a
// reason, and nothing escapes the checkout.

func TestRefsWithSlashesDotsAndUnicodeBuild(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	src := fixtureRepo(t, "good")
	repo := strings.TrimPrefix(src, "file://")
	head := git(t, repo, "rev-parse", "HEAD")
	for _, ref := range []string{"release/1.2/hotfix", "färg/ünï.cøde", "v1.2.3-rc.1"} {
		git(t, repo, "branch", ref)
	}
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src}, nil); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"release/1.2/hotfix", "färg/ünï.cøde", "v1.2.3-rc.1"} {
		v, err := r.Build(context.Background(), "web", ref, nil)
		if err != nil || v.Commit != head || v.Ref != ref {
			t.Errorf("Build(%q) = %v, %v; want commit %s", ref, v, err, head)
		}
	}
}

func TestRefsThatLookLikeOptionsOrShellAreRefused(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	src := fixtureRepo(t, "good")
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src}, nil); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "pwned")
	for _, ref := range []string{"--upload-pack=touch " + marker, "-c", "$(touch " + marker + ")",
		"`touch " + marker + "`", "main;touch " + marker, "a..b"} {
		v, err := r.Build(context.Background(), "web", ref, nil)
		if err == nil {
			t.Errorf("Build(%q) = %v, want a refusal", ref, v)
			continue
		}
		if !errors.Is(err, ErrBadRef) && !errors.Is(err, ErrRefNotFound) {
			t.Errorf("Build(%q): %v, want a bad or unknown ref", ref, err)
		}
		if !strings.Contains(err.Error(), "ref") {
			t.Errorf("Build(%q): %q does not say the ref is at fault", ref, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a ref ran a command")
	}
}

func TestCommitMadeUnreachableByAForcePushIsRefusedClearly(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	src := fixtureRepo(t, "good")
	repo := strings.TrimPrefix(src, "file://")
	old := git(t, repo, "rev-parse", "HEAD")
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src}, nil); err != nil {
		t.Fatal(err)
	}
	// Rewrite main so that the old commit is on no branch any more.
	git(t, repo, "commit", "--quiet", "--amend", "-m", "rewritten")
	rewritten := git(t, repo, "rev-parse", "HEAD")

	v, err := r.Build(context.Background(), "web", "", nil)
	if err != nil || v.Commit != rewritten {
		t.Fatalf("recompile after the force-push = %v, %v; want the new commit %s", v, err, rewritten)
	}
	// The old commit is reused from the build index, or refused when it
	// must be fetched; never built from something else.
	v, err = r.Build(context.Background(), "web", old, nil)
	if err == nil && v.Commit != old {
		t.Fatalf("Build(old commit) built %s", v.Commit)
	}
	if err != nil && !strings.Contains(err.Error(), old) {
		t.Fatalf("Build(old commit): %v; want the commit named", err)
	}
}

func TestSubmoduleAtALocalPathIsRefusedWithTheReason(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	sub := newRepo(t)
	commit(t, sub, map[string]string{"README": "a submodule\n"}, "sub")
	src := fixtureRepo(t, "good")
	repo := strings.TrimPrefix(src, "file://")
	git(t, repo, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", sub, "vendored")
	git(t, repo, "commit", "--quiet", "-m", "add a submodule")

	// A submodule at a local path is what git itself refuses to clone.
	_, _, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src}, nil)
	if err == nil || !strings.Contains(err.Error(), "a submodule points at a local path") {
		t.Fatalf("a submodule at a local path: err = %v, want the reason", err)
	}
	if _, err := r.Get("web"); err == nil {
		t.Fatal("the refused pipeline was recorded")
	}
}
