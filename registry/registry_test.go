package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func TestFirstBuildReportsEachStep(t *testing.T) {
	t.Parallel()
	progress := warm(t, "good")

	for _, step := range []string{
		"resolving the default branch of file://",
		"branch main is commit ",
		"fetching ",
		"compiling (first builds take a while)",
		"describing",
		"validating 2 jobs",
		"pipeline good created; version 1 is ready",
	} {
		if !strings.Contains(progress, step) {
			t.Errorf("progress does not say %q:\n%s", step, progress)
		}
	}
}

func TestCreateRecordsPipelineAndReadyVersion(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	src := fixtureRepo(t, "good")
	before := snapshot(t, strings.TrimPrefix(src, "file://"))

	p, v, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src}, nil)

	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, strings.TrimPrefix(src, "file://")); !maps.Equal(after, before) {
		t.Error("Create changed the source repository")
	}
	if p.Name != "web" || p.Source != src || p.Ref != "main" || p.Dir != "" ||
		p.Description != "A small test pipeline" || p.CurrentVersion != 1 || p.Id == 0 {
		t.Errorf("pipeline = %v", p)
	}
	if v.Pipeline != "web" || v.Version != 1 || v.Status != StatusReady || v.Ref != "main" ||
		len(v.Commit) != 40 || v.Goos != runtime.GOOS || v.Goarch != runtime.GOARCH ||
		v.Description.GetName() != "good" || len(v.Description.GetJobs()) != 2 {
		t.Errorf("version = %v", v)
	}
	if path, err := r.BinaryPath(v.Digest); err != nil || path == "" {
		t.Errorf("BinaryPath(%s) = %q, %v", v.Digest, path, err)
	}
	assertStored(t, r, p, v)
}

func TestDemoPipelineBuildsFromAnAbsolutePathInAFolder(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	repo := newRepo(t)
	files := map[string]string{}
	for _, f := range []string{"go.mod", "main.go"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "pipelines", "demo", f))
		if err != nil {
			t.Fatal(err)
		}
		files["pipelines/demo/"+f] = string(data)
	}
	commit(t, repo, files, "demo")

	p, v, err := r.Create(context.Background(), CreateRequest{Name: "demo", Source: repo,
		Dir: "pipelines/demo"}, nil)

	if err != nil {
		t.Fatal(err)
	}
	if p.Source != repo || GitURL(p.Source) != fileURL(repo) || p.Dir != "pipelines/demo" {
		t.Errorf("pipeline = %v", p)
	}
	d := v.Description
	if len(d.GetJobs()) != 6 || len(d.GetParams()) != 1 || d.GetParams()[0].GetName() != "channel" {
		t.Errorf("description = %v", d)
	}
}

// assertStored checks that every lookup returns what Create returned.
func assertStored(t *testing.T, r *Registry, p *kilnpb.Pipeline, v *kilnpb.Version) {
	t.Helper()
	got, err := r.Get(p.Name)
	if err != nil || got.String() != p.String() {
		t.Errorf("Get = %v, %v; want %v", got, err, p)
	}
	list, err := r.List()
	if err != nil || len(list) != 1 || list[0].String() != p.String() {
		t.Errorf("List = %v, %v", list, err)
	}
	for what, lookup := range map[string]func() (*kilnpb.Version, error){
		"Version": func() (*kilnpb.Version, error) { return r.Version(p.Name, v.Version) },
		"Current": func() (*kilnpb.Version, error) { return r.Current(p.Name) },
	} {
		if got, err := lookup(); err != nil || got.String() != v.String() {
			t.Errorf("%s = %v, %v; want %v", what, got, err, v)
		}
	}
	vs, err := r.Versions(p.Name)
	if err != nil || len(vs) != 1 || vs[0].String() != v.String() {
		t.Errorf("Versions = %v, %v", vs, err)
	}
}

