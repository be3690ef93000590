package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// Metadata keys of worker calls.
const (
	mdWorker  = "kiln-worker"
	mdSession = "kiln-session"
)

// mutating lists the Master methods that need the admin token. Reads are
// open: the master binds to loopback unless told otherwise.
var mutating = map[string]bool{
	kilnpb.Master_CreatePipeline_FullMethodName: true,
	kilnpb.Master_DeletePipeline_FullMethodName: true,
	kilnpb.Master_Recompile_FullMethodName:      true,
	kilnpb.Master_Pin_FullMethodName:            true,
	kilnpb.Master_UpdatePipeline_FullMethodName: true,
	kilnpb.Master_StartRun_FullMethodName:       true,
	kilnpb.Master_CancelRun_FullMethodName:      true,
	kilnpb.Master_SuspendWorker_FullMethodName:  true,
	kilnpb.Master_ResumeWorker_FullMethodName:   true,
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo,
	h grpc.UnaryHandler) (any, error) {
	if err := s.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo,
	h grpc.StreamHandler) error {
	if err := s.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

func (s *Server) authorize(ctx context.Context, method string) error {
	switch {
	case mutating[method]:
		return s.checkToken(ctx)
	case strings.HasPrefix(method, "/"+kilnpb.Master_ServiceDesc.ServiceName+"/"):
		// Reads need no token, but a wrong one is a mistake worth saying.
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 {
			return s.checkToken(ctx)
		}
		return nil
	case strings.HasPrefix(method, "/"+kilnpb.Link_ServiceDesc.ServiceName+"/") &&
		method != kilnpb.Link_Join_FullMethodName:
		_, err := s.workerOf(ctx)
		return err
	}
	return nil
}

func (s *Server) checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := ""
	if v := md.Get("authorization"); len(v) > 0 {
		got = strings.TrimPrefix(v[0], "Bearer ")
	}
	if got == "" {
		return status.Error(codes.Unauthenticated, "this call needs the admin token")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
		return status.Error(codes.Unauthenticated, "the admin token is wrong")
	}
	return nil
}

// workerOf returns the worker ID a worker call carries, after checking its
// session against the table.
func (s *Server) workerOf(ctx context.Context) (uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	ids, sessions := md.Get(mdWorker), md.Get(mdSession)
	if len(ids) == 0 || len(sessions) == 0 {
		return 0, status.Error(codes.Unauthenticated, "worker call without a session: join first")
	}
	id, err := strconv.ParseUint(ids[0], 10, 64)
	if err != nil {
		return 0, status.Error(codes.Unauthenticated, "worker call with a malformed worker ID")
	}
	s.mu.Lock()
	w, ok := s.eng.Worker(id)
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(w.Session), []byte(sessions[0])) != 1 {
		return 0, status.Error(codes.Unauthenticated, "unknown worker session: join again")
	}
	return id, nil
}

// ensureSecret reads the secret at path, creating it (mode 0600) on first
// start.
func ensureSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("server: %s is empty: delete it to have a new one made", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("server: read %s: %w", path, err)
	}
	secret := randomHex(32)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("server: create %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return "", fmt.Errorf("server: write %s: %w", path, err)
	}
	return secret, f.Sync()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
