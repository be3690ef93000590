package web

import (
	"cmp"
	"crypto/hmac"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the dashboard needs. It must not change once New has it.
type Config struct {
	// API is the master the dashboard shows. Required.
	API kilnpb.MasterClient
	// Token is the admin token: the login page compares with it, sessions
	// are signed with a key derived from it, and mutations are made with
	// it. Required.
	Token string
	// Logger gets one line per mutation made through the dashboard; nil
	// discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// pageSize is how many rows a page of pipelines or runs shows.
const pageSize = 50

// Handler serves the dashboard.
type Handler struct {
	cfg   Config
	api   kilnpb.MasterClient
	log   *slog.Logger
	now   func() time.Time
	key   []byte // signs sessions and form tokens
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New parses the templates and returns the dashboard.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil || cfg.Token == "" {
		return nil, errors.New("web: Config needs API and Token")
	}
	h := &Handler{cfg: cfg, api: cfg.API, log: cfg.Logger, now: cfg.Now,
		key: sessionKey(cfg.Token)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/pipelines", http.StatusSeeOther)
	})
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("POST /logout", h.logout)

	m.HandleFunc("GET /pipelines", h.pipelinesPage)
	m.HandleFunc("GET /pipelines/{name}", h.pipelinePage)
	m.HandleFunc("GET /pipelines/{name}/run", h.runFormPage)
	m.HandleFunc("POST /pipelines/{name}/run", h.mutation(h.startRun))
	m.HandleFunc("POST /pipelines/{name}/recompile", h.mutation(h.recompile))

	m.HandleFunc("GET /runs/{id}", h.runPage)
	m.HandleFunc("GET /runs/{id}/events", h.runEvents)
	// A job's name goes in the query: names may hold '/', '?', '#' or be
	// "..", which a path would not carry through a browser.
	m.HandleFunc("GET /runs/{id}/log", h.logEvents)
	m.HandleFunc("GET /runs/{id}/log.txt", h.rawLog)
	m.HandleFunc("POST /runs/{id}/cancel", h.mutation(h.cancelRun))

	m.HandleFunc("GET /workers", h.workersPage)
	m.HandleFunc("POST /workers/{name}/suspend", h.mutation(h.suspend))
	m.HandleFunc("POST /workers/{name}/resume", h.mutation(h.resume))
	h.mux = m
}

// ServeHTTP serves a dashboard request with headers that keep pages from
// being framed, sniffed or made to run scripts from elsewhere.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; "+
		"style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; "+
		"frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// page is what every template gets besides its own data.
type page struct {
	Title    string
	Nav      string // the section of the nav bar to mark
	LoggedIn bool
	CSRF     string // the form token of the session
	Path     string // the request's path, to come back to after a login
	Flash    string // one line about the last action, from ?msg=
	Data     any
}

// render executes a page template, or answers with the error page when
// that fails before anything was written.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, name, title, nav string,
	data any) {
	sess, ok := h.session(r)
	p := page{Title: title, Nav: nav, LoggedIn: ok, Path: r.URL.RequestURI(),
		Flash: h.flash(r), Data: data}
	if ok {
		p.CSRF = h.formToken(sess)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := h.pages[name].ExecuteTemplate(w, "base", p); err != nil {
		h.log.Error("render page", "page", name, "err", err)
	}
}

// fail shows an error page for an API error, with the HTTP code that
// matches its gRPC code.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch status.Code(err) {
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists:
		code = http.StatusBadRequest
	case codes.Unauthenticated, codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	h.render(w, r, "error", http.StatusText(code), "", status.Convert(err).Message())
}

// admin is a context for a mutating call: the dashboard makes it with the
// admin token once the session is checked.
func (h *Handler) admin(r *http.Request) *http.Request {
	ctx := metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+h.cfg.Token,
		"kiln-client", "dashboard")
	return r.WithContext(ctx)
}

// back redirects after a mutation to where it leads, with one line to
// show there. The line is signed, so that a link from elsewhere cannot put
// words of its own in the page's mouth.
func (h *Handler) back(w http.ResponseWriter, r *http.Request, to, msg string) {
	u, err := url.Parse(to)
	if err != nil {
		u = &url.URL{Path: "/pipelines"}
	}
	if msg != "" {
		q := u.Query()
		q.Set("msg", msg)
		q.Set("msig", h.sign("flash", msg))
		u.RawQuery = q.Encode()
	}
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// flash is the signed line a redirect brought, or "".
func (h *Handler) flash(r *http.Request) string {
	q := r.URL.Query()
	msg := q.Get("msg")
	if msg == "" || !hmac.Equal([]byte(q.Get("msig")), []byte(h.sign("flash", msg))) {
		return ""
	}
	return msg
}

// uintParam reads a positive integer from the path or query; 0 when it is
// missing or not one.
func uintParam(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := name[len("templates/") : len(name)-len(".html")]
		if base == "base" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/base.html", name)
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// orDash shows "-" for an empty value.
func orDash(s string) string { return cmp.Or(s, "-") }
