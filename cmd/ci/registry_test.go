package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
)

const (
	testCommit = "0123456789abcdef0123456789abcdef01234567"
	testDigest = "sha256:" +
		"ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12"
)

func readyVersion() *kilnpb.Version {
	return &kilnpb.Version{
		Pipeline: "build",
		Version:  4,
		Ref:      "main",
		Commit:   testCommit,
		Digest:   testDigest,
		Status:   "ready",
		BuildMs:  1234,
		Created:  msBefore(5 * time.Minute),
		Goos:     "linux",
		Goarch:   "amd64",
		Description: &pluginpb.Description{Jobs: []*pluginpb.JobSpec{
			{Name: "vet"}, {Name: "test", DependsOn: []string{"vet"}},
		}},
	}
}

func failedVersion() *kilnpb.Version {
	return &kilnpb.Version{
		Pipeline: "build",
		Version:  5,
		Ref:      "v1.3.0",
		Commit:   testCommit,
		Status:   "failed",
		Error:    "go build: exit status 1",
		Output:   "./main.go:12:2: undefined: sdk.Srve\n./main.go:14:1: missing return\n",
	}
}

func TestRegistryListTableShortensCommitAndDigest(t *testing.T) {
	t.Parallel()
	reused := readyVersion()
	reused.Version, reused.Reused = 3, true
	addr := startFake(t, &fakeMaster{versions: []*kilnpb.Version{
		readyVersion(), reused, failedVersion(),
	}})

	r := ciOK(t, nil, "registry", "list", "--master", addr)

	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows, got:\n%s", r.stdout)
	}
	assertFields(t, lines[0], "PIPELINE", "VERSION", "REF", "COMMIT", "DIGEST", "STATUS",
		"BUILD", "CREATED")
	assertFields(t, lines[1], "build", "4", "main", "0123456789ab", "sha256:ab12cd34ef56",
		"ready", "1.2s", "5m", "ago")
	assertFields(t, lines[2], "build", "3", "main", "0123456789ab", "sha256:ab12cd34ef56",
		"ready", "reused", "5m", "ago")
	assertFields(t, lines[3], "build", "5", "v1.3.0", "0123456789ab", "-", "failed", "-", "-")
	assertAligned(t, lines, "DIGEST")
}

func TestRegistryListJSONKeepsFullCommitAndDigest(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{versions: []*kilnpb.Version{readyVersion()}}
	addr := startFake(t, f)

	r := ciOK(t, nil, "registry", "list", "build", "--master", addr, "-o", "json")

	var got []map[string]any
	decodeJSON(t, r.stdout, &got)
	if len(got) != 1 {
		t.Fatalf("want 1 version, got %d", len(got))
	}
	wantValues(t, got[0], map[string]any{
		"pipeline": "build", "version": 4.0, "ref": "main", "commit": testCommit,
		"digest": testDigest, "status": "ready", "build_ms": 1234.0, "reused": false,
		"created": "2030-05-06T07:03:09.000Z",
	})
	if jobs, _ := got[0]["jobs"].([]any); len(jobs) != 2 || jobs[0] != "vet" {
		t.Errorf("jobs: %v", got[0]["jobs"])
	}
	if req := f.request("ListVersions").(*kilnpb.ListVersionsRequest); req.Name != "build" {
		t.Errorf("request: %v", req)
	}
}

func TestRecompileFailurePrintsCompilerOutput(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x", progress: []string{"compiling"}, built: failedVersion()}
	addr := startFake(t, f)

	r := ci(t, nil, "recompile", "build@v1.3.0", "--master", addr, "--token", "x")

	want := "compiling\n" +
		"./main.go:12:2: undefined: sdk.Srve\n" +
		"./main.go:14:1: missing return\n" +
		"ci: pipeline \"build\": version 5 failed to build: go build: exit status 1\n"
	if r.code != exitFailure || r.stderr != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", r.code, r.stderr, want)
	}
	req := f.request("Recompile").(*kilnpb.RecompileRequest)
	if req.Name != "build" || req.Ref != "v1.3.0" {
		t.Errorf("request: %v", req)
	}
}

