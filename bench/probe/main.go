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
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe ready|idle [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ready":
		err = ready(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want ready or idle)", os.Args[1])
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