func TestCreateWithBadInputRecordsNothing(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	good := fixtureRepo(t, "good")
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "taken",
		Source: good}, nil); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	tests := []struct {
		name   string
		req    CreateRequest
		kind   error
		want   []string
		output string // a line the failed version's Output must hold
	}{
		{name: "bad name", req: CreateRequest{Name: "Deploy!", Source: good},
			kind: ErrBadName, want: []string{`pipeline name "Deploy!": use 1 to 63`}},
		{name: "name taken", req: CreateRequest{Name: "taken", Source: good},
			kind: ErrExists, want: []string{`pipeline "taken" already exists`}},
		{name: "relative source", req: CreateRequest{Name: "a", Source: "repos/app"},
			kind: ErrBadSource, want: []string{`pipeline "a": source "repos/app"`}},
		{name: "missing repository",
			req:  CreateRequest{Name: "b", Source: "file://" + outside + "/nope"},
			kind: ErrFetch, want: []string{`pipeline "b": cannot list the refs of`}},
		{name: "ref matching nothing", req: CreateRequest{Name: "c", Source: good,
			Ref: "relase"}, kind: ErrRefNotFound,
			want: []string{`pipeline "c": ref "relase" matches no branch or tag`}},
		{name: "commit not in the repository", req: CreateRequest{Name: "d", Source: good,
			Ref: strings.Repeat("0", 40)}, kind: ErrRefNotFound,
			want: []string{"commit " + strings.Repeat("0", 40) + " is not in file://"}},
		{name: "dir climbing out", req: CreateRequest{Name: "e", Source: good, Dir: "../x"},
			kind: ErrBadDir, want: []string{`pipeline "e": folder "../x" must not contain`}},
		{name: "dir missing", req: CreateRequest{Name: "f", Source: good, Dir: "ci"},
			kind: ErrBadDir, want: []string{`folder "ci" does not exist at this commit`}},
		{name: "dir symlinked out", req: CreateRequest{Name: "g", Dir: "ci",
			Source: symlinkRepo(t, "ci", outside, nil)},
			kind: ErrBadDir, want: []string{`folder "ci" leads outside the repository`}},
		{name: "file symlinked out", req: CreateRequest{Name: "h",
			Source: symlinkRepo(t, "secret.go", "/etc/hostname", fixtureFiles(t, "good", ""))},
			kind: ErrBadDir, want: []string{`symlink "secret.go" points outside`}},
		{name: "no go.mod", req: CreateRequest{Name: "i", Source: noModRepo(t)},
			kind: ErrNotModule, want: []string{"the repository's root has no go.mod"}},
		{name: "not a main package", req: CreateRequest{Name: "j",
			Source: fixtureRepo(t, "notmain")}, kind: ErrNotModule,
			want: []string{"holds package lib, not a main package"}},
		{name: "compile error", req: CreateRequest{Name: "k",
			Source: fixtureRepo(t, "compileerr")}, kind: ErrCompile,
			want: []string{"compile failed", "github.com/kilnci/kiln v0.9.0",
				"SDK 0.1.0", "./main.go:8:51: undefined: undefinedJobs"},
			output: "./main.go:8:51: undefined: undefinedJobs"},
		{name: "duplicate jobs", req: CreateRequest{Name: "l",
			Source: fixtureRepo(t, "dupjobs")}, kind: ErrInvalidGraph,
			want: []string{`job "build" (2 times) is declared more than once`}},
		{name: "missing dependency", req: CreateRequest{Name: "m",
			Source: fixtureRepo(t, "missingdep")}, kind: ErrInvalidGraph,
			want: []string{`job "test" depends on "bulid", which is not a job`}},
		{name: "cycle", req: CreateRequest{Name: "n", Source: fixtureRepo(t, "cycle")},
			kind: ErrInvalidGraph, want: []string{"cycle: lint -> test -> package -> lint"}},
		{name: "protocol mismatch", req: CreateRequest{Name: "o",
			Source: fixtureRepo(t, "protocol")}, kind: ErrProtocol,
			want: []string{"plugin protocol 99 (SDK 9.0.0)", "this master speaks 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, v, err := r.Create(context.Background(), tt.req, nil)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("error = %v, want one wrapping %v", err, tt.kind)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.output != "" && (v == nil || v.Status != StatusFailed ||
				!strings.Contains(v.Output, tt.output) || v.Error != err.Error()) {
				t.Errorf("failed version = %v, want Output with %q", v, tt.output)
			}
		})
	}
	t.Cleanup(func() { assertOnlyTaken(t, r) })
}

