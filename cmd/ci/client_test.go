package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// closedAddr is a loopback address where nothing listens any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestUnreachableMasterSaysWhereAndWhatToDo(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)

	r := ci(t, nil, "pipeline", "list", "--master", addr)

	want := "ci: cannot reach the master at " + addr + ": dial tcp " + addr +
		": connect: connection refused (is `ci server` running? set --master or KILN_MASTER)\n"
	if r.code != exitFailure || r.stderr != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", r.code, r.stderr, want)
	}
}

func TestMasterFromEnvironment(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{workers: testWorkers()}
	addr := startFake(t, f)

	r := ciOK(t, map[string]string{"KILN_MASTER": addr}, "workers", "list")

	if !strings.Contains(r.stdout, "box-1") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestMasterFlagWinsOverEnvironment(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{})

	ciOK(t, map[string]string{"KILN_MASTER": closedAddr(t)}, "workers", "list", "--master", addr)
}

func TestTokenFromEnvironment(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x"}
	addr := startFake(t, f)

	ciOK(t, map[string]string{"KILN_MASTER": addr, "KILN_TOKEN": "x"}, "workers", "suspend", "w1")

	if got := f.authSeen("SuspendWorker"); got != "Bearer x" {
		t.Errorf("authorization: %q", got)
	}
}

func TestTokenFileFromFlagAndEnvironment(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{token: "x"}
	addr := startFake(t, f)
	path := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(path, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ciOK(t, nil, "runs", "cancel", "1", "--master", addr, "--token-file", path)
	ciOK(t, map[string]string{"KILN_TOKEN_FILE": path}, "runs", "cancel", "1", "--master", addr)
	// A flag beats the environment, even the other kind of token.
	ciOK(t, map[string]string{"KILN_TOKEN": "wrong"}, "runs", "cancel", "1",
		"--master", addr, "--token-file", path)
}

func TestMissingTokenSaysHowToPassIt(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{token: "x"})

	r := ci(t, nil, "pipeline", "delete", "build", "--master", addr)

	want := "ci: this call needs the admin token: pass the admin token with " +
		"--token-file DATA/admin.token (or --token, KILN_TOKEN, KILN_TOKEN_FILE)\n"
	if r.code != exitFailure || r.stderr != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", r.code, r.stderr, want)
	}
}

func TestWrongTokenSaysItWasRefused(t *testing.T) {
	t.Parallel()
	addr := startFake(t, &fakeMaster{token: "x"})

	r := ci(t, nil, "pipeline", "delete", "build", "--master", addr, "--token", "y")

	if r.code != exitFailure || !strings.Contains(r.stderr, "use the token in the master's DATA/admin.token") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestMissingTokenFileFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "none")

	r := ci(t, nil, "workers", "list", "--token-file", path)

	want := "ci: read the token file: open " + path
	if r.code != exitFailure || !strings.HasPrefix(r.stderr, want) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"pipelin"},
			want: `ci: unknown command "pipelin" for "ci", did you mean "pipeline"? ` +
				`(see ci --help)`},
		{args: []string{"pipeline", "bogus"},
			want: `ci: unknown command "bogus" for "ci pipeline" (see ci pipeline --help)`},
		{args: []string{"pipeline", "show"},
			want: "ci: want 1 argument, got 0 (usage: ci pipeline show NAME [flags])"},
		{args: []string{"logs", "1", "a", "b"},
			want: "ci: want 1 to 2 arguments, got 3 (usage: ci logs ID [JOB] [flags])"},
		{args: []string{"workers", "list", "w1"},
			want: "ci: want no arguments, got 1 (usage: ci workers list [flags])"},
		{args: []string{"workers", "list", "--bogus"},
			want: "ci: unknown flag: --bogus (usage: ci workers list [flags])"},
		{args: []string{"workers", "list", "-o", "xml"},
			want: `ci: invalid argument "xml" for "-o, --output" flag: want table or json, ` +
				`not "xml" (usage: ci workers list [flags])`},
		{args: []string{"workers", "list"}, env: map[string]string{"KILN_OUTPUT": "yaml"},
			want: `ci: KILN_OUTPUT="yaml": want table or json, not "yaml" ` +
				`(usage: ci workers list [flags])`},
		{args: []string{"workers", "list", "--token", "a", "--token-file", "b"},
			want: "ci: give --token or --token-file, not both (usage: ci workers list [flags])"},
		{args: []string{"run", "build", "--param", "nothing"},
			want: `ci: --param "nothing": want NAME=VALUE (usage: ci run NAME [flags])`},
		{args: []string{"recompile", "@main"},
			want: `ci: "@main": missing pipeline name before "@" ` +
				`(usage: ci recompile NAME[@REF] [flags])`},
	}
	for _, tt := range tests {
		r := ci(t, tt.env, tt.args...)
		if r.code != exitUsage || r.stderr != tt.want+"\n" {
			t.Errorf("ci %q: exit %d, stderr:\n%s\nwant:\n%s", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

func TestGroupWithoutSubcommandPrintsHelp(t *testing.T) {
	t.Parallel()

	r := ciOK(t, nil, "runs")

	if !strings.Contains(r.stdout, "cancel") || !strings.Contains(r.stdout, "show") {
		t.Errorf("help lacks the subcommands:\n%s", r.stdout)
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ms"},
		{-time.Second, "0ms"},
		{340 * time.Millisecond, "340ms"},
		{1234 * time.Millisecond, "1.2s"},
		{59960 * time.Millisecond, "59.9s"},
		{125 * time.Second, "2m05s"},
		{62*time.Minute + 10*time.Second, "1h02m"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAgo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ms   int64
		want string
	}{
		{0, ""},
		{msBefore(2 * time.Second), "2s ago"},
		{msBefore(-time.Minute), "0s ago"},
		{msBefore(90 * time.Minute), "1h ago"},
		{msBefore(50 * time.Hour), "2d ago"},
	}
	for _, tt := range tests {
		if got := ago(tt.ms, testNow); got != tt.want {
			t.Errorf("ago(%d) = %q, want %q", tt.ms, got, tt.want)
		}
	}
}
