package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/kilnci/kiln/host"
	"github.com/kilnci/kiln/proto/pluginpb"
)

// artifact is what a build produced: a binary in the cache and what it
// said about itself, or the error that stopped it, with the compiler's
// output either way.
type artifact struct {
	digest string
	desc   *pluginpb.Description
	output string
	reused bool
	err    error
}

// produce returns the binary of a resolved commit's folder: from the build
// index when its key is there, else fetched and compiled. Calls for one key
// at once share a single build, whose progress each of them sees. The
// build runs on the registry's own context, so that a caller who gives up
// does not cut off the others; it ends on its timeouts or on Close.
func (r *Registry) produce(ctx context.Context, src Source, dir string, res Resolved,
	say sayFunc) artifact {
	key := r.builder.Key(res.Commit, dir)
	leave := r.relay.join(key, say)
	defer leave()

	ch := r.flights.DoChan(key, func() (any, error) {
		if !r.startWork() {
			return artifact{err: errors.New("registry: closed")}, nil
		}
		defer r.running.Done()
		return r.obtain(r.work, key, src, dir, res, r.relay.sayer(key)), nil
	})
	select {
	case out := <-ch:
		return out.Val.(artifact)
	case <-ctx.Done():
		return artifact{err: fmt.Errorf("build of commit %s: %w", Short(res.Commit),
			context.Cause(ctx))}
	}
}

// obtain is the body of one coalesced build. An index that cannot be read
// only costs a compile.
func (r *Registry) obtain(ctx context.Context, key string, src Source, dir string,
	res Resolved, say sayFunc) artifact {
	var a artifact
	if digest, ok, err := r.cache.Lookup(key); err == nil && ok && r.cache.Has(digest) {
		say("reusing the binary built from %s before (%s)", Short(res.Commit), Short(digest))
		a.digest, a.reused = digest, true
	} else {
		a.digest, a.output, a.err = r.compileCommit(ctx, r.builder, src, dir, res, say)
		if a.err != nil {
			return a
		}
		if a.err = r.cache.Record(key, a.digest); a.err != nil {
			return a
		}
	}
	a.desc, a.err = r.describe(ctx, a.digest, say)
	return a
}

// compileCommit fetches the commit into a fresh folder, compiles the
// pipeline's folder in it and stores the binary in the cache.
func (r *Registry) compileCommit(ctx context.Context, b *Builder, src Source, dir string,
	res Resolved, say sayFunc) (digest, output string, err error) {
	scratch, err := os.MkdirTemp(r.scratchDir(), "build-*")
	if err != nil {
		return "", "", fmt.Errorf("registry: create scratch folder: %w", err)
	}
	defer os.RemoveAll(scratch)

	checkout := filepath.Join(scratch, "src")
	say("fetching %s", Short(res.Commit))
	if err := fetch(ctx, src, res.Commit, checkout, r.cfg.FetchTimeout); err != nil {
		if !res.Advertised {
			err = errorf(ErrRefNotFound, "commit %s is not in %s", res.Commit, redact(src.Git))
		}
		return "", "", err
	}
	root, pkgDir, err := checkCheckout(checkout, dir)
	if err != nil {
		return "", "", err
	}

	say("compiling (first builds take a while)")
	bin := filepath.Join(scratch, "pipeline")
	output, err = b.compile(ctx, root, pkgDir, bin, func(l string) { say("%s", l) })
	if err != nil {
		return "", output, err
	}
	digest, err = r.store(bin)
	return digest, output, err
}

// checkCheckout returns the real folders of a checkout and of the pipeline
// in it, and refuses a checkout with symlinks that lead out of it.
func checkCheckout(checkout, dir string) (root, pkgDir string, err error) {
	root, pkgDir, err = pipelineDir(checkout, dir)
	if err != nil {
		return "", "", err
	}
	if err := checkSymlinks(root); err != nil {
		return "", "", err
	}
	return root, pkgDir, nil
}

func (r *Registry) store(bin string) (string, error) {
	f, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("registry: open built binary: %w", err)
	}
	defer f.Close()
	digest, _, err := r.cache.Put(f)
	return digest, err
}

// describe starts the binary with an environment of PATH and HOME only, in
// a folder of its own, asks for its description, stops it and checks what
// it said. The description is returned even when it is invalid.
func (r *Registry) describe(ctx context.Context, digest string,
	say sayFunc) (*pluginpb.Description, error) {
	say("describing")
	path, err := r.cache.Path(digest)
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp(r.scratchDir(), "describe-*")
	if err != nil {
		return nil, fmt.Errorf("registry: create scratch folder: %w", err)
	}
	defer os.RemoveAll(home)

	ctx, cancel := context.WithTimeout(ctx, r.cfg.DescribeTimeout)
	defer cancel()
	p, err := host.Start(ctx, host.Config{Path: path, Digest: digest, Dir: home,
		Env:    []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home},
		Logger: r.log, StartTimeout: r.cfg.DescribeTimeout})
	if err != nil {
		return nil, errorf(ErrDescribe, "the built program did not start: %w", err)
	}
	defer p.Stop()
	d, err := p.Describe(ctx)
	if err != nil {
		return nil, errorf(ErrDescribe, "the built program did not describe itself: %w", err)
	}
	if n := len(d.GetJobs()); n == 1 {
		say("validating 1 job")
	} else {
		say("validating %d jobs", n)
	}
	return d, CheckDescription(d)
}

func (r *Registry) scratchDir() string { return filepath.Join(r.cfg.DataDir, "tmp") }

// relay passes the progress lines of a coalesced build to every caller
// waiting for it, and stops passing them to a caller once it has left.
type relay struct {
	mu   sync.Mutex
	next int
	subs map[string]map[int]*subscriber // build key -> callers; guarded by mu
}

// subscriber is one caller of a build. Its lines go out one at a time, and
// none after it left: its progress func may write to a stream that allows
// one sender and that closes when the caller returns.
type subscriber struct {
	mu   sync.Mutex
	say  sayFunc
	gone bool // guarded by mu
}

func (s *subscriber) send(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone {
		s.say(format, args...)
	}
}

// join subscribes say to the progress of the build of key; the returned
// func unsubscribes it, and once it returns say is not called again.
func (rl *relay) join(key string, say sayFunc) (leave func()) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.subs == nil {
		rl.subs = map[string]map[int]*subscriber{}
	}
	if rl.subs[key] == nil {
		rl.subs[key] = map[int]*subscriber{}
	}
	id, sub := rl.next, &subscriber{say: say}
	rl.next++
	rl.subs[key][id] = sub
	return func() {
		rl.mu.Lock()
		delete(rl.subs[key], id)
		if len(rl.subs[key]) == 0 {
			delete(rl.subs, key)
		}
		rl.mu.Unlock()
		sub.mu.Lock()
		sub.gone = true
		sub.mu.Unlock()
	}
}

// sayer returns a sayFunc that sends a line to every caller of key.
func (rl *relay) sayer(key string) sayFunc {
	return func(format string, args ...any) {
		rl.mu.Lock()
		subs := make([]*subscriber, 0, len(rl.subs[key]))
		for _, s := range rl.subs[key] {
			subs = append(subs, s)
		}
		rl.mu.Unlock()
		for _, s := range subs {
			s.send(format, args...)
		}
	}
}
