package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/kilnci/kiln/internal/gitrepo"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/server"
	"github.com/kilnci/kiln/worker"
)

// The browser test drives the dashboard in a real Chromium against a real
// master, two in-process workers and a pipeline built from
// testdata/pipeline. Every wait is bounded: a page that never shows what
// it should fails within stepWait, not at the test binary's timeout.
const (
	stepWait  = 15 * time.Second // one page action or one thing to appear
	runWait   = 45 * time.Second // a whole run of the test pipeline
	buildWait = 3 * time.Minute  // the first build of the pipeline, cold cache
)

// pipelineName is the test pipeline, in testdata/pipeline.
const pipelineName = "dashboard"

// TestDashboardInChromium walks the dashboard as a user does. Its steps
// share one tab and build on each other, so the first that fails ends
// the test: a broken page costs one bounded wait, not one per step.
func TestDashboardInChromium(t *testing.T) {
	chrome := chromium(t)
	m := startMaster(t)
	m.startWorker(t, "w1")
	m.startWorker(t, "w2")
	m.createPipeline(t)
	m.waitWorkers(t, 2)
	b := openBrowser(t, chrome, "http://"+m.s.HTTPAddr())
	defer b.checkConsole(t)

	// The gate is the parent's: a subtest's temporary folder goes when
	// the subtest ends.
	gate := filepath.Join(t.TempDir(), "release-hold")
	var runPath string
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"reading needs no login", func(t *testing.T) { readPages(t, b) }},
		{"login", func(t *testing.T) { logIn(t, b, m.s.AdminToken()) }},
		{"run form", func(t *testing.T) { runPath = startRun(t, b, gate) }},
		{"live log and graph", func(t *testing.T) { followRun(t, b, runPath, gate) }},
		{"escaped and coloured log", func(t *testing.T) { colouredLog(t, b, runPath) }},
		{"suspend and resume", func(t *testing.T) { suspendWorker(t, b, m, "w2") }},
		{"cancel", func(t *testing.T) { cancelRun(t, b) }},
		{"logout", func(t *testing.T) { logOut(t, b) }},
		{"text after a carriage return", func(t *testing.T) { carriageReturn(t, b, runPath) }},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}
}

func readPages(t *testing.T, b *browser) {
	b.open(t, "/login")
	b.shot(t, "login")

	b.open(t, "/pipelines")
	b.wantText(t, `tr[data-pipeline="dashboard"]`,
		"A diamond with a coloured log", "manual only", "never run")
	b.shot(t, "pipelines")

	b.open(t, "/pipelines/"+pipelineName)
	b.wantText(t, "h1", pipelineName)
	b.wantText(t, "table.facts", "target (choice, default “staging”)", "gate (string")
	b.wantText(t, "#versions tbody", "ready")
	b.shot(t, "pipeline")

	b.open(t, "/workers")
	for _, w := range []string{"w1", "w2"} {
		b.wantText(t, `tr[data-worker="`+w+`"]`, "ready", "0 of 2")
	}
}

// logIn starts a run while logged out, which leads to the login page;
// there it shows a wrong token's error, then logs in with the right one
// and comes back to the run form.
func logIn(t *testing.T, b *browser, token string) {
	form := "/pipelines/" + pipelineName + "/run"
	b.open(t, form)
	b.submit(t, "#start")
	if got := b.path(t); got != "/login" {
		t.Fatalf("starting a run logged out leads to %s, want /login", got)
	}
	b.wantText(t, ".flash", "log in with the admin token")

	b.do(t, chromedp.SetValue(chromedp.ID("token"), "not-the-token"))
	b.submit(t, `form.login button[type="submit"]`)
	b.wantText(t, `[role="alert"]`, "not the admin token")
	b.forgetConsole() // the 401 of the wrong token, which the console reports

	b.do(t, chromedp.SetValue(chromedp.ID("token"), token))
	b.submit(t, `form.login button[type="submit"]`)
	if got := b.path(t); got != form {
		t.Fatalf("after the login the browser is at %s, want %s", got, form)
	}
	b.wantText(t, "header .who", "Log out")
	b.wantText(t, ".flash", "logged in")
}

