package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/modfile"

	kiln "github.com/kilnci/kiln"
	"github.com/kilnci/kiln/sdk"
)

// BuildConfig says how pipelines are compiled. Every field but Dir has a
// working zero value.
type BuildConfig struct {
	// Dir holds the written-out SDK (Dir/sdk/<version>-<hash>/) and the
	// scratch folders of builds (Dir/tmp/). Required.
	Dir string
	// Go is the go command; empty means "go" from PATH.
	Go string
	// GOCACHE is the Go build cache every build shares; empty means the
	// environment's `go env GOCACHE`.
	GOCACHE string
	// GOMODCACHE is the module cache builds read; empty means the
	// environment's `go env GOMODCACHE`.
	GOMODCACHE string
	// GOPROXY is where builds may download modules; empty means "off":
	// builds are offline and use only the module cache.
	//
	// TODO(kiln): offline builds need the SDK's own requirements in
	// GOMODCACHE, which a master on a machine that never built Kiln lacks;
	// vendoring them into the overlay (`go work vendor`) would make the ci
	// binary self-sufficient, at the cost of a much larger binary.
	GOPROXY string
	// GOOS and GOARCH are the platform binaries are built for; empty means
	// the go command's own.
	GOOS, GOARCH string
	// Timeout bounds one compile; zero means 10 minutes.
	Timeout time.Duration
	// Heartbeat is how often a running compile reports that it still runs;
	// zero means 10 seconds.
	Heartbeat time.Duration
	// Logger gets a line per compile; nil discards.
	Logger *slog.Logger
}

// Builder compiles pipeline programs against the SDK this Kiln carries. It
// is safe for concurrent use.
type Builder struct {
	cfg      BuildConfig
	log      *slog.Logger
	goEnv    goEnv
	goLine   string // the go line of the go.work files it writes
	compiles atomic.Int64

	overlayMu  sync.Mutex
	overlayDir string // written once; guarded by overlayMu
}

// goEnv is what `go env` reports about the toolchain builds use.
type goEnv struct {
	GOVERSION, GOOS, GOARCH, GOCACHE, GOMODCACHE string
}

// buildFlags are the go build flags of every compile. They are part of the
// build key: changing them must not reuse binaries built without them.
var buildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// keyFormat names the way build keys are computed; bump it when anything
// a key does not hash changes how binaries are built.
const keyFormat = "kiln-build-key/1"

// NewBuilder asks the go command for its version and defaults once, and
// returns a Builder.
func NewBuilder(cfg BuildConfig) (*Builder, error) {
	if cfg.Dir == "" {
		return nil, errors.New("registry: BuildConfig.Dir is required")
	}
	cfg.Go = cmp(cfg.Go, "go")
	cfg.GOPROXY = cmp(cfg.GOPROXY, "off")
	cfg.Timeout = cmp(cfg.Timeout, 10*time.Minute)
	cfg.Heartbeat = cmp(cfg.Heartbeat, 10*time.Second)
	b := &Builder{cfg: cfg, log: discardIfNil(cfg.Logger)}
	if err := os.MkdirAll(b.tmpDir(), 0o755); err != nil {
		return nil, fmt.Errorf("registry: create %s: %w", b.tmpDir(), err)
	}
	env, err := readGoEnv(cfg.Go, b.tmpDir())
	if err != nil {
		return nil, err
	}
	b.goEnv = env
	b.cfg.GOCACHE = cmp(cfg.GOCACHE, env.GOCACHE)
	b.cfg.GOMODCACHE = cmp(cfg.GOMODCACHE, env.GOMODCACHE)
	b.cfg.GOOS = cmp(cfg.GOOS, env.GOOS)
	b.cfg.GOARCH = cmp(cfg.GOARCH, env.GOARCH)
	b.goLine = goLine(env.GOVERSION)
	return b, nil
}

func readGoEnv(goCmd, dir string) (goEnv, error) {
	cmd := exec.Command(goCmd, "env", "-json", "GOVERSION", "GOOS", "GOARCH", "GOCACHE",
		"GOMODCACHE")
	// Run outside any module, and on the toolchain at hand: the version
	// reported must be the one that compiles.
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		return goEnv{}, fmt.Errorf("registry: %s env: %w", goCmd, err)
	}
	var env goEnv
	if err := json.Unmarshal(out, &env); err != nil {
		return goEnv{}, fmt.Errorf("registry: read %s env: %w", goCmd, err)
	}
	if env.GOCACHE == "" || env.GOCACHE == "off" {
		return goEnv{}, errors.New("registry: the go command has no build cache (GOCACHE)")
	}
	return env, nil
}

