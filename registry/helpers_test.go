package registry

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/kilnci/kiln/cache"
)

// shared is what every test of this binary shares, so that each example
// pipeline compiles once per run: the cache and its build index, and the
// data folder with the written-out SDK. Each test has a database of its
// own, hence pipelines of its own.
var shared struct {
	root  string
	cache *cache.Cache
	data  string
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := os.MkdirTemp("", "kiln-registry-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	db, err := bbolt.Open(filepath.Join(root, "cache.db"), 0o600, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	shared.root, shared.data = root, filepath.Join(root, "data")
	if shared.cache, err = cache.New(filepath.Join(root, "cache"), db); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// newRegistry returns a registry with a database of its own and the shared
// cache, closed when the test ends.
func newRegistry(t testing.TB) *Registry {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "kiln.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{DB: db, Cache: shared.cache, DataDir: shared.data,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		db.Close()
	})
	return r
}

// testLogger routes logs to t.Log; a benchmark's are dropped, since
// they would repeat at every round.
func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	return slog.New(slog.NewTextHandler(testWriter{t}, opts))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// progressLog collects progress lines; it is safe for concurrent use.
type progressLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *progressLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *progressLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// gitEnvForTests makes commits independent of the machine's git
// configuration, and their hashes stable.
var gitEnvForTests = []string{
	"GIT_AUTHOR_NAME=Kiln Test", "GIT_AUTHOR_EMAIL=test@kiln.invalid",
	"GIT_COMMITTER_NAME=Kiln Test", "GIT_COMMITTER_EMAIL=test@kiln.invalid",
	"GIT_AUTHOR_DATE=2025-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2025-01-02T03:04:05Z",
	"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnvForTests...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// newRepo makes an empty repository whose default branch is main.
func newRepo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	git(t, "", "init", "--quiet", "--initial-branch=main", dir)
	return dir
}

// commit writes files (path -> content) into the repository and commits
// everything; it returns the commit.
func commit(t testing.TB, repo string, files map[string]string, msg string) string {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(repo, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, repo, "add", "--all")
	git(t, repo, "commit", "--quiet", "--allow-empty", "-m", msg)
	return git(t, repo, "rev-parse", "HEAD")
}

// fixtureFiles reads an example pipeline of testdata/registry into a map
// for commit, under the folder prefix.
func fixtureFiles(t testing.TB, name, prefix string) map[string]string {
	t.Helper()
	root := filepath.Join("..", "testdata", "registry", name)
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[joinSlash(prefix, filepath.ToSlash(rel))] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func joinSlash(prefix, p string) string {
	if prefix == "" {
		return p
	}
	return prefix + "/" + p
}

// fixtureRepo makes a repository holding the example pipeline name at its
// root, and returns its file:// URL.
func fixtureRepo(t testing.TB, name string) string {
	t.Helper()
	repo := newRepo(t)
	commit(t, repo, fixtureFiles(t, name, ""), "add "+name)
	return fileURL(repo)
}

// warm builds the example pipeline once per test binary, so that the
// build index holds it for every test that uses it. It returns the
// progress lines of that first build.
func warm(t testing.TB, name string) string {
	t.Helper()
	warmMu.Lock()
	w, ok := warmed[name]
	if !ok {
		w = &warmBuild{}
		warmed[name] = w
	}
	warmMu.Unlock()
	w.once.Do(func() { w.progress, w.err = buildOnce(name) })
	if w.err != nil {
		t.Fatalf("first build of %s: %v", name, w.err)
	}
	return w.progress
}

type warmBuild struct {
	once     sync.Once
	progress string
	err      error
}

var (
	warmMu sync.Mutex
	warmed = map[string]*warmBuild{}
)

// buildOnce creates the pipeline in a registry of its own, at the commit
// that fixtureRepo makes for it: commits are stable, so every test's
// repository of that pipeline has the same build key.
func buildOnce(name string) (progress string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	tb := &onceTB{}
	r := newRegistry(tb)
	defer tb.cleanup()
	var lines progressLog
	_, _, err = r.Create(context.Background(), CreateRequest{Name: name,
		Source: fixtureRepo(tb, name)}, lines.add)
	return lines.String(), err
}

// onceTB is a testing.TB for work done once for several tests: it has
// folders and cleanups of its own and fails by panicking.
type onceTB struct {
	testing.TB
	cleanups []func()
}

func (o *onceTB) Helper()         {}
func (o *onceTB) Log(args ...any) {}
func (o *onceTB) Fatal(args ...any) {
	panic(fmt.Sprint(args...))
}
func (o *onceTB) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
func (o *onceTB) Cleanup(f func()) { o.cleanups = append(o.cleanups, f) }
func (o *onceTB) TempDir() string {
	d, err := os.MkdirTemp(shared.root, "once-")
	if err != nil {
		panic(err)
	}
	return d
}

func (o *onceTB) cleanup() {
	for i := len(o.cleanups) - 1; i >= 0; i-- {
		o.cleanups[i]()
	}
}
