// Command grpcload measures gRPC unary calls, for the grpc scenario of bench/compare.sh: Weir
// in front of a gRPC server against calling the server directly. It is both ends:
//
//	grpcload -serve 127.0.0.1:18087          a grpc.testing.TestService over h2c (UnaryCall
//	                                          echoes its payload)
//	grpcload -addr 127.0.0.1:18084 -d 10s    unary calls from -c workers over -conns
//	                                          connections, then one line of figures
//
// ghz is not packaged for Debian, and a client built on the same grpc-go as the server keeps
// the two sides of the comparison alike. The figures line is
//
//	calls=N errors=N secs=S rps=R p50_ms=A p99_ms=B p999_ms=C
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
)

type echo struct {
	grpc_testing.UnimplementedTestServiceServer
}

func (echo) UnaryCall(_ context.Context, req *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	return &grpc_testing.SimpleResponse{Payload: req.GetPayload()}, nil
}

func main() {
	serve := flag.String("serve", "", "serve the test service on this address instead of calling")
	addr := flag.String("addr", "", "call the service at this address (h2c)")
	workers := flag.Int("c", 64, "concurrent calls")
	conns := flag.Int("conns", 4, "HTTP/2 connections the calls share")
	dur := flag.Duration("d", 10*time.Second, "how long to call")
	size := flag.Int("size", 13, "payload bytes per call, each way")
	flag.Parse()
	switch {
	case *serve != "":
		if err := runServer(*serve); err != nil {
			log.Fatal(err)
		}
	case *addr != "":
		r, err := load(*addr, *workers, *conns, *size, *dur)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r)
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func runServer(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(s, echo{})
	return s.Serve(ln)
}

// result is one run's figures.
type result struct {
	calls, errors  int64
	secs           float64
	p50, p99, p999 time.Duration
	firstErr       error
}

func (r result) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }
	s := fmt.Sprintf("calls=%d errors=%d secs=%.2f rps=%.0f p50_ms=%s p99_ms=%s p999_ms=%s",
		r.calls, r.errors, r.secs, float64(r.calls)/r.secs, ms(r.p50), ms(r.p99), ms(r.p999))
	if r.firstErr != nil {
		s += fmt.Sprintf(" first_error=%q", r.firstErr.Error())
	}
	return s
}

// load makes unary calls to addr from workers goroutines for d, spreading them over conns
// connections, and returns the successful calls' latency percentiles.
func load(addr string, workers, conns, size int, d time.Duration) (result, error) {
	if workers < 1 || conns < 1 {
		return result{}, errors.New("-c and -conns must be at least 1")
	}
	ccs := make([]grpc_testing.TestServiceClient, conns)
	for i := range ccs {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return result{}, err
		}
		defer cc.Close()
		ccs[i] = grpc_testing.NewTestServiceClient(cc)
	}
	req := &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: make([]byte, size)}}
	// Calls are not given the run's end as a deadline: one cut short would count as an error.
	ctx := context.Background()
	end := time.Now().Add(d)
	var (
		errs     atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func(c grpc_testing.TestServiceClient) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(end) {
				t := time.Now()
				_, err := c.UnaryCall(ctx, req)
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(ccs[w%conns])
	}
	wg.Wait()
	r := result{calls: int64(len(all)), errors: errs.Load(), secs: time.Since(start).Seconds(), firstErr: firstErr}
	if len(all) == 0 {
		return r, fmt.Errorf("no call succeeded: %v", firstErr)
	}
	slices.Sort(all)
	at := func(q float64) time.Duration { return all[min(len(all)-1, int(q*float64(len(all))))] }
	r.p50, r.p99, r.p999 = at(0.50), at(0.99), at(0.999)
	return r, nil
}
