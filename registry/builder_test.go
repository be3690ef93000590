package registry

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	kiln "github.com/kilnci/kiln"
)

func newBuilder(t *testing.T) *Builder {
	t.Helper()
	b, err := NewBuilder(BuildConfig{Dir: shared.data, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildKeyChangesWithEveryInput(t *testing.T) {
	t.Parallel()
	b := newBuilder(t)
	other, err := NewBuilder(BuildConfig{Dir: shared.data, GOARCH: "riscv64"})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := strings.Repeat("a", 40), strings.Repeat("b", 40)

	keys := map[string]string{
		"base":     b.Key(c1, ""),
		"commit":   b.Key(c2, ""),
		"dir":      b.Key(c1, "ci"),
		"platform": other.Key(c1, ""),
	}

	if b.Key(c1, "") != keys["base"] {
		t.Fatal("the same inputs gave two keys")
	}
	seen := map[string]string{}
	for what, k := range keys {
		if prev, ok := seen[k]; ok {
			t.Errorf("%s and %s share key %s", what, prev, k)
		}
		seen[k] = what
	}
}

func TestOverlayWrittenOnceAndWhole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	paths := make([]string, 6)
	errs := make([]error, 6)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := NewBuilder(BuildConfig{Dir: dir})
			if err == nil {
				paths[i], err = b.overlay()
			}
			errs[i] = err
		}()
	}
	wg.Wait()

	for i := range paths {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("overlay %d = %q, %v; want %q", i, paths[i], errs[i], paths[0])
		}
	}
	gomod, err := os.ReadFile(filepath.Join(paths[0], "go.mod"))
	if err != nil || string(gomod) != string(kiln.SDKGoMod) {
		t.Fatalf("overlay go.mod = %q, %v", gomod, err)
	}
	err = fs.WalkDir(kiln.SDKSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_, err = os.Stat(filepath.Join(paths[0], p))
		}
		return err
	})
	if err != nil {
		t.Fatalf("overlay misses a file: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "sdk", ".tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary overlays left behind: %v", leftovers)
	}
}

// snapshot lists every file under dir, .git included, with its mode and
// content, to show that a compile changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.Mode().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			out[rel] += " " + string(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCompileOfALocalFolderLeavesItUntouched(t *testing.T) {
	t.Parallel()
	warm(t, "good") // the Go build cache then holds the SDK's packages
	repo := newRepo(t)
	commit(t, repo, fixtureFiles(t, "good", "ci"), "pipeline in ci/")
	before := snapshot(t, repo)
	b := newBuilder(t)
	out := filepath.Join(t.TempDir(), "pipeline")

	output, err := b.Compile(context.Background(), filepath.Join(repo, "ci"), out, nil)

	if err != nil {
		t.Fatalf("Compile: %v\n%s", err, output)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no executable at %s: %v", out, err)
	}
	after := snapshot(t, repo)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
	if st := git(t, repo, "status", "--porcelain", "--ignored"); st != "" {
		t.Errorf("git status after the compile:\n%s", st)
	}
	if b.Compiles() != 1 {
		t.Errorf("Compiles = %d, want 1", b.Compiles())
	}
}

func TestCompileRefusesFoldersThatAreNotPipelines(t *testing.T) {
	t.Parallel()
	b := newBuilder(t)
	noMod := t.TempDir()
	if err := os.WriteFile(filepath.Join(noMod, "main.go"), []byte("package main\n"),
		0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "go.mod"), []byte("module x\n"),
		0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, want string
	}{
		{"no go.mod", noMod, "has no go.mod, nor has any folder above it"},
		{"no Go files", empty, "has no Go files"},
		{"not main", filepath.Join("..", "testdata", "registry", "notmain"),
			"holds package lib, not a main package"},
	}
	for _, tt := range tests {
		_, err := b.Compile(context.Background(), tt.dir, filepath.Join(t.TempDir(), "bin"), nil)
		if !errors.Is(err, ErrNotModule) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want ErrNotModule containing %q", tt.name, err, tt.want)
		}
	}
	if b.Compiles() != 0 {
		t.Errorf("the compiler ran %d times for folders it should refuse", b.Compiles())
	}
}

// Kiln's own repository may hold pipelines that import its sdk package from
// the same module; they build against the checkout, not the overlay.
func TestCompileOfKilnsOwnModuleUsesNoOverlay(t *testing.T) {
	t.Parallel()
	warm(t, "good")
	root := t.TempDir()
	err := fs.WalkDir(kiln.SDKSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(kiln.SDKSource, p)
		if err == nil {
			err = writeFile(filepath.Join(root, p), string(data))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	main := strings.Replace(fixtureFiles(t, "good", "")["main.go"], `"good"`, `"self"`, 1)
	if err := writeFile(filepath.Join(root, "go.mod"), string(kiln.SDKGoMod)); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(root, "ci", "self", "main.go"), main); err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t)
	mod, err := findModule(root, filepath.Join(root, "ci", "self"))
	if err != nil || mod.path != kiln.ModulePath {
		t.Fatalf("findModule = %+v, %v", mod, err)
	}

	output, err := b.Compile(context.Background(), filepath.Join(root, "ci", "self"),
		filepath.Join(t.TempDir(), "bin"), nil)

	if err != nil {
		t.Fatalf("Compile: %v\n%s", err, output)
	}
	work, err := b.writeWork(t.TempDir(), mod)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(work)
	if strings.Contains(string(data), "replace") {
		t.Errorf("go.work of Kiln's own module replaces it:\n%s", data)
	}
}

func writeFile(p, content string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}