// startRun fills the run form, with gate as the file the hold job waits
// for, starts the run and returns the run page's path.
func startRun(t *testing.T, b *browser, gate string) string {
	b.open(t, "/pipelines/"+pipelineName+"/run")
	b.do(t,
		chromedp.SetValue(chromedp.ID("p-target"), "production"),
		chromedp.SetValue(chromedp.ID("p-gate"), gate))
	b.shot(t, "run-form")

	b.submit(t, "#start")
	runPath := b.path(t)
	if !regexp.MustCompile(`^/runs/[0-9]+$`).MatchString(runPath) {
		t.Fatalf("starting the run led to %s, want /runs/ID", runPath)
	}
	b.wantText(t, "table.facts", "target=production")
	return runPath
}

// followRun reads the hold job's log while it runs, releases it, and
// watches the graph turn green without the page being loaded again.
func followRun(t *testing.T, b *browser, runPath, gate string) {
	b.open(t, runPath+"?job=hold")
	b.eval(t, `window.kilnSamePage = true`)
	b.waitJS(t, stepWait, "the hold job's log line, while it runs",
		`document.getElementById("log-body").textContent.includes("holding for ")`)
	b.waitJS(t, stepWait, "the hold job's node to be running",
		`document.querySelector('#graph g.node[data-job="hold"]').classList.contains("s-running")`)
	b.wantText(t, "#log-state", "following the log")
	b.shot(t, "run-in-progress")

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, runWait, "every job's node to be green",
		`(() => { const n = document.querySelectorAll("#graph g.node");
		  return n.length === 4 && [...n].every(g => g.classList.contains("s-succeeded")); })()`)
	b.waitJS(t, stepWait, "the run's status to read succeeded",
		`document.querySelector("#run-status .status").textContent === "succeeded"`)
	waitLogEnd(t, b, "hold")
	if !evalAs[bool](t, b, `window.kilnSamePage === true`) {
		t.Error("the run page was loaded again; it should follow the run in place")
	}
	if evalAs[bool](t, b, `document.getElementById("cancel-form") !== null`) {
		t.Error("the Cancel button stays on a finished run")
	}
	b.wantText(t, "#log-body", "released")
	b.wantText(t, `#jobs tr[data-job="report"]`, "succeeded")
	if n := evalAs[int](t, b, `document.querySelectorAll("#graph path.edge").length`); n != 4 {
		t.Errorf("the graph has %d edges, want the diamond's 4", n)
	}
	b.shot(t, "run-finished")
}

// colouredLog checks that SGR colours become spans and that markup a job
// prints stays text.
func colouredLog(t *testing.T, b *browser, runPath string) {
	b.open(t, runPath+"?job=paint")
	waitLogEnd(t, b, "paint")
	b.wantText(t, "#log-body span.fg1", "red alert")
	b.wantText(t, "#log-body span.fg2.b", "bold green")
	b.wantText(t, "#log-body", "<script>alert(1)</script> & <b>not bold</b>", "painted")
	if n := evalAs[int](t, b, `document.querySelectorAll("#log-body script, #log-body b").length`); n != 0 {
		t.Errorf("the log made %d elements of the job's markup, want none", n)
	}
	b.shot(t, "run-log")

	b.open(t, runPath+"?job=report")
	b.waitJS(t, stepWait, "the report job's log",
		`document.getElementById("log-body").textContent.includes("report for production")`)
}

// carriageReturn checks that the text after a carriage return in a log
// line shows: an event stream ends a line at a lone CR too, so the server
// must not send one raw inside its data.
func carriageReturn(t *testing.T, b *browser, runPath string) {
	b.open(t, runPath+"?job=paint")
	waitLogEnd(t, b, "paint")
	b.wantText(t, "#log-body", "progress 100%")
}

