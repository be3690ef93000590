package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/modfile"

	kiln "github.com/kilnci/kiln"
)

// module is the Go module a pipeline's folder belongs to.
type module struct {
	dir  string // the folder of its go.mod
	path string // its module path
	// kilnVersion is the version of Kiln's module its go.mod requires; ""
	// when it requires none.
	kilnVersion string
}

// findModule looks for the go.mod of pkgDir in pkgDir and its parents, no
// higher than root, the way the go command would.
func findModule(root, pkgDir string) (module, error) {
	for dir := pkgDir; within(root, dir); dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			return parseModule(root, dir, data)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return module{}, fmt.Errorf("registry: read go.mod: %w", err)
		}
		if dir == root || dir == filepath.Dir(dir) {
			break
		}
	}
	where := display(root, pkgDir) + " has no go.mod, nor has any folder above it"
	if pkgDir == root {
		where = display(root, pkgDir) + " has no go.mod"
	}
	return module{}, errorf(ErrNotModule, "%s: a pipeline is a Go module (run `go mod init`)",
		where)
}

func parseModule(root, dir string, data []byte) (module, error) {
	f, err := modfile.ParseLax(filepath.Join(dir, "go.mod"), data, nil)
	if err != nil {
		return module{}, errorf(ErrNotModule, "the go.mod of %s is invalid: %w",
			display(root, dir), err)
	}
	if f.Module == nil {
		return module{}, errorf(ErrNotModule, "the go.mod of %s has no module line",
			display(root, dir))
	}
	m := module{dir: dir, path: f.Module.Mod.Path}
	for _, r := range f.Require {
		if r.Mod.Path == kiln.ModulePath {
			m.kilnVersion = r.Mod.Version
		}
	}
	return m, nil
}

// checkMainPackage refuses a folder whose Go files are not a main package,
// before the compiler says so in its own words.
func checkMainPackage(root, pkgDir, goos, goarch string) error {
	ctxt := build.Default
	ctxt.GOOS, ctxt.GOARCH, ctxt.CgoEnabled = goos, goarch, false
	pkg, err := ctxt.ImportDir(pkgDir, 0)
	var noGo *build.NoGoError
	var multi *build.MultiplePackageError
	switch {
	case errors.As(err, &noGo):
		return errorf(ErrNotModule, "%s has no Go files to build", display(root, pkgDir))
	case errors.As(err, &multi):
		return errorf(ErrNotModule, "%s mixes packages %s", display(root, pkgDir),
			strings.Join(multi.Packages, " and "))
	case err != nil:
		// The compiler will say the same, in more detail.
		return nil
	case pkg.Name != "main":
		return errorf(ErrNotModule, "%s holds package %s, not a main package: a "+
			"pipeline is a main package that calls sdk.Serve", display(root, pkgDir), pkg.Name)
	}
	return nil
}

// display names a folder for the user: relative to the repository's root
// for a checkout, as is for a local folder.
func display(root, dir string) string {
	if root == string(filepath.Separator) {
		return fmt.Sprintf("folder %q", dir)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." {
		return "the repository's root"
	}
	return fmt.Sprintf("folder %q", filepath.ToSlash(rel))
}

// writeOverlay writes the SDK source and its go.mod into final. It writes a
// temporary folder and renames it, so that a concurrent build, in this
// process or another master's, never sees half an SDK.
func writeOverlay(final string) error {
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("registry: create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-*")
	if err != nil {
		return fmt.Errorf("registry: write the SDK: %w", err)
	}
	defer os.RemoveAll(tmp)

	if err := copySDK(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, statErr := os.Stat(filepath.Join(final, "go.mod")); statErr == nil {
			return nil // another writer was first; its copy is the same
		}
		return fmt.Errorf("registry: write the SDK: %w", err)
	}
	return nil
}

func copySDK(dst string) error {
	err := fs.WalkDir(kiln.SDKSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(kiln.SDKSource, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	})
	if err == nil {
		err = os.WriteFile(filepath.Join(dst, "go.mod"), kiln.SDKGoMod, 0o644)
	}
	if err != nil {
		return fmt.Errorf("registry: write the SDK: %w", err)
	}
	return nil
}

// sdkHash is the sha256 of the SDK this Kiln carries. Build keys hold it,
// besides the SDK's version, so that a development build whose SDK changed
// without a new version number does not reuse binaries of the old one.
var sdkHash = sync.OnceValue(func() string {
	h := sha256.New()
	_ = fs.WalkDir(kiln.SDKSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(kiln.SDKSource, p)
		fmt.Fprintf(h, "%s %d\n", p, len(data))
		h.Write(data)
		return err
	})
	fmt.Fprintf(h, "go.mod %d\n", len(kiln.SDKGoMod))
	h.Write(kiln.SDKGoMod)
	return hex.EncodeToString(h.Sum(nil))
})
