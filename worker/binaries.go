package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sync/singleflight"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// binaries keeps the pipeline programs this worker pulled, by digest.
type binaries struct {
	dir   string
	link  kilnpb.LinkClient
	auth  func(context.Context) context.Context
	group singleflight.Group
}

// get returns the path of the binary with the digest, pulling it from the
// master first if needed. A pulled binary is kept only if its bytes hash
// to the digest.
func (b *binaries) get(ctx context.Context, digest string) (string, error) {
	hexsum, ok := strings.CutPrefix(digest, "sha256:")
	if _, err := hex.DecodeString(hexsum); !ok || err != nil || len(hexsum) != 64 {
		return "", fmt.Errorf("binary digest %q is not sha256:<hex>", digest)
	}
	path := filepath.Join(b.dir, hexsum)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	_, err, _ := b.group.Do(hexsum, func() (any, error) {
		return nil, b.pull(ctx, digest, hexsum, path)
	})
	return path, err
}

func (b *binaries) pull(ctx context.Context, digest, hexsum, path string) error {
	stream, err := b.link.FetchBinary(b.auth(ctx), &kilnpb.FetchBinaryRequest{
		Digest: digest, Goos: runtime.GOOS, Goarch: runtime.GOARCH})
	if err != nil {
		return fmt.Errorf("pull binary %s: %w", digest, err)
	}
	tmp, err := os.CreateTemp(b.dir, ".pull-*")
	if err != nil {
		return fmt.Errorf("pull binary: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("pull binary %s: %w", digest, err)
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return fmt.Errorf("pull binary: %w", err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexsum {
		return fmt.Errorf("pulled binary hashes to sha256:%s, not %s: refused", got, digest)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o555); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