func waitLogEnd(t *testing.T, b *browser, job string) {
	t.Helper()
	b.waitJS(t, stepWait, "the end of the "+job+" job's log",
		`document.getElementById("log-state").textContent === "end of the log"`)
}

func suspendWorker(t *testing.T, b *browser, m *master, name string) {
	row := `tr[data-worker="` + name + `"]`
	b.open(t, "/workers")
	b.submit(t, row+" button.suspend")
	b.wantText(t, row, "suspended")
	b.wantText(t, ".flash", "worker "+name+" suspended")
	if got := m.workerState(t, name); got != "suspended" {
		t.Errorf("the master says %s is %s after Suspend, want suspended", name, got)
	}
	b.shot(t, "workers")

	b.submit(t, row+" button.resume")
	b.wantText(t, row, "ready")
	if got := m.workerState(t, name); got != "ready" {
		t.Errorf("the master says %s is %s after Resume, want ready", name, got)
	}
}

// cancelRun starts a run whose hold job waits for a file that never
// comes, cancels it with the run page's button and sees the run end.
func cancelRun(t *testing.T, b *browser) {
	b.open(t, "/pipelines/"+pipelineName+"/run")
	b.do(t, chromedp.SetValue(chromedp.ID("p-gate"), filepath.Join(t.TempDir(), "never")))
	b.submit(t, "#start")
	b.waitJS(t, stepWait, "the hold job's node to be running",
		`document.querySelector('#graph g.node[data-job="hold"]').classList.contains("s-running")`)

	b.submit(t, "#cancel")
	b.wantText(t, ".flash", "cancelled")
	b.waitJS(t, runWait, "the run's status to read cancelled",
		`document.querySelector("#run-status .status").textContent === "cancelled"`)
	b.waitJS(t, stepWait, "no job to be left running or queued",
		`document.querySelectorAll("#graph g.node.s-running, #graph g.node.s-queued").length === 0`)
	if evalAs[bool](t, b, `document.getElementById("cancel-form") !== null`) {
		t.Error("the Cancel button stays on a cancelled run")
	}
}

func logOut(t *testing.T, b *browser) {
	b.open(t, "/pipelines")
	b.submit(t, "header .who button")
	b.wantText(t, ".flash", "logged out")
	b.wantText(t, "header .who", "Log in")
	b.open(t, "/workers")
	b.submit(t, `tr[data-worker="w1"] button.suspend`)
	if got := b.path(t); got != "/login" {
		t.Errorf("suspending after the logout leads to %s, want /login", got)
	}
}

// TestDashboardRefusesMutationsWithoutLoginOrFromAnotherSite posts as a
// client that is not a browser: without a session it is sent to the login
// page, and with a valid session and form token but another origin it is
// refused, and the worker stays as it was.
func TestDashboardRefusesMutationsWithoutLoginOrFromAnotherSite(t *testing.T) {
	t.Parallel()
	m := startMaster(t)
	m.startWorker(t, "w1")
	m.waitWorkers(t, 1)
	base := "http://" + m.s.HTTPAddr()
	suspend := base + "/workers/w1/suspend"

	resp := post(t, suspend, url.Values{"csrf": {"x"}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(loc, "/login?") {
		t.Errorf("a post without a login: %s to %q, want 303 to /login", resp.Status, loc)
	}

	cookie := adminSession(t, base, m.s.AdminToken())
	csrf := formToken(t, base+"/workers", cookie)
	for _, h := range []http.Header{
		{"Origin": {"http://evil.example"}},
		{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}},
		{"Origin": {"null"}},
	} {
		h.Set("Cookie", cookie)
		resp := post(t, suspend, url.Values{"csrf": {csrf}}, h)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a logged-in post with %v: %s, want 403", h, resp.Status)
		}
	}
	if got := m.workerState(t, "w1"); got != "ready" {
		t.Fatalf("w1 is %s after refused posts, want ready", got)
	}

	// The same post from the dashboard's own origin works, so the
	// refusals above were for the origin alone.
	resp = post(t, suspend, url.Values{"csrf": {csrf}},
		http.Header{"Origin": {base}, "Cookie": {cookie}})
	if resp.StatusCode != http.StatusSeeOther || m.workerState(t, "w1") != "suspended" {
		t.Errorf("a same-origin post: %s, w1 %s; want 303 and suspended",
			resp.Status, m.workerState(t, "w1"))
	}
}

