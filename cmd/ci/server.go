package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnci/kiln/server"
)

type serverOptions struct {
	data      string
	grpcAddr  string
	httpAddr  string
	heartbeat time.Duration
	accept    time.Duration
	goproxy   string
	logLevel  string
}

func newServerCommand(*env) *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the master: registry, cache, scheduler and API",
		Args:  wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.data, "data", "kiln-data", "folder for the database, cache, logs and secrets")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:7070", "address of the gRPC API for ci and workers")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7071", "address of the HTTP port (health)")
	fs.DurationVar(&o.heartbeat, "heartbeat-interval", 2*time.Second,
		"how often workers report; one silent for two intervals is lost")
	fs.DurationVar(&o.accept, "accept-timeout", 5*time.Second,
		"how long an assignment waits for its worker to accept it before the next worker gets it")
	fs.StringVar(&o.goproxy, "goproxy", "off",
		"GOPROXY for pipeline builds; off builds from the module cache only")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	bindEnv(fs, "data", "KILN_DATA")
	bindEnv(fs, "grpc-addr", "KILN_GRPC_ADDR")
	bindEnv(fs, "http-addr", "KILN_HTTP_ADDR")
	bindEnv(fs, "goproxy", "KILN_GOPROXY")
	bindEnv(fs, "log-level", "KILN_LOG_LEVEL")
	return cmd
}

func (o *serverOptions) run(cmd *cobra.Command) error {
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	data, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		DataDir: data, GRPCAddr: o.grpcAddr, HTTPAddr: o.httpAddr,
		HeartbeatInterval: o.heartbeat, AcceptTimeout: o.accept, GoProxy: o.goproxy,
		Logger: logger,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	printJoinHelp(cmd.OutOrStdout(), srv.GRPCAddr(), srv.HTTPAddr(), data)
	return srv.Serve(cmd.Context())
}

// printJoinHelp tells the operator how to reach the master and how to join
// a worker to it.
func printJoinHelp(w io.Writer, grpcAddr, httpAddr, data string) {
	fmt.Fprintf(w, "kiln master: API on %s, HTTP on %s, data in %s\n", grpcAddr, httpAddr, data)
	fmt.Fprintf(w, "join a worker:\n  ci worker --master %s --secret-file %s "+
		"--name worker-1 --data kiln-worker-1\n",
		grpcAddr, filepath.Join(data, "worker.secret"))
	fmt.Fprintf(w, "use the CLI:\n  export KILN_MASTER=%s KILN_TOKEN_FILE=%s\n", grpcAddr,
		filepath.Join(data, "admin.token"))
	fmt.Fprintf(w, "dashboard: http://%s/ (log in with the admin token to start, cancel "+
		"or suspend)\n", httpAddr)
	fmt.Fprintf(w, "webhooks: POST http://%s/hooks/PIPELINE (see ci pipeline update --help)\n",
		httpAddr)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