func TestRecompileFailureJSONPrintsVersionAndFails(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{built: failedVersion()})

	r := ci(t, nil, "recompile", "build", "--master", addr, "-o", "json")

	var got map[string]any
	decodeJSON(t, r.stdout, &got)
	wantValues(t, got, map[string]any{"status": "failed", "output": failedVersion().Output})
	if r.code != exitFailure {
		t.Errorf("exit %d", r.code)
	}
}

func TestPinSendsNameRefAndToken(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x", built: readyVersion()}
	addr := startFake(t, f)

	ciOK(t, nil, "pin", "build@>=1.2, <2", "--master", addr, "--token", "x")

	req := f.request("Pin").(*kilnpb.PinRequest)
	if req.Name != "build" || req.Ref != ">=1.2, <2" {
		t.Errorf("request: %v", req)
	}
	if got := f.authSeen("Pin"); got != "Bearer x" {
		t.Errorf("authorization: %q", got)
	}
}

func TestPinWithoutRefIsUsageError(t *testing.T) {
	t.Parallel()

	r := ci(t, nil, "pin", "build")

	if r.code != exitUsage || !strings.HasPrefix(r.stderr, `ci: "build": pin needs a ref`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestBuildStreamWithoutVersionFails(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{progress: []string{"compiling"}})

	r := ci(t, nil, "recompile", "build", "--master", addr)

	want := "ci: pipeline \"build\": the master ended the build without a version\n"
	if r.code != exitFailure || !strings.HasSuffix(r.stderr, want) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestParseNameRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg, name, ref, err string
	}{
		{arg: "build", name: "build"},
		{arg: "build@main", name: "build", ref: "main"},
		{arg: "build@release/1.4", name: "build", ref: "release/1.4"},
		{arg: "build@v1.2.3", name: "build", ref: "v1.2.3"},
		{arg: "build@^1.2", name: "build", ref: "^1.2"},
		{arg: "build@~1.4.0", name: "build", ref: "~1.4.0"},
		{arg: "build@>=2", name: "build", ref: ">=2"},
		{arg: "build@" + testCommit, name: "build", ref: testCommit},
		{arg: "build@a@b", name: "build", ref: "a@b"},
		{arg: "", err: "missing pipeline name"},
		{arg: "@main", err: `"@main": missing pipeline name before "@"`},
		{arg: "build@", err: `"build@": missing ref after "@"`},
		{arg: "@", err: `"@": missing pipeline name before "@"`},
	}
	for _, tt := range tests {
		name, ref, err := parseNameRef(tt.arg)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if name != tt.name || ref != tt.ref || gotErr != tt.err {
			t.Errorf("parseNameRef(%q) = %q, %q, %q; want %q, %q, %q",
				tt.arg, name, ref, gotErr, tt.name, tt.ref, tt.err)
		}
	}
}

// FuzzParseNameRef checks that a parsed name@ref gives back its input, and
// that the name never holds "@".
func FuzzParseNameRef(f *testing.F) {
	for _, seed := range []string{"build", "build@^1.2", "@", "a@@b", "x@release/1.4", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		name, ref, err := parseNameRef(arg)
		if err != nil {
			if name != "" || ref != "" {
				t.Fatalf("%q: error %v with name %q ref %q", arg, err, name, ref)
			}
			return
		}
		if name == "" || strings.Contains(name, "@") {
			t.Fatalf("%q: bad name %q", arg, name)
		}
		joined := name
		if strings.Contains(arg, "@") {
			joined += "@" + ref
			if ref == "" {
				t.Fatalf("%q: empty ref after @ accepted", arg)
			}
		}
		if joined != arg {
			t.Fatalf("%q: parsed into %q and %q", arg, name, ref)
		}
	})
}
