package registry

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// refRepo is a repository with every kind of ref Resolve knows:
//
//	c0 ── c1 ── c2 (main)
//	       └── c3 (feature)
//
// c1 carries a lightweight tag "light", an annotated tag "v1.2.0" and
// "1.3.0"; c2 carries v1.2.3, v1.4.1 (annotated) and v2.0.0; c3 carries
// v2.1.0-rc.1. c0 has no ref pointing at it.
type refRepo struct {
	url            string
	c0, c1, c2, c3 string
}

func newRefRepo(t *testing.T) refRepo {
	t.Helper()
	dir := newRepo(t)
	var r refRepo
	r.url = fileURL(dir)
	r.c0 = commit(t, dir, map[string]string{"a": "0"}, "c0")
	r.c1 = commit(t, dir, map[string]string{"a": "1"}, "c1")
	git(t, dir, "tag", "light")
	git(t, dir, "tag", "-a", "-m", "release 1.2.0", "v1.2.0")
	git(t, dir, "tag", "1.3.0")
	git(t, dir, "checkout", "--quiet", "-b", "feature")
	r.c3 = commit(t, dir, map[string]string{"b": "3"}, "c3")
	git(t, dir, "tag", "v2.1.0-rc.1")
	git(t, dir, "checkout", "--quiet", "main")
	r.c2 = commit(t, dir, map[string]string{"a": "2"}, "c2")
	git(t, dir, "tag", "v1.2.3")
	git(t, dir, "tag", "-a", "-m", "release 1.4.1", "v1.4.1")
	git(t, dir, "tag", "v2.0.0")
	return r
}

func TestResolveFindsEachKindOfRef(t *testing.T) {
	t.Parallel()
	repo := newRefRepo(t)
	tests := []struct {
		ref        string
		kind       RefKind
		name       string
		commit     string
		advertised bool
	}{
		{"", KindBranch, "main", repo.c2, true},
		{"main", KindBranch, "main", repo.c2, true},
		{"feature", KindBranch, "feature", repo.c3, true},
		{"refs/heads/feature", KindBranch, "feature", repo.c3, true},
		{"light", KindTag, "light", repo.c1, true},
		{"v1.2.0", KindTag, "v1.2.0", repo.c1, true}, // annotated: the commit, not the tag
		{"refs/tags/v1.4.1", KindTag, "v1.4.1", repo.c2, true},
		{repo.c1, KindCommit, repo.c1, repo.c1, true},
		{strings.ToUpper(repo.c2), KindCommit, repo.c2, repo.c2, true},
		{repo.c0, KindCommit, repo.c0, repo.c0, false},
		{"^1.2", KindSemver, "v1.4.1", repo.c2, true},
		{"~1.2.0", KindSemver, "v1.2.3", repo.c2, true},
		{"~1.3", KindSemver, "1.3.0", repo.c1, true},
		{">=2", KindSemver, "v2.0.0", repo.c2, true}, // a pre-release is not picked
		{">=2.1.0-0", KindSemver, "v2.1.0-rc.1", repo.c3, true},
		{">= 1.0, < 1.3", KindSemver, "v1.2.3", repo.c2, true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			t.Parallel()
			got, err := Resolve(context.Background(), repo.url, tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			wantRef := tt.ref
			if wantRef == "" {
				wantRef = "main"
			}
			want := Resolved{Ref: wantRef, Kind: tt.kind, Name: tt.name, Commit: tt.commit,
				Advertised: tt.advertised}
			if got != want {
				t.Errorf("Resolve(%q) = %+v, want %+v", tt.ref, got, want)
			}
		})
	}
}

