package registry

import (
	"context"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	getter "github.com/hashicorp/go-getter"
)

// fetch clones the repository at src into dst, which must not exist, and
// checks out commit. It goes through go-getter with only its git getter:
// no archives, no other protocols, no detectors guessing what a string
// means, no symlink copies.
func fetch(ctx context.Context, src Source, commit, dst string, timeout time.Duration) error {
	q := url.Values{"ref": {commit}}
	client := &getter.Client{
		Ctx:             ctx,
		Src:             "git::" + src.Git + "?" + q.Encode(),
		Dst:             dst,
		Mode:            getter.ClientModeDir,
		Getters:         map[string]getter.Getter{"git": &getter.GitGetter{Timeout: timeout}},
		Detectors:       []getter.Detector{},
		Decompressors:   map[string]getter.Decompressor{},
		DisableSymlinks: true,
	}
	if err := client.Get(); err != nil {
		msg := err.Error()
		// git refuses, for safety, to clone submodules from local paths into
		// a checkout; a hostile repository could otherwise read the
		// master's disk through one.
		if strings.Contains(msg, "transport 'file' not allowed") {
			return errorf(ErrFetch, "cannot fetch commit %s from %s: a submodule points at a "+
				"local path, which git refuses to clone; give submodules https or ssh URLs",
				commit, redact(src.Git))
		}
		return errorf(ErrFetch, "cannot fetch commit %s from %s: %s", commit, redact(src.Git),
			oneLine(msg))
	}
	return nil
}

// oneLine squeezes a multi-line tool message (git's, through go-getter)
// into one line for an error.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// CheckDir cleans a pipeline's folder inside its repository and refuses
// one that is absolute or climbs out with "..". The result is "" for the
// repository's root.
func CheckDir(dir string) (string, error) {
	if dir == "" || dir == "." {
		return "", nil
	}
	if filepath.IsAbs(dir) || strings.HasPrefix(dir, `\`) {
		return "", errorf(ErrBadDir, "folder %q must be relative to the repository's root", dir)
	}
	for _, part := range strings.Split(filepath.ToSlash(dir), "/") {
		if part == ".." {
			return "", errorf(ErrBadDir, "folder %q must not contain \"..\"", dir)
		}
	}
	for _, r := range dir {
		if r < ' ' || r == 0x7f {
			return "", errorf(ErrBadDir, "folder %q contains a control character", dir)
		}
	}
	return filepath.ToSlash(filepath.Clean(dir)), nil
}

// pipelineDir returns the real paths of the checkout and of dir inside
// it, refusing a folder that is missing, is not a folder, or leads outside
// the checkout through a symlink.
func pipelineDir(checkout, dir string) (root, pkgDir string, err error) {
	root, err = filepath.EvalSymlinks(checkout)
	if err != nil {
		return "", "", errorf(ErrFetch, "checkout is gone: %w", err)
	}
	pkgDir, err = filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", errorf(ErrBadDir, "folder %q does not exist at this commit", dir)
	}
	if err != nil {
		return "", "", errorf(ErrBadDir, "folder %q: %w", dir, err)
	}
	if !within(root, pkgDir) {
		return "", "", errorf(ErrBadDir, "folder %q leads outside the repository", dir)
	}
	if fi, err := os.Stat(pkgDir); err != nil || !fi.IsDir() {
		return "", "", errorf(ErrBadDir, "%q is not a folder at this commit", dir)
	}
	return root, pkgDir, nil
}

// checkSymlinks refuses a checkout (given by its real path) that holds a
// symlink to anything outside it: the compiler would read that file, and
// its errors would show it.
func checkSymlinks(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := filepath.EvalSymlinks(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // dangling: nothing can be read through it
		}
		if err != nil || !within(root, target) {
			rel, _ := filepath.Rel(root, p)
			return errorf(ErrBadDir, "symlink %q points outside the repository; "+
				"the registry does not build such a tree", filepath.ToSlash(rel))
		}
		return nil
	})
}

// within reports whether path is root or below it; both must be clean.
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