// goLine turns "go1.26.8" into "1.26.8" for go.work. A development
// toolchain has no usable number; the SDK's own go line does then.
func goLine(goVersion string) string {
	v, _, _ := strings.Cut(goVersion, " ")
	if v, ok := strings.CutPrefix(v, "go"); ok && v != "" && strings.Count(v, ".") <= 2 {
		return v
	}
	return "1.25.0"
}

// Platform returns the GOOS and GOARCH binaries are built for.
func (b *Builder) Platform() (goos, goarch string) { return b.cfg.GOOS, b.cfg.GOARCH }

// Compiles returns how many times the Builder ran the compiler.
func (b *Builder) Compiles() int64 { return b.compiles.Load() }

// Key returns the build key of a commit's pipeline folder: the sha256 of
// every input of the compile besides the commit's own content, which the
// commit names. Equal keys build equal binaries.
func (b *Builder) Key(commit, dir string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\ncommit %s\ndir %s\ngo %s\nplatform %s/%s\nsdk %s %s\n"+
		"flags CGO_ENABLED=0 %s\n", keyFormat, commit, dir, b.goEnv.GOVERSION,
		b.cfg.GOOS, b.cfg.GOARCH, sdk.Version, sdkHash(), strings.Join(buildFlags, " "))
	return hex.EncodeToString(h.Sum(nil))
}

// Compile builds the main package in dir, a folder of a Go module on this
// machine, into the file out, and returns the compiler's output. It is
// what `ci exec` uses to build a pipeline from a working tree without git,
// and what the registry runs on a checkout. The module is compiled against
// the SDK this Kiln carries, through a go.work in a scratch folder: nothing
// is written into dir or its module. progress gets a line now and then
// while the compiler runs; it may be nil.
func (b *Builder) Compile(ctx context.Context, dir, out string,
	progress func(string)) (output string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	return b.compile(ctx, string(filepath.Separator), abs, out, progress)
}

// compile builds the main package in pkgDir, whose module's go.mod is in
// pkgDir or a parent no higher than root.
func (b *Builder) compile(ctx context.Context, root, pkgDir, out string,
	progress func(string)) (string, error) {
	mod, err := findModule(root, pkgDir)
	if err != nil {
		return "", err
	}
	if err := checkMainPackage(root, pkgDir, b.cfg.GOOS, b.cfg.GOARCH); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp(b.tmpDir(), "build-*")
	if err != nil {
		return "", fmt.Errorf("registry: create build folder: %w", err)
	}
	defer os.RemoveAll(scratch)

	work, err := b.writeWork(scratch, mod)
	if err != nil {
		return "", err
	}
	output, err := b.runGo(ctx, scratch, work, pkgDir, out, progress)
	if err != nil {
		return output, b.compileError(mod, output, err)
	}
	return output, nil
}

// writeWork writes the go.work that points the build at the module and at
// the SDK overlay. Kiln's own module builds against itself, unreplaced.
func (b *Builder) writeWork(scratch string, mod module) (string, error) {
	var w strings.Builder
	fmt.Fprintf(&w, "go %s\n\nuse %s\n", b.goLine, modfile.AutoQuote(mod.dir))
	if mod.path != kiln.ModulePath {
		overlay, err := b.overlay()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&w, "\nreplace %s => %s\n", kiln.ModulePath, modfile.AutoQuote(overlay))
	}
	path := filepath.Join(scratch, "go.work")
	if err := os.WriteFile(path, []byte(w.String()), 0o644); err != nil {
		return "", fmt.Errorf("registry: write go.work: %w", err)
	}
	return path, nil
}

// runGo runs `go build` in pkgDir and returns its combined output.
func (b *Builder) runGo(ctx context.Context, scratch, work, pkgDir, out string,
	progress func(string)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	args := append([]string{"build"}, buildFlags...)
	args = append(args, "-o", out, ".")
	cmd := exec.CommandContext(ctx, b.cfg.Go, args...)
	cmd.Dir = pkgDir
	cmd.Env = b.env(scratch, work)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second

	b.compiles.Add(1)
	start := time.Now()
	stop := b.heartbeat(progress, start)
	err := cmd.Run()
	stop()
	b.log.Debug("compiled", "dir", pkgDir, "build_ms", time.Since(start).Milliseconds(),
		"ok", err == nil)
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("the compile took longer than %s", b.cfg.Timeout)
	}
	return capOutput(buf.String(), outputLimit), err
}

