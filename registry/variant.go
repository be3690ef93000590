package registry

import (
	"context"
	"fmt"
	"regexp"
	"sync"
)

var platformRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// variants holds a Builder per platform other than the master's.
type variants struct {
	mu       sync.Mutex
	builders map[string]*Builder // guarded by mu: by "goos/goarch"
}

// Variant returns the digest of a version's binary built for another
// platform, compiling it on first need; for the version's own platform it
// returns the version's digest. Workers of another GOOS/GOARCH than the
// master's run such variants. The variant is not described: the version's
// own binary, compiled from the same commit, was described and validated,
// and a variant of another platform may not run on the master anyway.
// Requests for one variant at once share one compile.
func (r *Registry) Variant(ctx context.Context, name string, n uint64,
	goos, goarch string) (string, error) {
	v, err := r.Version(name, n)
	if err != nil {
		return "", err
	}
	if v.Goos == goos && v.Goarch == goarch {
		return v.Digest, nil
	}
	if v.Status != StatusReady {
		return "", errorf(ErrNoVersion, "pipeline %q: version %d is %s, not ready", name, n, v.Status)
	}
	if !platformRE.MatchString(goos) || !platformRE.MatchString(goarch) {
		return "", errorf(ErrBadSource, "platform %q/%q is not GOOS/GOARCH", goos, goarch)
	}
	p, src, err := r.loadSource(name)
	if err != nil {
		return "", err
	}
	b, err := r.builderFor(goos, goarch)
	if err != nil {
		return "", err
	}

	key := b.Key(v.Commit, p.Dir)
	out, err, _ := r.flights.Do(key, func() (any, error) {
		if !r.startWork() {
			return "", fmt.Errorf("registry: closed")
		}
		defer r.running.Done()
		if digest, ok, err := r.cache.Lookup(key); err == nil && ok && r.cache.Has(digest) {
			return digest, nil
		}
		res := Resolved{Ref: v.Ref, Commit: v.Commit, Advertised: true}
		// The registry's own context: callers who join this compile must
		// not lose it when the first one gives up.
		digest, output, err := r.compileCommit(r.work, b, src, p.Dir, res,
			func(string, ...any) {})
		if err != nil {
			return "", fmt.Errorf("pipeline %q version %d for %s/%s: %w\n%s", name, n, goos,
				goarch, err, headLines(output, 20))
		}
		r.log.Info("variant built", "pipeline", name, "version", n, "goos", goos,
			"goarch", goarch, "digest", digest)
		return digest, r.cache.Record(key, digest)
	})
	if err != nil {
		return "", err
	}
	return out.(string), nil
}

func (r *Registry) builderFor(goos, goarch string) (*Builder, error) {
	r.variants.mu.Lock()
	defer r.variants.mu.Unlock()
	k := goos + "/" + goarch
	if b := r.variants.builders[k]; b != nil {
		return b, nil
	}
	cfg := r.cfg.Build
	cfg.GOOS, cfg.GOARCH = goos, goarch
	b, err := NewBuilder(cfg)
	if err != nil {
		return nil, err
	}
	if r.variants.builders == nil {
		r.variants.builders = map[string]*Builder{}
	}
	r.variants.builders[k] = b
	return b, nil
}