// chromium returns the browser to drive, or skips the test when there is
// none and KILN_BROWSER_TESTS does not demand one.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Chromium, a master and workers, and builds a pipeline")
	}
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("KILN_BROWSER_TESTS") == "1" {
		t.Fatal("KILN_BROWSER_TESTS=1 but there is no chromium: install the chromium package")
	}
	t.Skip("no chromium here; KILN_BROWSER_TESTS=1 makes that a failure")
	return ""
}

// master is a master serving in-process and a client of its API.
type master struct {
	s     *server.Server
	api   kilnpb.MasterClient
	admin context.Context
}

func startMaster(t *testing.T) *master {
	t.Helper()
	s, err := server.New(server.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0", HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done; s.Close() })
	return &master{s: s, api: kilnpb.NewMasterClient(conn),
		admin: metadata.AppendToOutgoingContext(context.Background(), "authorization",
			"Bearer "+s.AdminToken())}
}

func (m *master) startWorker(t *testing.T, name string) {
	t.Helper()
	w, err := worker.New(worker.Config{Master: m.s.GRPCAddr(), Secret: m.s.WorkerSecret(),
		Name: name, DataDir: t.TempDir(), Slots: 2, MinFreeDisk: 1, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	// Kill, not only cancel: a worker that is asked to stop drains, which
	// waits out a job that a failed step left holding.
	t.Cleanup(func() { cancel(); w.Kill(); <-done })
}

func (m *master) waitWorkers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(stepWait)
	for {
		ready := 0
		resp, err := m.api.ListWorkers(context.Background(), &kilnpb.ListWorkersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range resp.Workers {
			if w.State == "ready" {
				ready++
			}
		}
		if ready >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d workers ready after %s: %v", ready, n, stepWait, resp.Workers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *master) workerState(t *testing.T, name string) string {
	t.Helper()
	resp, err := m.api.ListWorkers(context.Background(), &kilnpb.ListWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range resp.Workers {
		if w.Name == name {
			return w.State
		}
	}
	t.Fatalf("no worker %s in %v", name, resp.Workers)
	return ""
}

// createPipeline registers the test pipeline from a git repository made of
// testdata/pipeline and waits for its first version.
func (m *master) createPipeline(t *testing.T) {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "repo")
	if err := gitrepo.FromDir(filepath.Join("testdata", "pipeline"), repo, "dashboard"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(m.admin, buildWait)
	defer cancel()
	stream, err := m.api.CreatePipeline(ctx, &kilnpb.CreatePipelineRequest{
		Name: pipelineName, Source: "file://" + repo, Ref: "main"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("create %s: %v", pipelineName, err)
		}
		if v := ev.GetVersion(); v != nil {
			if v.Status != "ready" {
				t.Fatalf("version %d of %s is %s: %s\n%s", v.Version, pipelineName, v.Status,
					v.Error, v.Output)
			}
			return
		}
	}
}

// browser is one Chromium tab on the dashboard, and what its console
// said.
type browser struct {
	ctx   context.Context
	base  string
	shots string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func openBrowser(t *testing.T, chrome, base string) *browser {
	t.Helper()
	// The background-networking flags keep Chromium from calling Google
	// hosts, which a closed network refuses and a test must not need.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"))
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx, base: base, shots: screenshotDir(t)}

	// The first Run starts the browser, bound to ctx: it must have no
	// timeout of its own.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", chrome, err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, msg)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); cancelAlloc(); <-done })
	t.Logf("screenshots go to %s", b.shots)
	return b
}

// screenshotDir is KILN_SCREENSHOTS when set, else a folder of the test.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("KILN_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// do runs actions within stepWait and fails the test on an error.
func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("in the browser: %v", err)
	}
}

// open loads a page of the dashboard and fails unless it answers 200.
func (b *browser) open(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepWait)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.base+path))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("open %s: %d %s", path, resp.Status, resp.StatusText)
	}
}