func TestResolveRefusesRefsWithAClearError(t *testing.T) {
	t.Parallel()
	repo := newRefRepo(t)
	tests := []struct {
		ref  string
		kind error
		msg  string
	}{
		{"relase", ErrRefNotFound, `ref "relase" matches no branch or tag`},
		{"^9", ErrRefNotFound, `ref "^9" matches no branch or tag, and no version tag ` +
			`satisfies it (the newest version tag is v2.0.0)`},
		{repo.c1[:7], ErrRefNotFound, "give a commit as its full 40 characters"},
		{"-upload-pack=evil", ErrBadRef, `ref "-upload-pack=evil" must not start with '-'`},
		{"main..feature", ErrBadRef, `must not contain ".."`},
		{"ma\x00in", ErrBadRef, "control character"},
		{"main\n", ErrBadRef, "control character"},
		{"HEAD@{1}", ErrBadRef, "a character that no branch"},
		{strings.Repeat("a", 256), ErrBadRef, "longer than 255 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			t.Parallel()
			_, err := Resolve(context.Background(), repo.url, tt.ref)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("error = %v, want one wrapping %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestResolveOfAMissingRepositoryNamesIt(t *testing.T) {
	t.Parallel()
	missing := fileURL(filepath.Join(t.TempDir(), "nope"))

	_, err := Resolve(context.Background(), missing, "main")

	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("error = %v, want ErrFetch naming %s", err, missing)
	}
}

func TestResolveWithoutHeadSymrefFallsBackToTheOnlyBranchAtHead(t *testing.T) {
	t.Parallel()
	out := []byte("1111111111111111111111111111111111111111\tHEAD\n" +
		"1111111111111111111111111111111111111111\trefs/heads/trunk\n" +
		"2222222222222222222222222222222222222222\trefs/heads/other\n")

	got, err := parseLsRemote(out).defaultBranch("x")

	if err != nil || got.Name != "trunk" {
		t.Fatalf("defaultBranch = %+v, %v; want trunk", got, err)
	}
}

func TestParseSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, git string
		err     string
	}{
		{in: "file:///srv/repos/app", git: "file:///srv/repos/app"},
		{in: "file://localhost/srv/repos/app", git: "file:///srv/repos/app"},
		{in: "/srv/repos/app", git: "file:///srv/repos/app"},
		{in: "/srv/repos/../repos/app/", git: "file:///srv/repos/app"},
		{in: "git::file:///srv/app", git: "file:///srv/app"},
		{in: "https://example.com/x.git", git: "https://example.com/x.git"},
		{in: "git::https://example.com/x.git", git: "https://example.com/x.git"},
		{in: "ssh://git@example.com/x.git", git: "ssh://git@example.com/x.git"},
		{in: "", err: "no source"},
		{in: "repos/app", err: "neither a URL nor an absolute path"},
		{in: "git@example.com:x.git", err: "ssh://git@example.com/x.git"},
		{in: "-oProxyCommand=x", err: "must not start with '-'"},
		{in: "s3::https://bucket/x", err: `only git sources are supported, not "s3"`},
		{in: "ext::sh -c touch% /tmp/pwned", err: "space or control character"},
		{in: "ftp://example.com/x", err: `scheme "ftp"`},
		{in: "https://example.com/x.git?ref=main", err: "must not carry a query"},
		{in: "https://example.com/x.git//sub", err: "--dir"},
		{in: "https:///x.git", err: "has no host"},
		{in: "file://otherhost/x", err: `not host "otherhost"`},
	}
	for _, tt := range tests {
		got, err := ParseSource(tt.in)
		if tt.err != "" {
			if !errors.Is(err, ErrBadSource) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSource(%q) error = %v, want ErrBadSource containing %q",
					tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got.Git != tt.git || got.Given != tt.in {
			t.Errorf("ParseSource(%q) = %+v, %v; want git %q", tt.in, got, err, tt.git)
		}
	}
}

func TestCheckDir(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: ""},
		{in: ".", want: ""},
		{in: "ci/pipeline/", want: "ci/pipeline"},
		{in: "./ci//pipeline", want: "ci/pipeline"},
		{in: "ci/../pipeline", bad: true},
		{in: "../elsewhere", bad: true},
		{in: "/etc", bad: true},
		{in: "ci\x00", bad: true},
	}
	for _, tt := range tests {
		got, err := CheckDir(tt.in)
		if tt.bad != (err != nil) || got != tt.want {
			t.Errorf("CheckDir(%q) = %q, %v", tt.in, got, err)
		}
		if tt.bad && !errors.Is(err, ErrBadDir) {
			t.Errorf("CheckDir(%q) error %v does not wrap ErrBadDir", tt.in, err)
		}
	}
}

func TestGitURLAndRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, git string }{
		{"/srv/app", "file:///srv/app"},
		{"git::https://example.com/x.git", "https://example.com/x.git"},
		{"not a source", "not a source"},
	}
	for _, tt := range tests {
		if got := GitURL(tt.in); got != tt.git {
			t.Errorf("GitURL(%q) = %q, want %q", tt.in, got, tt.git)
		}
	}
	if got := redact("https://bot:s3cret@example.com/x.git"); strings.Contains(got, "s3cret") {
		t.Errorf("redact kept the password: %s", got)
	}
}
