package server

import (
	"fmt"
	"net/http"
)

// httpHandler serves health and metrics; the dashboard and webhooks join
// them on the same port.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("POST /hooks/{name}", s.serveHook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}
