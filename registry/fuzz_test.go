package registry

import (
	"strings"
	"testing"

	"github.com/kilnci/kiln/proto/pluginpb"
)

// FuzzCheckRef: a ref that passes never reads as an option to git, and
// never holds what git refuses in a ref name.
func FuzzCheckRef(f *testing.F) {
	for _, s := range []string{"main", "release/1.2/hotfix", "v1.2.3", "^1.2", "-x", "a..b",
		"--upload-pack=x", "ref\x00", "ünïcode", ">=2, <3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if CheckRef(ref) != nil {
			return
		}
		if strings.HasPrefix(ref, "-") || strings.Contains(ref, "..") ||
			strings.ContainsAny(ref, "\x00\n\r") {
			t.Fatalf("CheckRef(%q) passed", ref)
		}
	})
}

// FuzzCheckDir: a folder that passes stays inside the checkout.
func FuzzCheckDir(f *testing.F) {
	for _, s := range []string{"", "ci", "a/b", "../x", "/etc", "a/../../b", "./.kiln"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		clean, err := CheckDir(dir)
		if err != nil {
			return
		}
		if strings.HasPrefix(clean, "/") || clean == ".." || strings.HasPrefix(clean, "../") {
			t.Fatalf("CheckDir(%q) = %q, which leaves the checkout", dir, clean)
		}
	})
}

// FuzzParseSource: a source that parses has a git URL of an allowed kind.
func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"file:///tmp/r", "https://h/x.git", "git::https://h/x.git",
		"/abs/path", "rel/path", "git@h:x", "s3::https://b/o", "file:///tmp/r?ref=x",
		"https://u:p@h/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParseSource(s)
		if err != nil {
			return
		}
		ok := false
		for _, scheme := range []string{"file://", "https://", "http://", "ssh://", "git://"} {
			ok = ok || strings.HasPrefix(src.Git, scheme)
		}
		if !ok || strings.ContainsAny(src.Git, "\x00\n\r") {
			t.Fatalf("ParseSource(%q).Git = %q", s, src.Git)
		}
	})
}

// FuzzValidateGraph: a description the master accepts can be run: every
// job starts once its dependencies are done, in some order.
func FuzzValidateGraph(f *testing.F) {
	f.Add("a b:a c:a d:b,c")
	f.Add("a:b b:a")
	f.Add("a a")
	f.Add("a:zz")
	f.Fuzz(func(t *testing.T, spec string) {
		d := &pluginpb.Description{SdkProtocol: 1}
		for _, field := range strings.Fields(spec) {
			name, deps, _ := strings.Cut(field, ":")
			j := &pluginpb.JobSpec{Name: name}
			if deps != "" {
				j.DependsOn = strings.Split(deps, ",")
			}
			d.Jobs = append(d.Jobs, j)
		}
		if ValidateGraph(d) != nil {
			return
		}
		done := map[string]bool{}
		for progress := true; progress; {
			progress = false
			for _, j := range d.Jobs {
				ready := !done[j.Name]
				for _, dep := range j.DependsOn {
					ready = ready && done[dep]
				}
				if ready {
					done[j.Name], progress = true, true
				}
			}
		}
		if len(done) != len(d.Jobs) {
			t.Fatalf("accepted %q, but only %d of %d jobs can ever start", spec, len(done), len(d.Jobs))
		}
	})
}
