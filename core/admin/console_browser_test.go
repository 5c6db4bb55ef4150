package admin

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/testkit"
)

// chromium returns the path of Debian's chromium, or skips t when there is none (fails it under
// WEIR_REQUIRE_ALL=1, as in CI, which installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("WEIR_REQUIRE_ALL") == "1" {
		t.Fatal("no chromium or chromium-browser on PATH (WEIR_REQUIRE_ALL=1); apt-get install chromium")
	}
	t.Skip("no chromium or chromium-browser on PATH: the console's browser test needs it (apt-get install chromium)")
	return ""
}

// testOutput is where the browser test leaves its screenshots: $WEIR_TEST_OUTPUT/console when
// that is set (CI keeps it), else testdata/out in this package, which git ignores.
func testOutput(t *testing.T) string {
	dir := filepath.Join("testdata", "out")
	if d := os.Getenv("WEIR_TEST_OUTPUT"); d != "" {
		dir = filepath.Join(d, "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

const browserCfg = `
access_log: { enabled: false }
upstreams:
  api:
    targets: [%q]
    health: { path: /health, interval: 200ms }
routes:
  - name: hello
    match: { path_prefix: /hello }
    upstream: api
    filters:
      - cache: {}
  - name: orders
    match: { path_prefix: /orders }
    upstream: api
    filters:
      - ratelimit: { key: client_ip, limits: [ { rate: 100000, per: 1s } ] }
`

// TestConsoleBrowser loads the console in headless chromium against a gateway under traffic:
// the token prompt, live figures that rise between reads, upstream health, and a rejected reload
// with its error. It leaves full-page screenshots in testOutput.
func TestConsoleBrowser(t *testing.T) {
	chrome := chromium(t)
	out := testOutput(t)

	// The backend: quick answers, a 500 for one order in ten, cacheable hellos.
	var n int
	var mu sync.Mutex
	backend := testkit.Serve(t, shutdownCtx{&fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		mu.Lock()
		n++
		fail := n%10 == 0
		mu.Unlock()
		switch {
		case strings.HasPrefix(string(rc.Path()), "/hello"):
			rc.Response.Header.Set("Cache-Control", "max-age=1")
			rc.SetBodyString("hello")
		case fail && strings.HasPrefix(string(rc.Path()), "/orders"):
			rc.SetStatusCode(500)
		default:
			rc.SetBodyString(`{"ok":true}`)
		}
	}}})
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(browserCfg, backend)), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	gw := testkit.Serve(t, eng)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := New(eng, Options{Token: "console-test-token"}, zerolog.Nop())
	go a.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = a.Shutdown() })
	console := "http://" + ln.Addr().String() + "/console/"

	// Traffic until the test ends: a steady trickle on both routes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &fasthttp.Client{}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			p := "/hello"
			if i%2 == 1 {
				p = fmt.Sprintf("/orders/%d", i)
			}
			_, _, _ = c.Get(nil, "http://"+gw+p)
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.WindowSize(1440, 900),
		// The page is this test's own; the sandbox needs user namespaces a CI container may lack.
		chromedp.NoSandbox)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// Script errors and policy violations (a Content-Security-Policy refusal) fail the test.
	var pageErrs []string
	var errMu sync.Mutex
	if err := chromedp.Listen(bctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg = fmt.Sprintf("%s at %s:%d", d.Text, d.URL, d.LineNumber+1)
			if d.Exception != nil {
				msg += ": " + d.Exception.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Source == log.EntrySourceSecurity || ev.Entry.Source == log.EntrySourceJavascript {
				msg = string(ev.Entry.Source) + ": " + ev.Entry.Text
			}
		}
		if msg != "" {
			errMu.Lock()
			pageErrs = append(pageErrs, msg)
			errMu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(out, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// wait polls a JavaScript condition (every 100 ms, up to 20 s) and returns its value.
	wait := func(what, expr string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Poll[string](expr, chromedp.WithPollingInterval(100*time.Millisecond),
			chromedp.WithPollingTimeout(20*time.Second)))
		if err != nil {
			shot("failed.png")
			t.Fatalf("%s: %v (screenshot in %s)", what, err, out)
		}
		return v
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			shot("failed.png")
			t.Fatalf("%s: %v (screenshot in %s)", what, err, out)
		}
	}

	// Without the token the page loads, shows no data and asks for it.
	do("load the console", chromedp.Navigate(console), chromedp.WaitVisible(chromedp.CSS("#token")))
	wait("main hidden before the token", `document.getElementById("main").hidden && "ok"`)
	shot("token.png")
	// A wrong token is refused with a clear message; the right one opens the console.
	do("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "wrong"), chromedp.Click(chromedp.CSS("#connect")))
	wait("wrong token refused", `(e => !e.hidden && e.textContent.includes("refused"))(document.getElementById("token-error")) && "ok"`)
	do("token", chromedp.SendKeys(chromedp.CSS("#token"), "console-test-token"), chromedp.Click(chromedp.CSS("#connect")),
		chromedp.WaitVisible(chromedp.CSS("#main")))
	if tok, err := chromedp.Run(bctx, chromedp.Evaluate[string](`sessionStorage.getItem("weir-admin-token")`)); err != nil || tok != "console-test-token" {
		t.Errorf("token in session storage = %q, %v", tok, err)
	}
	// The fastest refresh, so that two reads come quickly.
	do("interval", chromedp.Evaluate[chromedp.Void](`(s => { s.value = "2000"; s.dispatchEvent(new Event("change")); })(document.getElementById("interval"))`))

	// Live figures: the route's request count rises from one read to a later one, and the
	// charts have points.
	cell := `document.querySelector('tr[data-route="hello"] td.total')`
	first := wait("hello's request count", `(c => c && /^[0-9.]+k?$/.test(c.textContent) && c.textContent)(`+cell+`)`)
	wait("hello's count rises", `(c => c && c.textContent !== `+jsString(first)+` && c.textContent)(`+cell+`)`)
	wait("requests chart drawn", `Number(document.getElementById("chart-rate").dataset.points) > 0 && "ok"`)
	wait("p99 shown", `(c => c && /[µm]?s$/.test(c.textContent) && "ok")(document.querySelector('tr[data-route="hello"] td.p99'))`)
	wait("5xx share of orders", `(c => c && /%$/.test(c.textContent) && c.textContent !== "0.0 %" && "ok")(document.querySelector('tr[data-route="orders"] td.errors'))`)
	wait("upstream figures", `(h => h && /attempts\/s · p50 [0-9.]+ [µm]?s · p99 [0-9.]+ [µm]?s · failed [0-9.]+ %/.test(h.textContent) && "ok")(document.querySelector('[data-upstream="api"] h3'))`)
	// The rate limit's decisions on orders, allowed and rising.
	allowed := `document.querySelector('#ratelimit-body tr[data-name="orders · ratelimit"] td[data-counter="allowed"]')`
	decided := wait("rate-limit decisions", `(c => c && /^[0-9]/.test(c.textContent) && c.textContent)(`+allowed+`)`)
	wait("rate-limit decisions rise", `(c => c && c.textContent !== `+jsString(decided)+` && "ok")(`+allowed+`)`)
	// The cache counters of /stats rise too, and the upstream target is healthy.
	misses := `document.querySelector('#cache-body tr[data-name="hello"] td[data-counter="hits"]')`
	hits := wait("cache hits", `(c => c && c.textContent)(`+misses+`)`)
	wait("cache hits rise", `(c => c && c.textContent !== `+jsString(hits)+` && "ok")(`+misses+`)`)
	wait("target healthy", `(b => b && b.textContent.startsWith("healthy") && "ok")(document.querySelector('tr[data-target=`+jsString(backend)+`] .badge'))`)
	shot("console.png")

	// A broken config: the reload button answers with the error, and the history lists it.
	if err := os.WriteFile(path, []byte("routes:\n  - name: broken\n    upstream: nowhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	do("reload button", chromedp.Click(chromedp.CSS("#reload")))
	wait("reload rejected in the header", `document.getElementById("reload-result").textContent.startsWith("reload rejected") && "ok"`)
	errText := wait("rejected reload in the history",
		`(r => r && r.querySelector("td.error").textContent)(document.querySelector("#reloads-table tbody tr.rejected"))`)
	if !strings.Contains(errText, "nowhere") {
		t.Errorf("rejected reload shows %q, want the config error naming the upstream \"nowhere\"", errText)
	}
	shot("reload-rejected.png")

	// A config that changes a setting only a restart applies: the reload is accepted, and the
	// console says what waits for a restart.
	restart := "server: { drain_timeout: 7s }\n" + fmt.Sprintf(browserCfg, backend)
	if err := os.WriteFile(path, []byte(restart), 0o644); err != nil {
		t.Fatal(err)
	}
	do("reload button", chromedp.Click(chromedp.CSS("#reload")))
	note := wait("restart-only change named",
		`(p => p && !p.hidden && p.textContent.includes("server.drain_timeout") && p.textContent)(document.getElementById("config-note"))`)
	t.Logf("config note: %s", note)

	// The token travelled in headers only: no URL the page loaded or fetched contains it.
	if urls, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](
		`[location.href].concat(performance.getEntriesByType("resource").map(e => e.name))`)); err != nil || len(urls) < 5 {
		t.Errorf("the page's requests: %v, %v", urls, err)
	} else {
		for _, u := range urls {
			if strings.Contains(u, "console-test-token") {
				t.Errorf("the token is in a URL: %s", u)
			}
		}
	}

	errMu.Lock()
	defer errMu.Unlock()
	for _, e := range pageErrs {
		t.Errorf("page error: %s", e)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// shutdownCtx adapts a fasthttp server to testkit.Serve.
type shutdownCtx struct{ *fasthttp.Server }

func (s shutdownCtx) Shutdown(ctx context.Context) error { return s.ShutdownWithContext(ctx) }
