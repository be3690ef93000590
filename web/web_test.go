package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func TestANSIColoursBecomeClassesAndTextIsEscaped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"plain", []string{"a < b & c"}, "a &lt; b &amp; c"},
		{"markup", []string{"<script>alert(1)</script>"}, "&lt;script&gt;alert(1)&lt;/script&gt;"},
		{"red then reset", []string{"\x1b[31mred\x1b[0m plain"},
			`<span class="fg1">red</span> plain`},
		{"bold bright green", []string{"\x1b[1;92mok"}, `<span class="b fg10">ok`},
		{"256 colour under 16", []string{"\x1b[38;5;4mblue"}, `<span class="fg4">blue`},
		{"true colour is dropped", []string{"\x1b[38;2;1;2;3mx\x1b[m"}, "x"},
		{"split escape", []string{"a\x1b[3", "2mgreen"}, `a<span class="fg2">green`},
		{"cursor moves are dropped", []string{"\x1b[2K\x1b[1Gline"}, "line"},
		{"OSC title is dropped", []string{"\x1b]0;title\x07text"}, "text"},
		{"invalid UTF-8", []string{"a\xffb"}, "a\uFFFDb"},
		{"a run-on sequence ends", []string{"a\x1b[" + strings.Repeat("1;", 40)},
			"a" + strings.Repeat("1;", 40)},
		{"a sequence cut by a line's end", []string{"\x1b[31\nAFTER"}, "31\nAFTER"},
		{"an OSC title cut by a line's end", []string{"\x1b]0;title\nSECOND"}, "0;title\nSECOND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var a ansi
			var got strings.Builder
			for _, c := range tt.chunks {
				got.WriteString(a.write([]byte(c)))
			}
			if got.String() != tt.want {
				t.Errorf("got %q, want %q", got.String(), tt.want)
			}
		})
	}
}

func TestGraphPutsAJobRightOfWhatItDependsOn(t *testing.T) {
	t.Parallel()
	jobs := []*kilnpb.Job{
		{Name: "checkout"},
		{Name: "vet", DependsOn: []string{"checkout"}},
		{Name: "test", DependsOn: []string{"checkout"}},
		{Name: "build", DependsOn: []string{"vet", "test"}},
		{Name: "lint"},
	}
	g := layout(jobs)
	at := map[string]node{}
	for _, n := range g.Nodes {
		at[n.Job.Name] = n
	}
	if !(at["checkout"].X < at["vet"].X && at["vet"].X == at["test"].X && at["test"].X < at["build"].X) {
		t.Errorf("columns: %+v", at)
	}
	if at["vet"].Y == at["test"].Y || at["lint"].X != at["checkout"].X {
		t.Errorf("rows: %+v", at)
	}
	if len(g.Edges) != 4 {
		t.Errorf("%d edges, want 4", len(g.Edges))
	}
	for _, n := range g.Nodes {
		if n.X+boxW > g.W || n.Y+boxH > g.H {
			t.Errorf("%s lies outside the %dx%d picture", n.Job.Name, g.W, g.H)
		}
	}
}

func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New(Config{API: kilnpb.NewMasterClient(nil), Token: "the-token",
		Now: func() time.Time { return time.Unix(1_000_000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestAMutationNeedsASessionAFormTokenAndThisOrigin(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t)
	called := 0
	do := h.mutation(func(w http.ResponseWriter, r *http.Request) { called++ })
	session := h.newSession()
	post := func(form url.Values, cookie string, header map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "http://127.0.0.1:7071/runs/1/cancel",
			strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
		}
		for k, v := range header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		do(w, r)
		return w
	}
	good := url.Values{"csrf": {h.formToken(session)}}

	if w := post(good, "", nil); w.Code != http.StatusSeeOther ||
		!strings.HasPrefix(w.Header().Get("Location"), "/login") {
		t.Errorf("no session: %d %s", w.Code, w.Header().Get("Location"))
	}
	if w := post(url.Values{"csrf": {"forged"}}, session, nil); w.Code != http.StatusForbidden {
		t.Errorf("wrong form token: %d", w.Code)
	}
	if w := post(good, session, map[string]string{"Origin": "http://evil.example"}); w.Code != http.StatusForbidden {
		t.Errorf("another origin: %d", w.Code)
	}
	if w := post(good, session, map[string]string{"Sec-Fetch-Site": "cross-site"}); w.Code != http.StatusForbidden {
		t.Errorf("cross-site fetch: %d", w.Code)
	}
	forged := strings.Replace(session, ".", ".0", 1)
	if w := post(good, forged, nil); w.Code != http.StatusSeeOther {
		t.Errorf("forged session: %d", w.Code)
	}
	if called != 0 {
		t.Fatalf("the mutation ran %d times for refused requests", called)
	}
	post(good, session, map[string]string{"Origin": "http://127.0.0.1:7071", "Sec-Fetch-Site": "same-origin"})
	if called != 1 {
		t.Fatalf("a good request ran the mutation %d times", called)
	}

	// A session ends with its time, and with the token that signed it.
	later := newTestHandler(t)
	later.now = func() time.Time { return time.Unix(1_000_000, 0).Add(sessionTTL + time.Second) }
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: cookieName, Value: session})
	if _, ok := later.session(r); ok {
		t.Error("an expired session is taken")
	}
	other, _ := New(Config{API: kilnpb.NewMasterClient(nil), Token: "a-new-token",
		Now: h.now})
	if _, ok := other.session(r); ok {
		t.Error("a session of another token is taken")
	}
}

func TestLoginSetsAStrictHTTPOnlyCookieAndRefusesAWrongToken(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t)
	login := func(token string) *httptest.ResponseRecorder {
		form := url.Values{"token": {token}, "next": {"//evil.example/x"}}
		r := httptest.NewRequest("POST", "http://127.0.0.1:7071/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := login("wrong"); w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Errorf("wrong token: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	w := login("the-token")
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", w.Code, cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v: want HttpOnly, Secure on loopback, SameSite=Strict", c)
	}
	if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, "/pipelines") {
		t.Errorf("a next outside the site led to %q", loc)
	}
	page := httptest.NewRecorder()
	h.ServeHTTP(page, httptest.NewRequest("GET", "/login", nil))
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
}
