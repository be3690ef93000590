// Package cache is Kiln's content-addressed blob store and its build index.
//
// A blob is stored under the sha256 of its bytes:
//
//	<dir>/
//	  blobs/sha256/ab/abcd…   read-only blobs, two hex characters per shard
//	  tmp/                    blobs being written; renamed into blobs/ whole
//
// The build index maps a build key (a hash of everything a compile depends
// on, computed by the registry) to the digest of the binary that build made,
// so that a build whose inputs are unchanged reuses its binary. It lives in
// the bbolt database the caller passes in:
//
//	builds/                   bucket owned by this package
//	  <build key> -> "sha256:<hex>"
//
// Blobs are written to a temporary file in the cache folder, synced,
// made read-only and renamed into place, so a reader never sees half a
// blob and a crash leaves at most a stray temporary file. Blobs are mode
// 0o555: they are pipeline binaries that the master and workers execute,
// and nobody may change one after its digest was taken.
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Errors the cache returns, matched with errors.Is.
var (
	// ErrNotFound means no blob with the digest is in the cache.
	ErrNotFound = errors.New("cache: blob not found")

	// ErrBadDigest means a digest is not "sha256:" followed by 64
	// lower-case hex characters.
	ErrBadDigest = errors.New("cache: digest is not sha256:<64 lower-case hex>")
)

// blobMode is the mode of a stored blob: readable and executable by all,
// writable by none.
const blobMode = 0o555

// staleTemp is how old a temporary file must be before New removes it; a
// younger one may belong to a Put still running in this process.
const staleTemp = time.Hour

var buildsBucket = []byte("builds")

// Cache is a content-addressed blob store and build index. It is safe for
// concurrent use.
type Cache struct {
	dir string
	db  *bbolt.DB
}

// New opens the cache in dir, creating its folders and its bucket in db
// when they are missing, and removes temporary files left by a crash.
func New(dir string, db *bbolt.DB) (*Cache, error) {
	if db == nil {
		return nil, errors.New("cache: no database")
	}
	c := &Cache{dir: dir, db: db}
	for _, d := range []string{c.blobRoot(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cache: create %s: %w", d, err)
		}
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(buildsBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cache: create bucket: %w", err)
	}
	c.removeStaleTemps()
	return c, nil
}

// Dir returns the cache's folder.
func (c *Cache) Dir() string { return c.dir }

// Put stores the bytes of r and returns their digest ("sha256:<hex>") and
// size. Storing bytes that are already there is not an error: the existing
// blob is kept and the copy discarded.
func (c *Cache) Put(r io.Reader) (digest string, size int64, err error) {
	tmp, digest, size, err := c.writeTemp(r)
	if err != nil {
		return "", 0, err
	}
	if err := c.place(tmp, digest); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	return digest, size, nil
}

// writeTemp copies r into a synced, read-only temporary file and returns
// its name and the digest and size of what it holds.
func (c *Cache) writeTemp(r io.Reader) (name, digest string, size int64, err error) {
	f, err := os.CreateTemp(c.tmpDir(), "blob-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("cache: create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	h := sha256.New()
	if size, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
		return "", "", 0, fmt.Errorf("cache: write blob: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("cache: sync blob: %w", err)
	}
	if err = f.Chmod(blobMode); err != nil {
		return "", "", 0, fmt.Errorf("cache: make blob read-only: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("cache: close blob: %w", err)
	}
	return f.Name(), "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}

// place moves a finished temporary file to the blob's path, or drops it
// when the blob is already there.
func (c *Cache) place(tmp, digest string) error {
	final := c.blobPath(digest)
	if _, err := os.Stat(final); err == nil {
		return os.Remove(tmp)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return fmt.Errorf("cache: create shard folder: %w", err)
	}
	// A concurrent Put of the same bytes may win the rename; the result
	// is the same file either way.
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("cache: store blob %s: %w", digest, err)
	}
	return syncDir(filepath.Dir(final))
}

// Path returns the file of an existing blob. The file is read-only; an
// error wraps ErrNotFound when there is no such blob and ErrBadDigest when
// the digest is malformed.
func (c *Cache) Path(digest string) (string, error) {
	if err := CheckDigest(digest); err != nil {
		return "", err
	}
	p := c.blobPath(digest)
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return "", fmt.Errorf("cache: stat blob %s: %w", digest, err)
	}
	return p, nil
}

// Has reports whether the blob is in the cache. A malformed digest is not.
func (c *Cache) Has(digest string) bool {
	_, err := c.Path(digest)
	return err == nil
}

// Open opens a blob for reading and returns it with its size.
func (c *Cache) Open(digest string) (*os.File, int64, error) {
	p, err := c.Path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("cache: open blob %s: %w", digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("cache: stat blob %s: %w", digest, err)
	}
	return f, fi.Size(), nil
}

// Lookup returns the digest of the binary the build key produced, if the
// index has it. The blob itself may have been removed since; check Has.
func (c *Cache) Lookup(key string) (digest string, ok bool, err error) {
	if key == "" {
		return "", false, errors.New("cache: empty build key")
	}
	err = c.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(buildsBucket).Get([]byte(key)); v != nil {
			digest, ok = string(v), true
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("cache: look up build %s: %w", key, err)
	}
	return digest, ok, nil
}

// Record remembers that the build key produced the blob digest, replacing
// what the index held for the key.
func (c *Cache) Record(key, digest string) error {
	if key == "" {
		return errors.New("cache: empty build key")
	}
	if err := CheckDigest(digest); err != nil {
		return err
	}
	err := c.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(buildsBucket).Put([]byte(key), []byte(digest))
	})
	if err != nil {
		return fmt.Errorf("cache: record build %s: %w", key, err)
	}
	return nil
}

// CheckDigest returns an error wrapping ErrBadDigest unless digest is
// "sha256:" followed by 64 lower-case hex characters. Only such a digest
// ever becomes a path, so none can point outside the cache.
func CheckDigest(digest string) error {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return fmt.Errorf("%w: %q", ErrBadDigest, digest)
	}
	for _, r := range h {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return fmt.Errorf("%w: %q", ErrBadDigest, digest)
		}
	}
	return nil
}

func (c *Cache) blobRoot() string { return filepath.Join(c.dir, "blobs", "sha256") }

func (c *Cache) tmpDir() string { return filepath.Join(c.dir, "tmp") }

// blobPath maps a checked digest to its file.
func (c *Cache) blobPath(digest string) string {
	h := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(c.blobRoot(), h[:2], h)
}

func (c *Cache) removeStaleTemps() {
	entries, err := os.ReadDir(c.tmpDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && time.Since(info.ModTime()) > staleTemp {
			os.Remove(filepath.Join(c.tmpDir(), e.Name()))
		}
	}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cache: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cache: sync %s: %w", dir, err)
	}
	return nil
}
