package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/cache"
	"github.com/kilnci/kiln/proto/kilnpb"
)

// The statuses of a version.
const (
	StatusBuilding = "building"
	StatusReady    = "ready"
	StatusFailed   = "failed"
)

// Config says where the registry keeps its records and files. Each field
// documents its zero value.
type Config struct {
	// DB holds pipelines and versions. Required.
	DB *bbolt.DB
	// Cache stores binaries and the build index. Required.
	Cache *cache.Cache
	// DataDir holds the written-out SDK and the scratch folders of
	// fetches, builds and describes (DataDir/tmp). Required.
	DataDir string
	// Build says how to compile. Its Dir is DataDir and its Logger is
	// Logger when they are empty.
	Build BuildConfig
	// FetchTimeout bounds one fetch of a commit; zero means 5 minutes.
	FetchTimeout time.Duration
	// DescribeTimeout bounds starting a built program and asking for its
	// description; zero means 30 seconds.
	DescribeTimeout time.Duration
	// Logger gets one line per pipeline created or deleted and per version
	// recorded; nil discards.
	Logger *slog.Logger
	// Now is the clock of records' timestamps; nil means time.Now.
	Now func() time.Time
}

// Registry keeps pipelines and their versions. It is safe for concurrent
// use; Close ends builds still running.
type Registry struct {
	cfg     Config
	db      *bbolt.DB
	cache   *cache.Cache
	builder *Builder
	log     *slog.Logger
	now     func() time.Time

	// flights coalesces builds of one build key; relay passes the
	// progress of a build to every caller waiting for it.
	flights  singleflight.Group
	relay    relay
	variants variants

	// work is the context of builds, which outlive the caller that
	// started them so that callers who joined them are not cut off.
	work    context.Context
	stop    context.CancelFunc
	running sync.WaitGroup

	mu     sync.Mutex
	closed bool // guarded by mu; once set, no build starts
}

// CreateRequest names a new pipeline and where its program lives.
type CreateRequest struct {
	// Name is the pipeline's name in the registry; see CheckName.
	Name string
	// Source is the repository's URL; see ParseSource.
	Source string
	// Ref is the ref policy; empty means the remote's default branch.
	Ref string
	// Dir is the folder of the program in the repository; empty means its
	// root.
	Dir string
	// Triggers and WebhookSecret are stored as given; the caller checks
	// them.
	Triggers      *kilnpb.Triggers
	WebhookSecret string
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// New opens the registry's buckets in cfg.DB, creating them if needed.
func New(cfg Config) (*Registry, error) {
	if cfg.DB == nil || cfg.Cache == nil || cfg.DataDir == "" {
		return nil, errors.New("registry: Config needs DB, Cache and DataDir")
	}
	cfg.FetchTimeout = cmp(cfg.FetchTimeout, 5*time.Minute)
	cfg.DescribeTimeout = cmp(cfg.DescribeTimeout, 30*time.Second)
	cfg.Build.Dir = cmp(cfg.Build.Dir, cfg.DataDir)
	cfg.Build.Logger = cmpLogger(cfg.Build.Logger, cfg.Logger)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := initSchema(cfg.DB); err != nil {
		return nil, fmt.Errorf("registry: open buckets: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("registry: create scratch folder: %w", err)
	}
	b, err := NewBuilder(cfg.Build)
	if err != nil {
		return nil, err
	}
	r := &Registry{cfg: cfg, db: cfg.DB, cache: cfg.Cache, builder: b,
		log: discardIfNil(cfg.Logger), now: cfg.Now}
	r.work, r.stop = context.WithCancel(context.Background())
	return r, nil
}

// Close cancels the builds still running and waits for them to end.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stop()
	r.running.Wait()
	return nil
}

// startWork counts a build in, unless the registry is closed.
func (r *Registry) startWork() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.running.Add(1)
	return true
}

// Builder returns the registry's compiler.
func (r *Registry) Builder() *Builder { return r.builder }

