package worker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// binaries keeps the pipeline programs this worker pulled, by digest.
type binaries struct {
	dir  string
	link kilnpb.LinkClient
	auth func(context.Context) context.Context
	// life bounds pulls: one pull serves every attempt that needs the
	// binary, so no single attempt's end may cut it off.
	life  context.Context
	group singleflight.Group

	mu sync.Mutex
	// variants maps a version's digest to the digest of the binary this
	// worker runs for it: the same, or the build for this platform.
	variants map[string]string // guarded by mu
}

// get returns the path and digest of the binary of an assignment, pulling
// it from the master first if needed. The master sends the version's own
// binary or, for a worker of another platform, the version built for this
// one; either way the bytes must hash to the digest the master names, or
// they are refused.
func (b *binaries) get(ctx context.Context, a *kilnpb.Assignment) (string, string, error) {
	digest := a.Digest
	if err := checkDigest(digest); err != nil {
		return "", "", err
	}
	b.mu.Lock()
	actual := b.variants[digest]
	b.mu.Unlock()
	if actual != "" {
		if path := b.path(actual); exists(path) {
			return path, actual, nil
		}
	}
	ch := b.group.DoChan(digest, func() (any, error) {
		return b.pullRetrying(a)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return "", "", context.Cause(ctx)
	}
	if res.Err != nil {
		return "", "", res.Err
	}
	actual = res.Val.(string)
	b.mu.Lock()
	b.variants[digest] = actual
	b.mu.Unlock()
	return b.path(actual), actual, nil
}

func checkDigest(digest string) error {
	hexsum, ok := strings.CutPrefix(digest, "sha256:")
	if _, err := hex.DecodeString(hexsum); !ok || err != nil || len(hexsum) != 64 {
		return fmt.Errorf("binary digest %q is not sha256:<hex>", digest)
	}
	return nil
}

func (b *binaries) path(digest string) string {
	return filepath.Join(b.dir, strings.TrimPrefix(digest, "sha256:"))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// pullRetrying pulls, trying again for a while when the master is away
// for a moment (a restart, a network blip).
func (b *binaries) pullRetrying(a *kilnpb.Assignment) (string, error) {
	backoff := 100 * time.Millisecond
	deadline := time.Now().Add(time.Minute)
	for {
		digest, err := b.pull(b.life, a)
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return digest, err
		}
		select {
		case <-b.life.Done():
			return "", err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// pull fetches the binary and keeps it under its digest; it returns that
// digest.
func (b *binaries) pull(ctx context.Context, a *kilnpb.Assignment) (string, error) {
	stream, err := b.link.FetchBinary(b.auth(ctx), &kilnpb.FetchBinaryRequest{
		Digest: a.Digest, Goos: runtime.GOOS, Goarch: runtime.GOARCH,
		Pipeline: a.Run.GetPipeline(), Version: a.Run.GetVersion()})
	if err != nil {
		return "", fmt.Errorf("pull binary %s: %w", a.Digest, err)
	}
	tmp, err := os.CreateTemp(b.dir, ".pull-*")
	if err != nil {
		return "", fmt.Errorf("pull binary: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	want := ""
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("pull binary %s: %w", a.Digest, err)
		}
		if want == "" {
			want = cmp.Or(chunk.Digest, a.Digest)
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return "", fmt.Errorf("pull binary: %w", err)
		}
	}
	if err := checkDigest(want); err != nil {
		return "", err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("pulled binary hashes to %s, not %s: refused", got, want)
	}
	path := b.path(want)
	if exists(path) {
		return want, nil
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Chmod(0o555); err != nil {
		return "", err
	}
	return want, os.Rename(tmp.Name(), path)
}
