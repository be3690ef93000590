package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/kilnci/kiln/internal/gitrepo"
	"github.com/kilnci/kiln/proto/kilnpb"
)

func TestWorkerOfAnotherPlatformGetsABinaryBuiltForIt(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles a pipeline")
	}
	t.Parallel()
	s, conn := startServer(t)
	ctx := context.Background()
	admin := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.AdminToken())
	repo := noopRepo(t)
	stream, err := kilnpb.NewMasterClient(conn).CreatePipeline(admin,
		&kilnpb.CreatePipelineRequest{Name: "noop", Source: "file://" + repo})
	if err != nil {
		t.Fatal(err)
	}
	var v *kilnpb.Version
	for v == nil {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		v = ev.GetVersion()
	}

	link := kilnpb.NewLinkClient(conn)
	joined, err := link.Join(ctx, &kilnpb.JoinRequest{Secret: s.WorkerSecret(), Name: "pi", Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	worker := metadata.AppendToOutgoingContext(ctx, mdWorker, "1", mdSession, joined.Session)
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	fetch, err := link.FetchBinary(worker, &kilnpb.FetchBinaryRequest{Digest: v.Digest,
		Goos: "linux", Goarch: other, Pipeline: "noop", Version: v.Version})
	if err != nil {
		t.Fatal(err)
	}
	var data bytes.Buffer
	digest := ""
	for {
		chunk, err := fetch.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if digest == "" {
			digest = chunk.Digest
		}
		data.Write(chunk.Data)
	}
	sum := sha256.Sum256(data.Bytes())
	if digest == v.Digest || digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("sent %s for %s; want a variant whose digest matches its bytes", digest, v.Digest)
	}
	f, err := elf.NewFile(bytes.NewReader(data.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[other]
	if f.Machine != want {
		t.Fatalf("variant is for %v, want %v", f.Machine, want)
	}
}

func noopRepo(t *testing.T) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "noop")
	src := filepath.Join("..", "testdata", "pipelines", "noop")
	if err := gitrepo.FromDir(src, repo, "noop"); err != nil {
		t.Fatal(err)
	}
	return repo
}
