package kiln

import (
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

// TestSDKGoModMatchesTheBuild keeps sdk.go.mod true: pipelines build
// offline against these exact versions, which must be the ones this
// module's build uses and so has in its module cache.
func TestSDKGoModMatchesTheBuild(t *testing.T) {
	out, err := exec.Command("go", "run", "./internal/sdkmod").Output()
	if err != nil {
		t.Fatalf("go run ./internal/sdkmod: %v", err)
	}
	if string(out) != string(SDKGoMod) {
		t.Fatalf("sdk.go.mod is stale: run `make generate`\nwant:\n%s\nhave:\n%s", out, SDKGoMod)
	}
}

func TestSDKSourceHoldsTheSDKAndItsProtocol(t *testing.T) {
	var files []string
	fs.WalkDir(SDKSource, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	all := strings.Join(files, " ")
	for _, want := range []string{"sdk/serve.go", "sdk/job.go", "proto/pluginpb/plugin.pb.go"} {
		if !strings.Contains(all, want) {
			t.Errorf("SDKSource lacks %s (has %s)", want, all)
		}
	}
}
