package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// testService implements grpc.testing.TestService for the gateway's gRPC tests: each call
// answers from what its request asks for.
type testService struct {
	grpc_testing.UnimplementedTestServiceServer
	id string // answered as server_id
}

func (testService) EmptyCall(context.Context, *grpc_testing.Empty) (*grpc_testing.Empty, error) {
	return &grpc_testing.Empty{}, nil
}

// UnaryCall echoes the payload; a response_status makes it fail with that status and an
// ErrorInfo detail; the payload "sleep" makes it wait for the call's end.
func (s testService) UnaryCall(ctx context.Context, req *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	if rs := req.GetResponseStatus(); rs != nil {
		st, err := status.New(codes.Code(rs.Code), rs.Message).WithDetails(&errdetails.ErrorInfo{Reason: "QUOTA", Domain: "weir.test"})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	if string(req.GetPayload().GetBody()) == "sleep" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &grpc_testing.SimpleResponse{Payload: req.GetPayload(), ServerId: s.id}, nil
}

// StreamingOutputCall sends one message per response parameter, of its size.
func (testService) StreamingOutputCall(req *grpc_testing.StreamingOutputCallRequest, s grpc.ServerStreamingServer[grpc_testing.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if err := s.Send(&grpc_testing.StreamingOutputCallResponse{Payload: &grpc_testing.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall answers with the total size of the payloads it received.
func (testService) StreamingInputCall(s grpc.ClientStreamingServer[grpc_testing.StreamingInputCallRequest, grpc_testing.StreamingInputCallResponse]) error {
	total := 0
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(&grpc_testing.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

// FullDuplexCall answers each message as it arrives, echoing its payload.
func (testService) FullDuplexCall(s grpc.BidiStreamingServer[grpc_testing.StreamingOutputCallRequest, grpc_testing.StreamingOutputCallResponse]) error {
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&grpc_testing.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// startGRPCServer runs the test service on a loopback port (gRPC over h2c) until cleanup.
func startGRPCServer(t *testing.T) string {
	addr, _ := startGRPCServerID(t, "")
	return addr
}

// startGRPCServerID runs the test service answering id as server_id, with the standard health
// service, whose setter it returns.
func startGRPCServerID(t *testing.T, id string) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(s, testService{id: id})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String(), hs
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

const grpcConfig = `
server:
  listen: "127.0.0.1:0"
  admin: ""
  drain_timeout: 5s
  plugin_cache_dir: "off"
  http2: { enabled: true, h2c: true }
access_log: { enabled: false }
upstreams:
  svc: { kind: grpc, targets: [%q] }
  down: { kind: grpc, targets: [%q] }
consumers:
  - name: alice
    credentials: { apikeys: [ { sha256: %q } ] }
routes:
  - name: auth
    match: { path: /grpc.testing.TestService/EmptyCall }
    upstream: svc
    filters: [ apikey ]
  - name: admins
    match: { path: /grpc.testing.TestService/CacheableUnaryCall }
    upstream: svc
    filters: [ apikey, { acl: { allow: [ admins ] } } ]
  - name: limited
    match: { path: /grpc.testing.TestService/UnimplementedCall }
    upstream: svc
    filters: [ { ratelimit: { rate: 1, per: 1m } } ]
  - name: svc
    match: { path_prefix: /grpc.testing.TestService/ }
    upstream: svc
    filters:
      - cors: { allow_origins: [ "https://app.example" ], allow_headers: [ content-type, x-grpc-web ] }
  - name: down
    match: { path_prefix: /grpc.testing.UnimplementedService/ }
    upstream: down
`

// startGRPCGateway runs a gateway in front of a test service and returns its address.
func startGRPCGateway(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	src := fmt.Sprintf(grpcConfig, startGRPCServer(t), closedAddr(t), sha256Hex("alice-key"))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	return addr
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestGRPCThroughGateway(t *testing.T) {
	gw := startGRPCGateway(t)
	cc := dialGRPC(t, gw)
	client := grpc_testing.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("hello")}})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.GetPayload().GetBody()); got != "hello" {
			t.Fatalf("payload %q", got)
		}
	})

	t.Run("status with details", func(t *testing.T) {
		_, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{
			ResponseStatus: &grpc_testing.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now: ünïcode 100%"}})
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || st.Message() != "not now: ünïcode 100%" {
			t.Fatalf("status %v %q", st.Code(), st.Message())
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info == nil || info.Reason != "QUOTA" || info.Domain != "weir.test" {
			t.Fatalf("details lost: %v", st.Details())
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		s, err := client.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{ResponseParameters: []*grpc_testing.ResponseParameters{
			{Size: 10}, {Size: 70000}, {Size: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			m, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(m.GetPayload().GetBody()))
		}
		if fmt.Sprint(sizes) != "[10 70000 1]" {
			t.Fatalf("sizes %v", sizes)
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		s, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{3, 100000, 7} {
			if err := s.Send(&grpc_testing.StreamingInputCallRequest{Payload: &grpc_testing.Payload{Body: make([]byte, n)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := s.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAggregatedPayloadSize() != 100010 {
			t.Fatalf("aggregated %d", resp.GetAggregatedPayloadSize())
		}
	})

	t.Run("bidi streaming", func(t *testing.T) {
		// Each answer is awaited before the next message is sent: a gateway that waited for
		// the whole request body would hang here.
		s, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			body := fmt.Sprintf("ping %d", i)
			if err := s.Send(&grpc_testing.StreamingOutputCallRequest{Payload: &grpc_testing.Payload{Body: []byte(body)}}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(m.GetPayload().GetBody()); got != body {
				t.Fatalf("got %q want %q", got, body)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer dcancel()
		_, err := client.UnaryCall(dctx, &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("sleep")}})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("auth filter", func(t *testing.T) {
		_, err := client.EmptyCall(ctx, &grpc_testing.Empty{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("no key: %v", err)
		}
		kctx := metadata.AppendToOutgoingContext(ctx, "x-api-key", "alice-key")
		if _, err := client.EmptyCall(kctx, &grpc_testing.Empty{}); err != nil {
			t.Fatalf("with key: %v", err)
		}
	})

	t.Run("acl filter", func(t *testing.T) {
		kctx := metadata.AppendToOutgoingContext(ctx, "x-api-key", "alice-key")
		_, err := client.CacheableUnaryCall(kctx, &grpc_testing.SimpleRequest{})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		// The first call reaches the server, which does not implement it; the second is over
		// the route's limit.
		if _, err := client.UnimplementedCall(ctx, &grpc_testing.Empty{}); status.Code(err) != codes.Unimplemented {
			t.Fatalf("first: %v", err)
		}
		if _, err := client.UnimplementedCall(ctx, &grpc_testing.Empty{}); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("second: %v", err)
		}
	})

	t.Run("upstream down", func(t *testing.T) {
		err := cc.Invoke(ctx, "/grpc.testing.UnimplementedService/UnimplementedCall", &grpc_testing.Empty{}, &grpc_testing.Empty{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("no route", func(t *testing.T) {
		err := cc.Invoke(ctx, "/nowhere.Service/Call", &grpc_testing.Empty{}, &grpc_testing.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("got %v", err)
		}
	})
}

// TestGRPCTimeoutHeader checks the gateway's own reading of grpc-timeout: a malformed value is
// INTERNAL, and an expired deadline DEADLINE_EXCEEDED even when the upstream would wait on.
func TestGRPCTimeoutHeader(t *testing.T) {
	gw := startGRPCGateway(t)
	client := (&h2Gateway{addr: gw}).client(t)
	msg, _ := proto.Marshal(&grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("sleep")}})
	for _, tc := range []struct {
		timeout string
		want    string
	}{
		{"1x", "13"}, {"123456789S", "13"}, {"-1S", "13"}, {"S", "13"}, {"50m", "4"},
	} {
		req, _ := http.NewRequest("POST", "http://"+gw+"/grpc.testing.TestService/UnaryCall", bytes.NewReader(grpcFrame(0, msg)))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Grpc-Timeout", tc.timeout)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		got := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status")
		if resp.StatusCode != 200 || got != tc.want {
			t.Errorf("grpc-timeout %q: HTTP %d grpc-status %q (%q), want %s", tc.timeout, resp.StatusCode, got, resp.Header.Get("Grpc-Message")+resp.Trailer.Get("Grpc-Message"), tc.want)
		}
	}
}

// TestGRPCOverHTTP1 checks a gRPC call over HTTP/1.1 is refused, with a reason.
func TestGRPCOverHTTP1(t *testing.T) {
	gw := startGRPCGateway(t)
	req, _ := http.NewRequest("POST", "http://"+gw+"/grpc.testing.TestService/UnaryCall", bytes.NewReader(grpcFrame(0, nil)))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("HTTP %d %s", resp.StatusCode, body)
	}
}

// grpcFrame is one length-prefixed message of the gRPC (and gRPC-Web) body.
func grpcFrame(flag byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flag
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// readGRPCFrames splits a gRPC-Web body into its frames.
func readGRPCFrames(body []byte) (flags []byte, msgs [][]byte, err error) {
	for len(body) > 0 {
		if len(body) < 5 {
			return nil, nil, errors.New("truncated frame header")
		}
		n := int(binary.BigEndian.Uint32(body[1:5]))
		if len(body) < 5+n {
			return nil, nil, errors.New("truncated frame")
		}
		flags = append(flags, body[0])
		msgs = append(msgs, body[5:5+n])
		body = body[5+n:]
	}
	return flags, msgs, nil
}

// TestGRPCWeb sends gRPC-Web calls as a browser library would, over HTTP/1.1 and HTTP/2, and
// reads the message and the trailer frame back.
func TestGRPCWeb(t *testing.T) {
	gw := startGRPCGateway(t)
	clients := map[string]*http.Client{
		"http/1.1": {Timeout: 10 * time.Second},
		"h2c":      (&h2Gateway{addr: gw}).client(t),
	}
	msg, _ := proto.Marshal(&grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("from the browser")}})
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			for _, ct := range []string{"application/grpc-web", "application/grpc-web+proto"} {
				req, _ := http.NewRequest("POST", "http://"+gw+"/grpc.testing.TestService/UnaryCall", bytes.NewReader(grpcFrame(0, msg)))
				req.Header.Set("Content-Type", ct)
				req.Header.Set("X-Grpc-Web", "1")
				req.Header.Set("Origin", "https://app.example")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ct {
					t.Fatalf("%s: HTTP %d %q", ct, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
					t.Errorf("%s: the cors filter did not answer: %v", ct, resp.Header)
				}
				flags, msgs, err := readGRPCFrames(body)
				if err != nil || len(msgs) != 2 || flags[0] != 0 || flags[1] != 0x80 {
					t.Fatalf("%s: frames %v %q %v", ct, flags, msgs, err)
				}
				var out grpc_testing.SimpleResponse
				if err := proto.Unmarshal(msgs[0], &out); err != nil || string(out.GetPayload().GetBody()) != "from the browser" {
					t.Fatalf("%s: message %v %v", ct, &out, err)
				}
				if tr := string(msgs[1]); !strings.Contains(tr, "grpc-status: 0\r\n") {
					t.Fatalf("%s: trailer frame %q", ct, tr)
				}
			}
		})
	}
	t.Run("cors preflight", func(t *testing.T) {
		req, _ := http.NewRequest("OPTIONS", "http://"+gw+"/grpc.testing.TestService/UnaryCall", nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web")
		resp, err := clients["http/1.1"].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Fatalf("HTTP %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("error status", func(t *testing.T) {
		m, _ := proto.Marshal(&grpc_testing.SimpleRequest{ResponseStatus: &grpc_testing.EchoStatus{Code: 5, Message: "gone"}})
		req, _ := http.NewRequest("POST", "http://"+gw+"/grpc.testing.TestService/UnaryCall", bytes.NewReader(grpcFrame(0, m)))
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		resp, err := clients["http/1.1"].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		// A failing unary call is trailers-only upstream: the status comes in the headers.
		got := resp.Header.Get("Grpc-Status")
		if got == "" {
			_, msgs, _ := readGRPCFrames(body)
			if len(msgs) > 0 && strings.Contains(string(msgs[len(msgs)-1]), "grpc-status: 5\r\n") {
				got = "5"
			}
		}
		if got != "5" {
			t.Fatalf("status %q, headers %v body %q", got, resp.Header, body)
		}
	})
}

// TestGRPCHealthCheck runs grpc.health.v1 checks against two targets: calls go only to the one
// SERVING the configured service, and to the other once it serves again.
func TestGRPCHealthCheck(t *testing.T) {
	const svc = "grpc.testing.TestService"
	addrA, hsA := startGRPCServerID(t, "a")
	addrB, hsB := startGRPCServerID(t, "b")
	hsA.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	hsB.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	// The server as a whole stays SERVING: only a check naming the service tells them apart.
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	src := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off", http2: { h2c: true } }
access_log: { enabled: false }
upstreams:
  svc:
    kind: grpc
    targets: [%q, %q]
    health: { kind: grpc, service: %q, interval: 20ms, jitter: 0s, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1 }
routes:
  - { name: svc, match: { path_prefix: /grpc.testing.TestService/ }, upstream: svc }
`, addrA, addrB, svc)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, gw := start(t, path)
	client := grpc_testing.NewTestServiceClient(dialGRPC(t, gw))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// waitFor calls until n answers in a row come from want, or the context ends.
	waitFor := func(want string, n int) {
		t.Helper()
		run := 0
		for run < n {
			resp, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{})
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if resp.GetServerId() == want {
				run++
			} else {
				run = 0
			}
		}
	}
	waitFor("a", 20)
	// B back first, so that some target serves throughout.
	hsB.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	waitFor("b", 1)
	hsA.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor("b", 20)
}

// BenchmarkGRPCUnary: unary calls through the gateway over h2c, from parallel callers on one
// connection. bench/grpcload compares the same against calling the server directly.
func BenchmarkGRPCUnary(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(s, testService{})
	go func() { _ = s.Serve(ln) }()
	defer s.Stop()
	dir := b.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	src := fmt.Sprintf(grpcConfig, ln.Addr().String(), "127.0.0.1:1", sha256Hex("alice-key"))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	_, gw := start(b, path)
	cc, err := grpc.NewClient(gw, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := grpc_testing.NewTestServiceClient(cc)
	req := &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("Hello, World!")}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.UnaryCall(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestGRPCUpstreamTLS reaches a gRPC server over TLS (ALPN h2), its certificate checked
// against the upstream's ca_file, with the client on h2c.
func TestGRPCUpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := selfSigned(t, dir, "grpc", "grpc.example")
	creds, err := credentials.NewServerTLSFromFile(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	grpc_testing.RegisterTestServiceServer(srv, testService{id: "tls"})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	path := filepath.Join(dir, "weir.yaml")
	src := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off", http2: { h2c: true } }
access_log: { enabled: false }
upstreams:
  svc: { kind: grpc, targets: [%q], tls: { ca_file: %q, server_name: grpc.example } }
routes:
  - { name: svc, match: { path_prefix: /grpc.testing.TestService/ }, upstream: svc }
`, ln.Addr().String(), cert)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, gw := start(t, path)
	client := grpc_testing.NewTestServiceClient(dialGRPC(t, gw))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("sealed")}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetServerId() != "tls" || string(resp.GetPayload().GetBody()) != "sealed" {
		t.Fatalf("answer %v", resp)
	}
}

// TestGRPCAuthSpellings: other spellings of a protected method's path never reach it without
// the route's auth filter.
func TestGRPCAuthSpellings(t *testing.T) {
	gw := startGRPCGateway(t)
	client := (&h2Gateway{addr: gw}).client(t)
	for _, p := range []string{
		"/grpc.testing.TestService/EmptyCall",
		"/grpc.testing.TestService/Empty%43all",
		"/grpc.testing.TestService/%45mptyCall",
		"/grpc.testing.TestService//EmptyCall",
		"/grpc.testing.TestService/./EmptyCall",
		"/grpc.testing.TestService/x/../EmptyCall",
		"/grpc.testing.TestService/EmptyCall?x=1",
	} {
		req, _ := http.NewRequest("POST", "http://"+gw+p, bytes.NewReader(grpcFrame(0, nil)))
		req.URL.Opaque = p // sent as written
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		got := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status")
		if got == "0" || got == "" {
			t.Errorf("%s: HTTP %d grpc-status %q: answered without the key", p, resp.StatusCode, got)
		}
	}
}

// TestGRPCStalledClient: a client that stops granting flow-control window mid-stream has its
// stream ended once a write waits longer than the upstream's timeout.
func TestGRPCStalledClient(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	src := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off", http2: { h2c: true } }
access_log: { enabled: false }
upstreams:
  svc: { kind: grpc, targets: [%q], timeout: 300ms }
routes:
  - { name: svc, match: { path_prefix: /grpc.testing.TestService/ }, upstream: svc }
`, startGRPCServer(t))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, gw := start(t, path)
	h := dialRawH2(t, gw)
	msg, _ := proto.Marshal(&grpc_testing.StreamingOutputCallRequest{ResponseParameters: []*grpc_testing.ResponseParameters{
		{Size: 60000}, {Size: 60000}, {Size: 60000}}})
	h.headers(1, false, ":method", "POST", ":scheme", "http", ":authority", "gw.test",
		":path", "/grpc.testing.TestService/StreamingOutputCall", "content-type", "application/grpc", "te", "trailers")
	if err := h.fr.WriteData(1, true, grpcFrame(0, msg)); err != nil {
		t.Fatal(err)
	}
	// Frames are read (the connection's window is not the point) but no WINDOW_UPDATE is
	// sent, so the stream's 65,535-byte window runs out during the second message.
	if err := h.c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("the stalled stream was never ended: %v", err)
		}
		if f.Header().StreamID != 1 {
			continue
		}
		if _, ok := f.(*http2.RSTStreamFrame); ok {
			return
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) {
			t.Fatal("the whole answer came without window for it")
		}
	}
}

// TestGRPCReloadDuringStream: a bidi stream open across a reload goes on through the snapshot
// it started on, and new calls take the new one.
func TestGRPCReloadDuringStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	backend := startGRPCServer(t)
	write := func(extra string) {
		src := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off", http2: { h2c: true } }
access_log: { enabled: false }
upstreams:
  svc: { kind: grpc, targets: [%q] }
routes:
  - { name: svc, match: { path_prefix: /grpc.testing.TestService/ }, upstream: svc }
%s`, backend, extra)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	e, gw := start(t, path)
	client := grpc_testing.NewTestServiceClient(dialGRPC(t, gw))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(body string) {
		t.Helper()
		if err := s.Send(&grpc_testing.StreamingOutputCallRequest{Payload: &grpc_testing.Payload{Body: []byte(body)}}); err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil || string(m.GetPayload().GetBody()) != body {
			t.Fatalf("%q: %v %v", body, m, err)
		}
	}
	echo("before")
	write(`  - { name: extra, match: { path: /extra }, upstream: svc }`)
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	echo("after")
	if _, err := client.UnaryCall(ctx, &grpc_testing.SimpleRequest{}); err != nil {
		t.Fatalf("a new call after the reload: %v", err)
	}
	echo("still")
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// TestGRPCFailedCallLogged: a call answered with a status other than OK is HTTP 200 on the wire;
// the access log names the status the upstream sent, and the gateway's own refusals their
// reason, so an operator can find failing calls.
func TestGRPCFailedCallLogged(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "access.log")
	src := fmt.Sprintf(grpcConfig, startGRPCServer(t), closedAddr(t), sha256Hex("alice-key"))
	src = strings.Replace(src, "access_log: { enabled: false }", fmt.Sprintf("access_log: { enabled: true, output: %q }", logFile), 1)
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, gw := start(t, path)
	cc := dialGRPC(t, gw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := grpc_testing.NewTestServiceClient(cc).UnaryCall(ctx, &grpc_testing.SimpleRequest{
		ResponseStatus: &grpc_testing.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now"}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("upstream status: %v", err)
	}
	_, err = grpc_testing.NewUnimplementedServiceClient(cc).UnimplementedCall(ctx, &grpc_testing.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("upstream down: %v", err)
	}
	// The access log writes behind the requests; wait for both lines.
	// The refusal for the down upstream keeps its own, more precise reason (the connect error).
	wants := []string{`"error":"grpc-status 9: not now"`, `"route":"down","error":"upstream`}
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ = os.ReadFile(logFile)
		if strings.Contains(string(b), wants[0]) && strings.Contains(string(b), wants[1]) {
			return
		}
	}
	t.Errorf("access log lacks %q:\n%s", wants, b)
}
