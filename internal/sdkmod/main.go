// Command sdkmod prints the go.mod of the SDK that the ci binary carries:
// the module's path and go line, and the exact requirements of the packages
// a pipeline imports. Run through `go generate` in the repository's root.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

func main() {
	out, err := exec.Command("go", "list", "-deps", "-f",
		"{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}",
		"./sdk").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdkmod: go list:", err)
		os.Exit(1)
	}
	seen := map[string]bool{}
	var reqs []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !seen[l] {
			seen[l] = true
			reqs = append(reqs, l)
		}
	}
	sort.Strings(reqs)

	var b bytes.Buffer
	b.WriteString("module github.com/kilnci/kiln\n\ngo 1.25.0\n\nrequire (\n")
	for _, r := range reqs {
		fmt.Fprintf(&b, "\t%s\n", r)
	}
	b.WriteString(")\n")
	os.Stdout.Write(b.Bytes())
}