// submit clicks a form's button and waits for the page it leads to, which
// must answer 200 after any redirects.
func (b *browser) submit(t *testing.T, button string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepWait)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button)))
	if err != nil {
		t.Fatalf("click %s: %v", button, err)
	}
	if resp.Status != http.StatusOK && !(resp.Status == http.StatusUnauthorized &&
		strings.Contains(resp.URL, "/login")) {
		t.Fatalf("click %s: %s answered %d %s", button, resp.URL, resp.Status, resp.StatusText)
	}
}

// path is the path of the page the tab shows.
func (b *browser) path(t *testing.T) string {
	t.Helper()
	return evalAs[string](t, b, `location.pathname`)
}

// eval runs JavaScript in the page for its effect.
func (b *browser) eval(t *testing.T, js string) {
	t.Helper()
	b.do(t, chromedp.Evaluate[chromedp.Void](js))
}

// evalAs runs JavaScript in the page and returns its value.
func evalAs[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is true in the page.
func (b *browser) waitJS(t *testing.T, limit time.Duration, what, js string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(limit)))
	if err != nil {
		t.Fatalf("waiting %s for %s: %v\nthe page's text:\n%s", limit, what, err, b.pageText())
	}
}

// wantText waits until the first element matching a CSS selector holds
// every one of the texts.
func (b *browser) wantText(t *testing.T, selector string, texts ...string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q);
		return e !== null && %s.every(s => e.textContent.includes(s)); })()`,
		selector, jsStrings(texts))
	b.waitJS(t, stepWait, fmt.Sprintf("%s to show %q", selector, texts), js)
}

// pageText is the text of the page, to tell what it showed when a wait
// failed.
func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// shot writes a full-page PNG of the tab.
func (b *browser) shot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// forgetConsole drops the console's messages so far.
func (b *browser) forgetConsole() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.console = nil
}

// checkConsole fails on what the pages wrote to the console: an
// exception, an error, or a blocked script or style.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, msg := range b.console {
		// TODO(kiln): the pages name no icon, so Chromium asks for
		// /favicon.ico and logs its 404; base.html could link a data: icon.
		if strings.HasSuffix(msg.URL, "/favicon.ico") {
			continue
		}
		switch msg.Type {
		case chromedp.ConsoleError, chromedp.ConsoleException, chromedp.ConsoleWarning:
			t.Errorf("the console said: %s (at %s:%d)", msg, msg.URL, msg.Line)
		}
	}
}

func jsStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// post sends a form without following redirects.
func post(t *testing.T, u string, form url.Values, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var noRedirects = &http.Client{Timeout: stepWait,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// adminSession logs in and returns the session as a Cookie header.
func adminSession(t *testing.T, base, token string) string {
	t.Helper()
	resp := post(t, base+"/login", url.Values{"token": {token}, "next": {"/workers"}}, nil)
	for _, c := range resp.Cookies() {
		if c.Name == "kiln_session" {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || !c.Secure {
				t.Errorf("the session cookie is %v, want HttpOnly, SameSite=Strict, Secure", c)
			}
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("login: %s and no session cookie", resp.Status)
	return ""
}

// formToken reads the form token from a page of the session.
func formToken(t *testing.T, u, cookie string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", cookie)
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(body)
	if match == nil {
		t.Fatalf("no form token on %s (%s)", u, resp.Status)
	}
	return string(match[1])
}
