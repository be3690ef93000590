package server

import (
	"fmt"
	"net/http"
)

// httpHandler serves health, metrics, webhooks and, at every other path,
// the dashboard.
func (s *Server) httpHandler(dashboard http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", dashboard)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("POST /hooks/{name}", s.serveHook)
	mux.HandleFunc("/hooks/{name}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "a forge POSTs its deliveries here", http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}
