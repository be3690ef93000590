package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type triggeredRunJSON struct {
	ID      uint64 `json:"id"`
	Status  string `json:"status"`
	Commit  string `json:"commit"`
	Trigger struct {
		Kind        string `json:"kind"`
		Delivery    string `json:"delivery"`
		UpstreamRun uint64 `json:"upstream_run"`
	} `json:"trigger"`
}

// TestAWebhookRunSurvivesAMasterKilledMidBuild posts a push, kills the
// master with SIGKILL while it builds the pushed commit, and checks that
// after a restart the push becomes exactly one run, which starts exactly
// one run of its downstream pipeline.
func TestAWebhookRunSurvivesAMasterKilledMidBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a master")
	}
	t.Parallel()
	f := newFleet(t, "w1")
	secret := filepath.Join(f.dir, "hook.secret")
	if err := os.WriteFile(secret, []byte("e2e hook secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := gitRepo(t, filepath.Join("..", "testdata", "pipelines", "noop"))
	f.mustCI("pipeline", "create", "app", "--source", "file://"+repo, "--ref", "main",
		"--webhook-secret-file", secret)
	f.mustCI("pipeline", "create", "after", "--source", "file://"+repo, "--depends-on", "app")

	// A change to the program, so that the pushed commit must compile.
	main := filepath.Join(repo, "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "one job that does nothing", "one job, changed", 1)
	if err := os.WriteFile(main, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "commit", "--quiet", "-am", "change the description")
	head := git(t, repo, "rev-parse", "HEAD")

	body := fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"pusher":{"name":"e2e"}}`, head)
	if code, answer := postHook(t, f, "app", body, "delivery-1"); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, answer)
	}
	f.master.kill()
	f.startMaster()

	var runs []triggeredRunJSON
	eventually(t, 2*time.Minute, func() bool {
		f.jsonOf(&runs, "runs", "list", "app")
		return len(runs) == 1 && runs[0].Status == "succeeded"
	}, "one succeeded run of app; have %v", &runs)
	r := runs[0]
	if r.Commit != head || r.Trigger.Kind != "webhook" || r.Trigger.Delivery != "github:delivery-1" {
		t.Fatalf("run %+v, want the pushed commit %s from the delivery", r, head)
	}
	// The forge redelivers: it never saw the answer's effect.
	if code, answer := postHook(t, f, "app", body, "delivery-1"); code != http.StatusOK {
		t.Fatalf("redelivery: %d %s", code, answer)
	}

	var down []triggeredRunJSON
	eventually(t, time.Minute, func() bool {
		f.jsonOf(&down, "runs", "list", "after")
		return len(down) == 1 && down[0].Status == "succeeded"
	}, "one succeeded run of after; have %v", &down)
	if down[0].Trigger.Kind != "upstream" || down[0].Trigger.UpstreamRun != r.ID {
		t.Fatalf("downstream run %+v, want one started by run %d", down[0], r.ID)
	}

	// Once more through a restart: nothing is started again.
	f.master.signal(syscall.SIGTERM)
	<-f.master.done
	f.startMaster()
	time.Sleep(2 * time.Second)
	f.jsonOf(&runs, "runs", "list", "app")
	f.jsonOf(&down, "runs", "list", "after")
	if len(runs) != 1 || len(down) != 1 {
		t.Fatalf("after a restart: %d runs of app, %d of after; want 1 and 1", len(runs), len(down))
	}
	show := f.mustCI("pipeline", "show", "after")
	if !strings.Contains(show, fmt.Sprintf("by upstream app#%d", r.ID)) {
		t.Errorf("pipeline show does not say the upstream run started it:\n%s", show)
	}
}

// postHook sends a GitHub push delivery signed with the e2e secret.
func postHook(t *testing.T, f *fleet, pipeline, body, delivery string) (int, string) {
	t.Helper()
	mac := hmac.New(sha256.New, []byte("e2e hook secret"))
	mac.Write([]byte(body))
	req, err := http.NewRequest("POST", "http://"+f.http+"/hooks/"+pipeline,
		strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(answer))
}