// CheckName refuses a pipeline name that is not 1 to 63 lower-case
// letters, digits, '.', '_' or '-', starting with a letter or digit: names
// appear in URLs, file names and `name@ref` arguments.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return errorf(ErrBadName, "pipeline name %q: use 1 to 63 lower-case letters, digits, "+
			"'.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Create registers a pipeline and builds its first version. It records
// nothing unless that version is usable: a bad name, source, ref or
// folder, a compile error or an invalid graph leave the registry as it
// was. On a failed build the returned version, which is not recorded,
// carries the compiler's output. progress gets a line per step; it may be
// nil. When ctx ends the call returns, but a compile it started runs on
// for whoever else waits for the same build (see produce).
func (r *Registry) Create(ctx context.Context, req CreateRequest,
	progress func(string)) (*kilnpb.Pipeline, *kilnpb.Version, error) {
	say := sayer(progress)
	src, dir, err := r.checkCreate(req)
	if err != nil {
		return nil, nil, err
	}
	res, err := r.resolve(ctx, req.Name, src, req.Ref, say)
	if err != nil {
		return nil, nil, err
	}
	v, err := r.build(ctx, req.Name, src, dir, res, say)
	if err != nil {
		return nil, v, err
	}

	now := r.now().UnixMilli()
	p := &kilnpb.Pipeline{Name: req.Name, Description: v.Description.GetDescription(),
		Source: req.Source, Dir: dir, Ref: res.Ref, Created: now, Modified: now,
		Triggers: req.Triggers, WebhookSecret: req.WebhookSecret}
	if err := r.insert(p, v); err != nil {
		return nil, nil, err
	}
	say("pipeline %s created; version %d is ready", p.Name, v.Version)
	return p, v, nil
}

// insert records a new pipeline with its first version, unless a pipeline
// of that name was created meanwhile.
func (r *Registry) insert(p *kilnpb.Pipeline, v *kilnpb.Version) error {
	err := r.db.Update(func(tx *bbolt.Tx) error {
		if err := insertPipeline(tx, p); err != nil {
			return err
		}
		if err := insertVersion(tx, p, v); err != nil {
			return err
		}
		return putPipeline(tx, p)
	})
	if err != nil {
		return err
	}
	r.log.Info("pipeline created", "pipeline", p.Name, "pipeline_id", p.Id,
		"source", redact(GitURL(p.Source)), "ref", p.Ref)
	r.logVersion(v)
	return nil
}

func (r *Registry) checkCreate(req CreateRequest) (Source, string, error) {
	if err := CheckName(req.Name); err != nil {
		return Source{}, "", err
	}
	if _, err := r.Get(req.Name); err == nil {
		return Source{}, "", errorf(ErrExists, "pipeline %q already exists", req.Name)
	}
	src, err := ParseSource(req.Source)
	if err != nil {
		return Source{}, "", fmt.Errorf("pipeline %q: %w", req.Name, err)
	}
	dir, err := CheckDir(req.Dir)
	if err != nil {
		return Source{}, "", fmt.Errorf("pipeline %q: %w", req.Name, err)
	}
	return src, dir, nil
}

// Build builds the pipeline at ref, or at its ref policy when ref is "",
// and records the result as a new version, failed or not; a usable one
// becomes current. A build whose key is in the build index reuses that
// binary without fetching or compiling, and is recorded as a new version
// with Reused set: every Build leaves one version behind, so the history
// says what was built when. Only a ref that cannot be resolved records
// nothing, since nothing was built. On a failed build the returned version
// is the recorded one, with the error and the compiler's output.
func (r *Registry) Build(ctx context.Context, name, ref string,
	progress func(string)) (*kilnpb.Version, error) {
	say := sayer(progress)
	p, src, err := r.loadSource(name)
	if err != nil {
		return nil, err
	}
	res, err := r.resolve(ctx, name, src, cmp(ref, p.Ref), say)
	if err != nil {
		return nil, err
	}
	return r.buildAndRecord(ctx, p, src, res, true, say)
}

