// Command probe holds the small measuring tools of the load harness (bench/compare.sh and
// bench/soak.sh) that a shell loop cannot do precisely:
//
//	probe ready -url URL [-since UNIX_NANOS] [-timeout 10s]
//	    polls URL every millisecond until it answers 2xx and prints the milliseconds elapsed
//	    since -since (the moment the proxy was exec'd) or since the probe started: startup time.
//	probe idle -addr HOST:PORT -n 10000 [-path /]
//	    opens n keep-alive connections, sends one GET on each and reads its answer, so that each
//	    is an established HTTP connection the proxy holds state for; then prints "ready <n>" and
//	    holds them open until its standard input closes. The harness reads the proxy's RSS
//	    meanwhile.
//	probe load -url URL -c 16 -d 20s [-timeout 2s]
//	    c keep-alive clients send requests back to back for d, each printing one line per
//	    answer: "<unix ms> <status> <latency µs>" (status 0: no answer, a timeout or a socket
//	    error). soak.sh reads the timeline around the moments it broke something.
//	probe reload -admin URL -config FILE -n 1000 -rate 20
//	    changes FILE (the value on its line ending in "# soak-marker") and POSTs /reload, n
//	    times at rate per second, so that every reload swaps a new snapshot; prints
//	    "reloads <ok> failed <n> seconds <s>".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe ready|idle|load|reload [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ready":
		err = ready(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "reload":
		err = reload(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want ready, idle, load or reload)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func ready(args []string) error {
	fs := flag.NewFlagSet("ready", flag.ExitOnError)
	url := fs.String("url", "", "URL that must answer 2xx")
	since := fs.Int64("since", 0, "start of the measured interval, Unix nanoseconds (default: now)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	_ = fs.Parse(args)
	start := time.Now()
	if *since > 0 {
		start = time.Unix(0, *since)
	}
	// A fresh connection per try: a proxy that is not listening yet refuses at once, and a
	// kept-alive connection would hide a restart.
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	end := time.Now().Add(*timeout)
	for time.Now().Before(end) {
		resp, err := c.Get(*url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				fmt.Printf("%.1f\n", float64(time.Since(start).Microseconds())/1000)
				return nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 2xx within %v", *url, *timeout)
}

func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "proxy host:port")
	n := fs.Int("n", 10000, "connections to hold")
	path := fs.String("path", "/", "path of the one request sent on each connection")
	_ = fs.Parse(args)

	conns := make([]net.Conn, *n)
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	// Enough dialers to open thousands of connections in a few seconds without a SYN flood
	// that loopback's accept queues would drop.
	sem := make(chan struct{}, 128)
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := open(*addr, req)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
			ok.Add(1)
		}(i)
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "probe: %d connections failed, first: %v\n", failed.Load(), e)
	}
	fmt.Printf("ready %d\n", ok.Load())
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

// open dials addr, sends one request and reads its whole answer, leaving the connection idle.
func open(addr string, req []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		c.Close()
		return nil, fmt.Errorf("proxy closed the connection after one request")
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "", "URL to request")
	conc := fs.Int("c", 16, "concurrent clients")
	dur := fs.Duration("d", 20*time.Second, "how long")
	timeout := fs.Duration("timeout", 2*time.Second, "per-request timeout")
	_ = fs.Parse(args)
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	end := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for i := 0; i < *conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: *timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for time.Now().Before(end) {
				t0 := time.Now()
				status := 0
				resp, err := c.Get(*url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				lat := time.Since(t0)
				mu.Lock()
				fmt.Fprintf(out, "%d %d %d\n", t0.UnixMilli(), status, lat.Microseconds())
				mu.Unlock()
				if err != nil {
					// A refused connection fails at once; do not spin.
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return out.Flush()
}

func reload(args []string) error {
	fs := flag.NewFlagSet("reload", flag.ExitOnError)
	admin := fs.String("admin", "", "admin API base URL")
	config := fs.String("config", "", "the config file the gateway runs")
	n := fs.Int("n", 1000, "reloads")
	rate := fs.Float64("rate", 20, "reloads per second")
	_ = fs.Parse(args)
	orig, err := os.ReadFile(*config)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	const marker = "# soak-marker"
	lines := strings.Split(string(orig), "\n")
	at := -1
	for i, l := range lines {
		if strings.HasSuffix(strings.TrimSpace(l), marker) {
			at = i
		}
	}
	if at < 0 {
		return fmt.Errorf("%s has no line ending in %q", *config, marker)
	}
	indent := lines[at][:len(lines[at])-len(strings.TrimLeft(lines[at], " "))]
	key, _, _ := strings.Cut(strings.TrimSpace(lines[at]), ":")
	c := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()
	start := time.Now()
	ok, failed := 0, 0
	for i := 0; i < *n; i++ {
		<-tick.C
		lines[at] = fmt.Sprintf("%s%s: \"%d\" %s", indent, key, i+1, marker) // never the original value
		// Write beside and rename, so that the gateway (and its file watcher) never reads a
		// half-written file.
		tmp := *config + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *config); err != nil {
			return err
		}
		resp, err := c.Post(*admin+"/reload", "application/json", nil)
		if err != nil {
			failed++
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ok++
		} else {
			failed++
		}
	}
	fmt.Printf("reloads %d failed %d seconds %.1f\n", ok, failed, time.Since(start).Seconds())
	return nil
}
