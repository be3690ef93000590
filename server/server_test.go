package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/registry"
)

// startServer starts a master on a folder of its own for the test.
func startServer(t *testing.T) (*Server, *grpc.ClientConn) {
	t.Helper()
	s, conn, stop := serveIn(t, t.TempDir())
	t.Cleanup(stop)
	return s, conn
}

func TestFirstStartWritesSecretsPrivately(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	for _, name := range []string{"worker.secret", "admin.token"} {
		fi, err := os.Stat(filepath.Join(s.cfg.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if s.WorkerSecret() == s.AdminToken() || len(s.AdminToken()) < 32 {
		t.Errorf("secret and token must differ and be long")
	}
}

func TestMutatingCallsNeedTheToken(t *testing.T) {
	t.Parallel()
	s, conn := startServer(t)
	api := kilnpb.NewMasterClient(conn)
	ctx := context.Background()

	if _, err := api.ListWorkers(ctx, &kilnpb.ListWorkersRequest{}); err != nil {
		t.Fatalf("a read without a token: %v", err)
	}
	_, err := api.SuspendWorker(ctx, &kilnpb.WorkerRequest{Name: "w"})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "needs the admin token") {
		t.Fatalf("no token: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer nope")
	if _, err := api.ListWorkers(bad, &kilnpb.ListWorkersRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a read with a wrong token: %v", err)
	}
	_, err = api.SuspendWorker(bad, &kilnpb.WorkerRequest{Name: "w"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
	good := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.AdminToken())
	_, err = api.SuspendWorker(good, &kilnpb.WorkerRequest{Name: "w"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"w"`) {
		t.Fatalf("unknown worker with the token: %v", err)
	}
}

func TestWorkerCallsNeedASession(t *testing.T) {
	t.Parallel()
	s, conn := startServer(t)
	link := kilnpb.NewLinkClient(conn)
	ctx := context.Background()

	_, err := link.Join(ctx, &kilnpb.JoinRequest{Secret: "wrong", Name: "w"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("join with a wrong secret: %v", err)
	}
	_, err = link.Heartbeat(ctx, &kilnpb.HeartbeatRequest{Healthy: true})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("heartbeat without a session: %v", err)
	}
	resp, err := link.Join(ctx, &kilnpb.JoinRequest{Secret: s.WorkerSecret(), Name: "w", Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	forged := metadata.AppendToOutgoingContext(ctx, mdWorker, "1", mdSession, "forged")
	_, err = link.Heartbeat(forged, &kilnpb.HeartbeatRequest{Healthy: true})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("heartbeat with a forged session: %v", err)
	}
	real := metadata.AppendToOutgoingContext(ctx, mdWorker, "1", mdSession, resp.Session)
	if _, err := link.Heartbeat(real, &kilnpb.HeartbeatRequest{Healthy: true}); err != nil {
		t.Fatalf("heartbeat with the session: %v", err)
	}
	_, err = link.Finish(real, &kilnpb.FinishRequest{AttemptId: 77, Ok: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("result of an attempt never given: %v", err)
	}
}

func TestResolveParamsNamesTheWrongOne(t *testing.T) {
	t.Parallel()
	decl := []*pluginpb.Param{
		{Name: "channel", Type: "choice", Choices: []string{"beta", "stable"}, Default: "beta"},
		{Name: "race", Type: "bool", Default: "false"},
		{Name: "note", Type: "string"},
	}
	got, err := ResolveParams("p", decl, map[string]string{"race": "true"})
	if err != nil || got["channel"] != "beta" || got["race"] != "true" || got["note"] != "" {
		t.Fatalf("defaults: %v %v", got, err)
	}
	tests := []struct {
		given map[string]string
		want  string
	}{
		{map[string]string{"chanel": "beta"}, `no parameter "chanel" (it takes channel, race, note)`},
		{map[string]string{"channel": "nightly"}, `"nightly" is not one of beta, stable`},
		{map[string]string{"race": "yes"}, `"yes" is not a bool: use true or false`},
	}
	for _, tt := range tests {
		if _, err := ResolveParams("p", decl, tt.given); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.given, err, tt.want)
		}
	}
}

func TestHealthAndMetricsOnTheHTTPPort(t *testing.T) {
	t.Parallel()
	s, conn := startServer(t)
	link := kilnpb.NewLinkClient(conn)
	if _, err := link.Join(context.Background(), &kilnpb.JoinRequest{Secret: s.WorkerSecret(),
		Name: "w", Slots: 3}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/metrics": `kiln_worker_slots{use="free"} 3`,
	} {
		resp, err := http.Get("http://" + s.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want %q in:\n%.2000s", path, resp.StatusCode, want, body)
		}
	}
}

func TestSourcePasswordsAreHiddenFromClients(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"https://user:hunter2@git.example/r.git", "https://user:xxxxx@git.example/r.git"},
		{"git::https://user:hunter2@git.example/r.git", "git::https://user:xxxxx@git.example/r.git"},
		{"file:///srv/r.git", "file:///srv/r.git"},
	} {
		if p := registry.Redact(tt.in); p != tt.want {
			t.Errorf("%s shown as %s, want %s", tt.in, p, tt.want)
		}
		r := publicRun(&kilnpb.Run{Source: tt.in})
		if r.Source != tt.want {
			t.Errorf("run of %s shows %s", tt.in, r.Source)
		}
	}
}
