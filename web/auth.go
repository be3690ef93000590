package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// cookieName is the session cookie.
const cookieName = "kiln_session"

// sessionTTL is how long a login lasts.
const sessionTTL = 12 * time.Hour

// sessionKey derives the signing key from the admin token, so that a new
// token ends every session made with the old one.
func sessionKey(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("kiln dashboard sessions"))
	return m.Sum(nil)
}

func (h *Handler) sign(parts ...string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}

// newSession is a cookie value: its expiry and its signature.
func (h *Handler) newSession() string {
	exp := strconv.FormatInt(h.now().Add(sessionTTL).Unix(), 10)
	return exp + "." + h.sign("session", exp)
}

// session returns the request's session cookie when it is valid.
func (h *Handler) session(r *http.Request) (string, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", false
	}
	exp, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(h.sign("session", exp))) {
		return "", false
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || h.now().Unix() > t {
		return "", false
	}
	return c.Value, true
}

// formToken is the token every form of a session carries.
func (h *Handler) formToken(session string) string { return h.sign("form", session) }

// sameOrigin refuses a request that a browser says came from another
// site: Sec-Fetch-Site where the browser sends it, Origin otherwise.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == ""
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// mutation wraps a handler that changes something: it needs a session, a
// form token that matches it and a request from this origin. Without a
// session the user is sent to the login page, and back after it.
func (h *Handler) mutation(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			http.Error(w, "refused: the request came from another site", http.StatusForbidden)
			return
		}
		sess, ok := h.session(r)
		if !ok {
			from := "/pipelines"
			if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host {
				from = ref.Path
			}
			h.back(w, r, "/login?next="+url.QueryEscape(from), "log in with the admin token to do that")
			return
		}
		got := r.PostFormValue("csrf")
		if subtle.ConstantTimeCompare([]byte(got), []byte(h.formToken(sess))) != 1 {
			http.Error(w, "refused: the form is stale or from elsewhere; reload the page",
				http.StatusForbidden)
			return
		}
		next(w, h.admin(r))
	}
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, "login", "Log in", "login",
		loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

// login compares the token given with the admin token in constant time
// and sets the session cookie.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "refused: the request came from another site", http.StatusForbidden)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	token := strings.TrimSpace(r.PostFormValue("token"))
	if subtle.ConstantTimeCompare([]byte(token), []byte(h.cfg.Token)) != 1 {
		h.log.Warn("dashboard login refused", "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
		h.render(w, r, "login", "Log in", "login", loginData{Next: next,
			Error: "that is not the admin token: it is in admin.token in the master's data folder"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: h.newSession(), Path: "/",
		MaxAge: int(sessionTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secureCookie(r)})
	h.log.Info("dashboard login", "remote", r.RemoteAddr)
	h.back(w, r, next, "logged in")
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "refused: the request came from another site", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureCookie(r)})
	h.back(w, r, "/pipelines", "logged out")
}

// secureCookie says whether the cookie may carry Secure: browsers keep a
// Secure cookie from HTTPS and from loopback, and drop it from plain HTTP
// elsewhere, where the login would then never hold.
//
// TODO(kiln): serve the HTTP port with TLS, then always set Secure; until
// then a dashboard reached over plain HTTP beyond loopback sends its
// cookie in clear, which the README warns of.
func secureCookie(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type loginData struct {
	Next  string
	Error string
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n") {
		return "/pipelines"
	}
	return next
}