func assertOnlyTaken(t *testing.T, r *Registry) {
	list, err := r.List()
	if err != nil || len(list) != 1 || list[0].Name != "taken" {
		t.Errorf("after failed creates, List = %v, %v", list, err)
	}
	vs, err := r.Versions("")
	if err != nil || len(vs) != 1 {
		t.Errorf("after failed creates, Versions = %v, %v", vs, err)
	}
}

// symlinkRepo commits files and a symlink at link pointing to target.
func symlinkRepo(t *testing.T, link, target string, files map[string]string) string {
	t.Helper()
	repo := newRepo(t)
	if err := os.Symlink(target, filepath.Join(repo, link)); err != nil {
		t.Fatal(err)
	}
	commit(t, repo, files, "symlink")
	return fileURL(repo)
}

func noModRepo(t *testing.T) string {
	t.Helper()
	repo := newRepo(t)
	commit(t, repo, map[string]string{"main.go": fixtureFiles(t, "good", "")["main.go"]},
		"no go.mod")
	return fileURL(repo)
}

func TestRecompileOfUnchangedPipelineReusesBinary(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	_, first, err := r.Create(context.Background(), CreateRequest{Name: "web",
		Source: fixtureRepo(t, "good")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var progress progressLog

	start := time.Now()
	v, err := r.Build(context.Background(), "web", "", progress.add)
	elapsed := time.Since(start)

	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recompile of an unchanged pipeline took %s", elapsed)
	if r.Builder().Compiles() != 0 {
		t.Errorf("the compiler ran %d times", r.Builder().Compiles())
	}
	if strings.Contains(progress.String(), "fetching") {
		t.Errorf("the recompile fetched:\n%s", progress.String())
	}
	if v.Version != 2 || !v.Reused || v.Digest != first.Digest || v.Status != StatusReady {
		t.Errorf("version = %v", v)
	}
	if cur, err := r.Current("web"); err != nil || cur.Version != 2 {
		t.Errorf("Current = %v, %v; want version 2", cur, err)
	}
	// Far above the 200 ms target, so that a loaded machine does not fail
	// it; a compile would still take longer. The benchmark gives the figure.
	if elapsed > 2*time.Second {
		t.Errorf("recompile took %s", elapsed)
	}
}

// BenchmarkRecompileUnchanged measures `ci recompile` of a pipeline whose
// commit has not moved: resolve, build index hit, describe, record.
func BenchmarkRecompileUnchanged(b *testing.B) {
	warm(b, "good")
	r := newRegistry(b)
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web",
		Source: fixtureRepo(b, "good")}, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Build(context.Background(), "web", "", nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompile")
}

func TestConcurrentCreatesOfOneCommitCompileOnce(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	repo := newRepo(t)
	files := fixtureFiles(t, "good", "ci")
	files["README"] = t.Name() // a commit no other test builds
	commit(t, repo, files, "pipeline in ci/")

	const n = 4
	var wg sync.WaitGroup
	versions := make([]*kilnpb.Version, n)
	errs := make([]error, n)
	logs := make([]progressLog, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, versions[i], errs[i] = r.Create(context.Background(), CreateRequest{
				Name: fmt.Sprintf("p%d", i), Source: fileURL(repo), Dir: "ci/"}, logs[i].add)
		}()
	}
	wg.Wait()

	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Create %d: %v", i, errs[i])
		}
		if versions[i].Digest != versions[0].Digest {
			t.Errorf("version %d has digest %s, want %s", i, versions[i].Digest,
				versions[0].Digest)
		}
		if !strings.Contains(logs[i].String(), "describing") {
			t.Errorf("caller %d saw no progress of the shared build:\n%s", i, logs[i].String())
		}
	}
	if c := r.Builder().Compiles(); c != 1 {
		t.Errorf("the compiler ran %d times, want 1", c)
	}
	if p, err := r.Get("p0"); err != nil || p.Dir != "ci" {
		t.Errorf("Get = %v, %v; want dir ci", p, err)
	}
}