// env is the compiler's whole environment. Nothing of the master's leaks
// in but PATH and HOME: not its GOFLAGS, its go env file (GOENV=off), nor
// a toolchain switch (GOTOOLCHAIN=local).
func (b *Builder) env(scratch, work string) []string {
	home := cmp(os.Getenv("HOME"), scratch)
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GOENV=off",
		"GOFLAGS=",
		"GOTOOLCHAIN=local",
		"GOTELEMETRY=off",
		"GOWORK=" + work,
		"GOCACHE=" + b.cfg.GOCACHE,
		"GOMODCACHE=" + b.cfg.GOMODCACHE,
		"GOPROXY=" + b.cfg.GOPROXY,
		"GOSUMDB=off",
		"CGO_ENABLED=0",
		"GOOS=" + b.cfg.GOOS,
		"GOARCH=" + b.cfg.GOARCH,
		"GOTMPDIR=" + scratch,
		"TMPDIR=" + scratch,
	}
}

// heartbeat says every Heartbeat that the compiler still runs, so that a
// first build's half minute is not silence. The returned func stops it.
func (b *Builder) heartbeat(progress func(string), start time.Time) func() {
	if progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				progress(fmt.Sprintf("still compiling (%s)", time.Since(start).Round(time.Second)))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// compileError turns a failed compile into one sentence followed by the
// compiler's lines, naming both SDK versions when the module asked for
// another one than this Kiln carries.
func (b *Builder) compileError(mod module, output string, runErr error) error {
	head := "compile failed"
	if mod.kilnVersion != "" && strings.TrimPrefix(mod.kilnVersion, "v") != sdk.Version {
		head = fmt.Sprintf("compile failed; its go.mod requires %s %s but this Kiln "+
			"builds against SDK %s", kiln.ModulePath, mod.kilnVersion, sdk.Version)
	}
	if strings.Contains(output, "GOPROXY=off") {
		head += "; builds are offline (GOPROXY=off) and a module it needs is not in " +
			"the module cache"
	}
	// The go.work is Kiln's, not the user's: say what the go line means.
	if m := goTooOld.FindStringSubmatch(output); m != nil {
		head += fmt.Sprintf("; its go.mod needs Go %s, and this Kiln builds with Go %s",
			m[1], strings.TrimPrefix(b.goEnv.GOVERSION, "go"))
	}
	lines := strings.TrimSpace(headLines(output, errorLines))
	if lines == "" {
		return errorf(ErrCompile, "%s: %w", head, runErr)
	}
	return errorf(ErrCompile, "%s:\n%s", head, lines)
}

// goTooOld finds the go command's complaint about a go.mod that needs a
// newer Go than the one building it.
var goTooOld = regexp.MustCompile(`requires go >= ([0-9][0-9.a-z]*)`)

// outputLimit caps the compiler output kept on a version; errorLines caps
// the lines repeated in an error.
const (
	outputLimit = 64 << 10
	errorLines  = 20
)

func capOutput(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n[output truncated]\n"
}

func headLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines[n] = "[…]"
	}
	return strings.Join(lines, "\n")
}

// overlay writes the SDK this Kiln carries once, and returns its folder.
// The folder's name holds the SDK version and a hash of its files, so that
// two Kiln builds with different SDK sources never share one.
func (b *Builder) overlay() (string, error) {
	b.overlayMu.Lock()
	defer b.overlayMu.Unlock()
	if b.overlayDir != "" {
		return b.overlayDir, nil
	}
	final := filepath.Join(b.cfg.Dir, "sdk", sdk.Version+"-"+sdkHash()[:12])
	if _, err := os.Stat(filepath.Join(final, "go.mod")); err != nil {
		if err := writeOverlay(final); err != nil {
			return "", err
		}
	}
	b.overlayDir = final
	return final, nil
}

func (b *Builder) tmpDir() string { return filepath.Join(b.cfg.Dir, "tmp") }

func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func discardIfNil(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
