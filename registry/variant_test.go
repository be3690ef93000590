package registry

import (
	"context"
	"debug/elf"
	"runtime"
	"testing"
)

func TestVariantIsBuiltForTheWorkersPlatformOnceAndReused(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the SDK's dependencies for another architecture")
	}
	t.Parallel()
	warm(t, "good")
	r := newRegistry(t)
	_, v, err := r.Create(context.Background(), CreateRequest{Name: "web",
		Source: fixtureRepo(t, "good")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	same, err := r.Variant(context.Background(), "web", v.Version, runtime.GOOS, runtime.GOARCH)
	if err != nil || same != v.Digest {
		t.Fatalf("variant for the master's own platform = %s, %v; want %s", same, err, v.Digest)
	}

	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	digest, err := r.Variant(context.Background(), "web", v.Version, "linux", other)
	if err != nil {
		t.Fatal(err)
	}
	path, err := r.BinaryPath(digest)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[other]
	if f.Machine != want {
		t.Fatalf("variant is for %v, want %v", f.Machine, want)
	}

	b, _ := r.builderFor("linux", other)
	before := b.Compiles()
	again, err := r.Variant(context.Background(), "web", v.Version, "linux", other)
	if err != nil || again != digest || b.Compiles() != before {
		t.Fatalf("second request: %s, %v, %d compiles; want the same binary, no compile",
			again, err, b.Compiles()-before)
	}
	if _, err := r.Variant(context.Background(), "web", v.Version, "linux", "../x"); err == nil {
		t.Fatal("a malformed platform was accepted")
	}
}
