package server

import (
	"fmt"
	"net/http"
)

// httpHandler serves health now; the dashboard, metrics and webhooks join
// it on the same port.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}