func TestFailedRecompileIsRecordedAndKeepsTheCurrentVersion(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	src := fixtureRepo(t, "good")
	repo := strings.TrimPrefix(src, "file://")
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src},
		nil); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "tag", "v1.0.0")
	broken := strings.Replace(fixtureFiles(t, "good", "")["main.go"], "return nil",
		"return nope", 1)
	commit(t, repo, map[string]string{"main.go": broken}, "break it")

	v, err := r.Build(context.Background(), "web", "", nil)

	if !errors.Is(err, ErrCompile) || !strings.Contains(err.Error(), "undefined: nope") {
		t.Fatalf("Build error = %v, want a compile error naming nope", err)
	}
	if v.Version != 2 || v.Status != StatusFailed ||
		!strings.Contains(v.Output, "undefined: nope") {
		t.Errorf("failed version = %v", v)
	}
	if stored, err := r.Version("web", 2); err != nil || stored.String() != v.String() {
		t.Errorf("Version 2 = %v, %v; want the failed build", stored, err)
	}
	if cur, err := r.Current("web"); err != nil || cur.Version != 1 {
		t.Errorf("Current = %v, %v; want version 1", cur, err)
	}

	v, err = r.Build(context.Background(), "web", "v1.0.0", nil)

	if err != nil || v.Version != 3 || !v.Reused {
		t.Fatalf("Build at v1.0.0 = %v, %v", v, err)
	}
	if p, _ := r.Get("web"); p.CurrentVersion != 3 || p.Ref != "main" {
		t.Errorf("pipeline = %v; want current 3 still following main", p)
	}
}

func TestPinChangesThePolicyOnlyForARefThatBuilds(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	src := fixtureRepo(t, "good")
	repo := strings.TrimPrefix(src, "file://")
	git(t, repo, "tag", "v1.4.0")
	git(t, repo, "checkout", "--quiet", "-b", "broken")
	commit(t, repo, map[string]string{"broken.go": "package main\n\nvar x int = \"no\"\n"}, "break")
	git(t, repo, "checkout", "--quiet", "main")
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src},
		nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref      string
		kind     error
		policy   string
		versions int
	}{
		{ref: "relase", kind: ErrRefNotFound, policy: "main", versions: 1},
		{ref: "", kind: ErrBadRef, policy: "main", versions: 1},
		{ref: "broken", kind: ErrCompile, policy: "main", versions: 2},
		{ref: "^1.2", policy: "^1.2", versions: 3},
		{ref: "-x", kind: ErrBadRef, policy: "^1.2", versions: 3},
	}
	for _, tt := range tests {
		v, err := r.Pin(context.Background(), "web", tt.ref, nil)
		if tt.kind != nil && !errors.Is(err, tt.kind) {
			t.Errorf("Pin(%q) error = %v, want %v", tt.ref, err, tt.kind)
		}
		if tt.kind == nil && (err != nil || v.Ref != tt.ref || v.Status != StatusReady) {
			t.Errorf("Pin(%q) = %v, %v", tt.ref, v, err)
		}
		p, _ := r.Get("web")
		vs, _ := r.Versions("web")
		if p.Ref != tt.policy || len(vs) != tt.versions {
			t.Errorf("after Pin(%q): policy %q with %d versions, want %q with %d",
				tt.ref, p.Ref, len(vs), tt.policy, tt.versions)
		}
	}
}