// BuildCommit builds commit, which a push or a poll saw on pushedRef (a
// full "refs/heads/…" or "refs/tags/…" name), and records it like Build
// does, as a version of the ref the pipeline follows. Unlike Build it
// does not ask the remote where the ref points now: a run started by a
// push runs the pushed commit even if the ref moved on since. current says
// whether a usable version becomes the pipeline's current one: a commit
// that is no longer the ref's tip (a delivery that came late) is built and
// run, but does not replace the newer current version.
func (r *Registry) BuildCommit(ctx context.Context, name, pushedRef, commit string, current bool,
	progress func(string)) (*kilnpb.Version, error) {
	say := sayer(progress)
	if !fullCommit.MatchString(commit) {
		return nil, errorf(ErrBadRef, "pipeline %q: %q is not a full commit", name, commit)
	}
	p, src, err := r.loadSource(name)
	if err != nil {
		return nil, err
	}
	// A commit the ref points at is advertised; a fetch that fails for it
	// failed for another reason than its absence.
	res := Resolved{Ref: p.Ref, Kind: KindBranch, Name: strings.TrimPrefix(pushedRef, "refs/heads/"),
		Commit: strings.ToLower(commit), Advertised: current}
	if tag, ok := strings.CutPrefix(pushedRef, "refs/tags/"); ok {
		res.Kind, res.Name = KindTag, tag
	}
	say("%s %s is commit %s", res.Kind, res.Name, Short(res.Commit))
	return r.buildAndRecord(ctx, p, src, res, current, say)
}

