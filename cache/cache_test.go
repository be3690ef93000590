package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func newCache(t *testing.T) *Cache {
	t.Helper()
	dir := t.TempDir()
	db, err := bbolt.Open(filepath.Join(dir, "kiln.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := New(filepath.Join(dir, "cache"), db)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestPutStoresBlobReadOnlyUnderItsDigest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("#!/bin/sh\necho hi\n")},
		{"large", bytes.Repeat([]byte("kiln"), 1<<18)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t)

			digest, size, err := c.Put(bytes.NewReader(tt.data))
			if err != nil {
				t.Fatal(err)
			}

			if want := digestOf(tt.data); digest != want {
				t.Fatalf("digest = %s, want %s", digest, want)
			}
			if size != int64(len(tt.data)) {
				t.Fatalf("size = %d, want %d", size, len(tt.data))
			}
			hexSum := strings.TrimPrefix(digest, "sha256:")
			wantPath := filepath.Join(c.Dir(), "blobs", "sha256", hexSum[:2], hexSum)
			p, err := c.Path(digest)
			if err != nil || p != wantPath {
				t.Fatalf("Path = %q, %v; want %q", p, err, wantPath)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != blobMode {
				t.Fatalf("mode = %v, want %v", fi.Mode().Perm(), os.FileMode(blobMode))
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Fatalf("blob holds %d bytes (%v), want %d", len(got), err, len(tt.data))
			}
			if !c.Has(digest) {
				t.Fatal("Has = false after Put")
			}
		})
	}
}

func TestPutTwiceKeepsOneBlobAndNoTemporaryFiles(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	data := []byte("same bytes")

	var wg sync.WaitGroup
	digests := make([]string, 8)
	errs := make([]error, 8)
	for i := range digests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			digests[i], _, errs[i] = c.Put(bytes.NewReader(data))
		}()
	}
	wg.Wait()

	for i := range digests {
		if errs[i] != nil || digests[i] != digestOf(data) {
			t.Fatalf("Put %d = %s, %v", i, digests[i], errs[i])
		}
	}
	tmps, err := os.ReadDir(filepath.Join(c.Dir(), "tmp"))
	if err != nil || len(tmps) != 0 {
		t.Fatalf("tmp holds %d entries (%v), want none", len(tmps), err)
	}
}

func TestOpenReturnsBlobAndSize(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	digest, _, err := c.Put(strings.NewReader("binary"))
	if err != nil {
		t.Fatal(err)
	}

	f, size, err := c.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "binary" || size != 6 {
		t.Fatalf("Open read %q (size %d, %v)", b, size, err)
	}
}

func TestMissingOrMalformedDigestsAreRefused(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	// A file outside blobs/ that a digest-shaped path could reach.
	if err := os.WriteFile(filepath.Join(c.Dir(), "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	absent := digestOf([]byte("never stored"))
	tests := []struct {
		name   string
		digest string
		want   error
	}{
		{"absent", absent, ErrNotFound},
		{"empty", "", ErrBadDigest},
		{"no algorithm", strings.TrimPrefix(absent, "sha256:"), ErrBadDigest},
		{"other algorithm", "sha512:" + strings.TrimPrefix(absent, "sha256:"), ErrBadDigest},
		{"upper case", strings.ToUpper(absent), ErrBadDigest},
		{"upper case hex", "sha256:" + strings.ToUpper(absent[7:]), ErrBadDigest},
		{"short", absent[:len(absent)-1], ErrBadDigest},
		{"long", absent + "0", ErrBadDigest},
		{"traversal", "sha256:../../../secret" + strings.Repeat("0", 42), ErrBadDigest},
		{"slash", "sha256:" + strings.Repeat("a", 31) + "/" + strings.Repeat("a", 32),
			ErrBadDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := c.Path(tt.digest); !errors.Is(err, tt.want) {
				t.Errorf("Path error = %v, want %v", err, tt.want)
			}
			if _, _, err := c.Open(tt.digest); !errors.Is(err, tt.want) {
				t.Errorf("Open error = %v, want %v", err, tt.want)
			}
			if c.Has(tt.digest) {
				t.Error("Has = true")
			}
		})
	}
}

func TestBuildIndexRecordsAndLooksUpKeys(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	d1, d2 := digestOf([]byte("one")), digestOf([]byte("two"))

	if _, ok, err := c.Lookup("k1"); ok || err != nil {
		t.Fatalf("Lookup of an unknown key = %v, %v", ok, err)
	}
	steps := []struct {
		key, digest string
	}{
		{"k1", d1},
		{"k2", d2},
		{"k1", d2}, // a key recorded again keeps the newest digest
	}
	for _, s := range steps {
		if err := c.Record(s.key, s.digest); err != nil {
			t.Fatal(err)
		}
		got, ok, err := c.Lookup(s.key)
		if err != nil || !ok || got != s.digest {
			t.Fatalf("Lookup(%s) = %s, %v, %v; want %s", s.key, got, ok, err, s.digest)
		}
	}
}

func TestRecordRefusesBadInput(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	tests := []struct {
		name, key, digest string
	}{
		{"empty key", "", digestOf(nil)},
		{"bad digest", "k", "sha256:nothex"},
	}
	for _, tt := range tests {
		if err := c.Record(tt.key, tt.digest); err == nil {
			t.Errorf("%s: Record succeeded", tt.name)
		}
	}
}

func TestNewRemovesOnlyStaleTemporaryFiles(t *testing.T) {
	t.Parallel()
	c := newCache(t)
	tmp := filepath.Join(c.Dir(), "tmp")
	stale, fresh := filepath.Join(tmp, "blob-stale"), filepath.Join(tmp, "blob-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	if _, err := New(c.Dir(), c.db); err != nil {
		t.Fatal(err)
	}

	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
}