func TestLookupsUpdateAndDelete(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	clock := time.UnixMilli(1_700_000_000_000)
	r.now = func() time.Time { return clock }
	src := fixtureRepo(t, "good")
	for _, name := range []string{"web", "api"} {
		if _, _, err := r.Create(context.Background(), CreateRequest{Name: name, Source: src},
			nil); err != nil {
			t.Fatal(err)
		}
	}

	all, err := r.Versions("")
	if err != nil || len(all) != 2 || all[0].Pipeline != "api" || all[1].Pipeline != "web" {
		t.Fatalf("Versions(\"\") = %v, %v", all, err)
	}

	created := clock
	clock = clock.Add(time.Minute)
	err = r.Update("web", func(p *kilnpb.Pipeline) error {
		p.LastRunId, p.LastRunStatus = 7, "succeeded"
		return nil
	})
	if p, _ := r.Get("web"); err != nil || p.LastRunId != 7 || p.Modified != created.UnixMilli() {
		t.Errorf("after a last-run Update, want it unmodified: %v, %v", p, err)
	}
	err = r.Update("web", func(p *kilnpb.Pipeline) error {
		p.Description = "changed"
		return nil
	})
	if p, _ := r.Get("web"); err != nil || p.Modified != clock.UnixMilli() {
		t.Errorf("after a settings Update, want it modified now: %v, %v", p, err)
	}
	if err := r.Update("web", func(p *kilnpb.Pipeline) error {
		p.Name = "other"
		return nil
	}); err == nil {
		t.Error("Update renamed the pipeline")
	}
	if err := r.Update("web", func(p *kilnpb.Pipeline) error {
		p.LastRunId = 8
		return errors.New("no")
	}); err == nil {
		t.Error("Update ignored fn's error")
	} else if p, _ := r.Get("web"); p.LastRunId != 7 {
		t.Errorf("a failed Update changed the pipeline: %v", p)
	}

	oldID := mustGet(t, r, "web").Id
	if err := r.Delete("web"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, r, "web")
	_, v, err := r.Create(context.Background(), CreateRequest{Name: "web", Source: src}, nil)
	if err != nil || v.Version != 1 || mustGet(t, r, "web").Id == oldID {
		t.Errorf("created again: %v, %v; want version 1 of a new pipeline", v, err)
	}
}

func mustGet(t *testing.T, r *Registry, name string) *kilnpb.Pipeline {
	t.Helper()
	p, err := r.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func assertGone(t *testing.T, r *Registry, name string) {
	t.Helper()
	checks := map[string]error{"Delete": r.Delete(name)}
	_, checks["Get"] = r.Get(name)
	_, checks["Versions"] = r.Versions(name)
	_, checks["Version"] = r.Version(name, 1)
	_, checks["Current"] = r.Current(name)
	_, checks["Build"] = r.Build(context.Background(), name, "", nil)
	checks["Update"] = r.Update(name, func(*kilnpb.Pipeline) error { return nil })
	names := make([]string, 0, len(checks))
	for what := range checks {
		names = append(names, what)
	}
	sort.Strings(names)
	for _, what := range names {
		if !errors.Is(checks[what], ErrNotFound) {
			t.Errorf("%s(%q) after Delete = %v, want ErrNotFound", what, name, checks[what])
		}
	}
}

func TestCurrentWithoutUsableVersionTellsWhatToRun(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	err := r.db.Update(func(tx *bbolt.Tx) error {
		return insertPipeline(tx, &kilnpb.Pipeline{Name: "web"})
	})
	if err != nil {
		t.Fatal(err)
	}

	_, err = r.Current("web")

	if !errors.Is(err, ErrNoVersion) || !strings.Contains(err.Error(), "ci recompile web") {
		t.Fatalf("Current = %v, want ErrNoVersion telling to run ci recompile web", err)
	}
}

func TestVersionOfUnknownNumberIsNotFound(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	if _, _, err := r.Create(context.Background(), CreateRequest{Name: "web",
		Source: fixtureRepo(t, "good")}, nil); err != nil {
		t.Fatal(err)
	}

	_, err := r.Version("web", 9)

	if !errors.Is(err, ErrNotFound) || err.Error() != `pipeline "web" has no version 9` {
		t.Fatalf("Version(web, 9) = %v", err)
	}
}

func TestRelayPassesLinesToEveryCallerUntilItLeaves(t *testing.T) {
	t.Parallel()
	var rl relay
	var a, b progressLog
	leaveA := rl.join("k", sayer(a.add))
	leaveB := rl.join("k", sayer(b.add))
	say := rl.sayer("k")

	say("fetching %s", "abc")
	leaveA()
	say("compiling")
	leaveB()
	say("describing")

	if a.String() != "fetching abc" {
		t.Errorf("first caller got %q", a.String())
	}
	if b.String() != "fetching abc\ncompiling" {
		t.Errorf("second caller got %q", b.String())
	}
	if len(rl.subs) != 0 {
		t.Errorf("relay keeps %d keys after every caller left", len(rl.subs))
	}
}