// Pin builds ref and, when the build is usable, makes the pipeline follow
// ref. A ref that resolves to nothing changes nothing; a failed build is
// recorded as a failed version, for its compiler output, and leaves the
// ref the pipeline follows and its current version as they were.
func (r *Registry) Pin(ctx context.Context, name, ref string,
	progress func(string)) (*kilnpb.Version, error) {
	say := sayer(progress)
	if ref == "" {
		return nil, errorf(ErrBadRef, "pipeline %q: give the ref to pin", name)
	}
	p, src, err := r.loadSource(name)
	if err != nil {
		return nil, err
	}
	res, err := r.resolve(ctx, name, src, ref, say)
	if err != nil {
		return nil, err
	}
	v, err := r.buildAndRecord(ctx, p, src, res, true, say)
	if err != nil {
		say("pipeline %s still follows %s", name, p.Ref)
		return v, err
	}
	err = r.updateByID(p, func(_ *bbolt.Tx, q *kilnpb.Pipeline) error {
		q.Ref = ref
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.log.Info("pipeline pinned", "pipeline", name, "ref", ref)
	say("pipeline %s now follows %s", name, ref)
	return v, nil
}

func (r *Registry) loadSource(name string) (*kilnpb.Pipeline, Source, error) {
	p, err := r.Get(name)
	if err != nil {
		return nil, Source{}, err
	}
	src, err := ParseSource(p.Source)
	if err != nil {
		return nil, Source{}, fmt.Errorf("pipeline %q: %w", name, err)
	}
	return p, src, nil
}

func (r *Registry) buildAndRecord(ctx context.Context, p *kilnpb.Pipeline, src Source,
	res Resolved, current bool, say sayFunc) (*kilnpb.Version, error) {
	v, buildErr := r.build(ctx, p.Name, src, p.Dir, res, say)
	if buildErr != nil && ctx.Err() != nil {
		// Cut short, not failed: nothing was learnt about this commit.
		return nil, buildErr
	}
	err := r.updateByID(p, func(tx *bbolt.Tx, q *kilnpb.Pipeline) error {
		was := q.CurrentVersion
		if err := insertVersion(tx, q, v); err != nil {
			return err
		}
		switch {
		case !current:
			q.CurrentVersion = was
		case v.Status == StatusReady:
			q.Description = v.Description.GetDescription()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.logVersion(v)
	if buildErr == nil {
		say("version %d is ready", v.Version)
	}
	return v, buildErr
}

// updateByID applies fn to the stored pipeline p and stores it, provided
// it is still the same pipeline: one deleted and created again while a
// build ran is another pipeline.
func (r *Registry) updateByID(p *kilnpb.Pipeline,
	fn func(*bbolt.Tx, *kilnpb.Pipeline) error) error {
	return r.db.Update(func(tx *bbolt.Tx) error {
		q, err := getPipeline(tx, p.Name)
		if err == nil && q.Id != p.Id {
			err = errorf(ErrNotFound, "pipeline %q was deleted while it built", p.Name)
		}
		if err != nil {
			return err
		}
		if err := fn(tx, q); err != nil {
			return err
		}
		q.Modified = r.now().UnixMilli()
		return putPipeline(tx, q)
	})
}

func (r *Registry) resolve(ctx context.Context, name string, src Source, ref string,
	say sayFunc) (Resolved, error) {
	if ref == "" {
		say("resolving the default branch of %s", redact(src.Git))
	} else {
		say("resolving %s", ref)
	}
	res, err := Resolve(ctx, src.Git, ref)
	if err != nil {
		return Resolved{}, fmt.Errorf("pipeline %q: %w", name, err)
	}
	switch res.Kind {
	case KindCommit:
		say("building commit %s", res.Commit)
	case KindSemver:
		say("%s picks tag %s, commit %s", res.Ref, res.Name, Short(res.Commit))
	default:
		say("%s %s is commit %s", res.Kind, res.Name, Short(res.Commit))
	}
	return res, nil
}

// build produces the binary of a resolved ref and returns the version it
// makes, not yet recorded: ready, or failed with the error that it returns
// too.
func (r *Registry) build(ctx context.Context, name string, src Source, dir string,
	res Resolved, say sayFunc) (*kilnpb.Version, error) {
	start := time.Now()
	a := r.produce(ctx, src, dir, res, say)
	goos, goarch := r.builder.Platform()
	v := &kilnpb.Version{Pipeline: name, Ref: res.Ref, Commit: res.Commit, Digest: a.digest,
		Status: StatusReady, BuildMs: time.Since(start).Milliseconds(), Output: a.output,
		Created: r.now().UnixMilli(), Reused: a.reused, Goos: goos, Goarch: goarch,
		Description: a.desc}
	if a.err != nil {
		err := fmt.Errorf("pipeline %q: %w", name, a.err)
		v.Status, v.Error = StatusFailed, err.Error()
		return v, err
	}
	return v, nil
}

func (r *Registry) logVersion(v *kilnpb.Version) {
	r.log.Info("version recorded", "pipeline", v.Pipeline, "version", v.Version,
		"status", v.Status, "commit", v.Commit, "digest", v.Digest, "reused", v.Reused,
		"build_ms", v.BuildMs)
}

// Get returns the pipeline of that name.
func (r *Registry) Get(name string) (*kilnpb.Pipeline, error) {
	var p *kilnpb.Pipeline
	err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		p, err = getPipeline(tx, name)
		return err
	})
	return p, err
}

// List returns every pipeline, by name.
func (r *Registry) List() ([]*kilnpb.Pipeline, error) {
	var out []*kilnpb.Pipeline
	err := r.db.View(func(tx *bbolt.Tx) error {
		return pipelines(tx).ForEach(func(k, _ []byte) error {
			p, err := getPipeline(tx, string(k))
			out = append(out, p)
			return err
		})
	})
	return out, err
}

// Delete removes a pipeline and its versions. Their binaries stay in the
// cache, where other pipelines may share them.
//
// TODO(kiln): garbage-collect blobs and build keys that no version refers
// to; until then the cache only grows.
func (r *Registry) Delete(name string) error {
	var id uint64
	err := r.db.Update(func(tx *bbolt.Tx) error {
		p, err := getPipeline(tx, name)
		if err != nil {
			return err
		}
		id = p.Id
		return deletePipeline(tx, p)
	})
	if err == nil {
		r.log.Info("pipeline deleted", "pipeline", name, "pipeline_id", id)
	}
	return err
}

// Versions returns the versions of a pipeline, oldest first; name "" means
// those of every pipeline, by pipeline name.
func (r *Registry) Versions(name string) ([]*kilnpb.Version, error) {
	var out []*kilnpb.Version
	err := r.db.View(func(tx *bbolt.Tx) error {
		if name != "" {
			p, err := getPipeline(tx, name)
			if err != nil {
				return err
			}
			out, err = listVersions(tx, p, out)
			return err
		}
		return pipelines(tx).ForEach(func(k, _ []byte) error {
			p, err := getPipeline(tx, string(k))
			if err == nil {
				out, err = listVersions(tx, p, out)
			}
			return err
		})
	})
	return out, err
}

// Version returns version n of a pipeline.
func (r *Registry) Version(name string, n uint64) (*kilnpb.Version, error) {
	var v *kilnpb.Version
	err := r.db.View(func(tx *bbolt.Tx) error {
		p, err := getPipeline(tx, name)
		if err == nil {
			v, err = getVersion(tx, p, n)
		}
		return err
	})
	return v, err
}

// Current returns the pipeline's current version: the newest usable one.
// A pipeline without one gives an error wrapping ErrNoVersion.
func (r *Registry) Current(name string) (*kilnpb.Version, error) {
	var v *kilnpb.Version
	err := r.db.View(func(tx *bbolt.Tx) error {
		p, err := getPipeline(tx, name)
		if err != nil {
			return err
		}
		if p.CurrentVersion == 0 {
			return errorf(ErrNoVersion, "pipeline %q has no usable version: run `ci "+
				"recompile %s`", name, name)
		}
		v, err = getVersion(tx, p, p.CurrentVersion)
		return err
	})
	return v, err
}

// Update changes a stored pipeline through fn, which gets a copy; an
// error from fn changes nothing. It is how the server records the facts of
// a pipeline's last run. fn may not change the pipeline's name or ID.
func (r *Registry) Update(name string, fn func(*kilnpb.Pipeline) error) error {
	return r.db.Update(func(tx *bbolt.Tx) error {
		p, err := getPipeline(tx, name)
		if err != nil {
			return err
		}
		q := proto.Clone(p).(*kilnpb.Pipeline)
		if err := fn(q); err != nil {
			return err
		}
		if q.Name != p.Name || q.Id != p.Id {
			return fmt.Errorf("registry: update of pipeline %q may not change its name or ID",
				name)
		}
		if !sameSettings(p, q) {
			q.Modified = r.now().UnixMilli()
		}
		return putPipeline(tx, q)
	})
}

// sameSettings reports whether two records of a pipeline differ in no more
// than the facts of its last run, which do not make it modified.
func sameSettings(a, b *kilnpb.Pipeline) bool {
	strip := func(p *kilnpb.Pipeline) *kilnpb.Pipeline {
		c := proto.Clone(p).(*kilnpb.Pipeline)
		c.LastRunId, c.LastRunStatus, c.LastRunAt, c.LastRunBy = 0, "", 0, ""
		c.TriggerState, c.Events = nil, nil
		return c
	}
	return proto.Equal(strip(a), strip(b))
}

// BinaryPath returns the file of a built binary, by digest.
func (r *Registry) BinaryPath(digest string) (string, error) {
	return r.cache.Path(digest)
}

// sayFunc sends one progress line; sayer makes one from a caller's
// progress func, which may be nil.
type sayFunc func(format string, args ...any)

func sayer(progress func(string)) sayFunc {
	return func(format string, args ...any) {
		if progress != nil {
			progress(fmt.Sprintf(format, args...))
		}
	}
}

// Short abbreviates a commit, or a digest's hex, to twelve digits for
// people.
func Short(s string) string {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func cmpLogger(l, def *slog.Logger) *slog.Logger {
	if l == nil {
		return def
	}
	return l
}
