// Package gitrepo makes small git repositories of pipeline folders, for the
// demo, the benchmarks and the tests. Its commits carry an identity of
// their own, so that they work on a machine where git has none.
package gitrepo

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// identity is the author and committer of every commit made here.
var identity = []string{
	"GIT_AUTHOR_NAME=Kiln", "GIT_AUTHOR_EMAIL=kiln@example.invalid",
	"GIT_COMMITTER_NAME=Kiln", "GIT_COMMITTER_EMAIL=kiln@example.invalid",
}

// FromDir copies the folder src into dst, a new folder, and makes it a git
// repository whose branch main holds one commit of everything in it.
func FromDir(src, dst, message string) error {
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"},
		{"add", "."},
		{"commit", "--quiet", "-m", message},
	} {
		if _, err := Git(dst, args...); err != nil {
			return err
		}
	}
	return nil
}

// Git runs git in dir and returns its trimmed output.
func Git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), identity...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}
