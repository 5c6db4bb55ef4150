package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http2"
)

// grpcChecker runs a member's gRPC health checks (grpc.health.v1.Health/Check) on a transport
// of its own, off the call traffic's connections, as HTTP checks have their own client.
type grpcChecker struct {
	addr   string
	host   string
	tr     *http2.Transport
	scheme string
}

func (m *member) newGRPCChecker() *grpcChecker {
	t, scheme := m.pool.tr.h2Transport()
	host := m.addr
	if m.host != "" {
		host = m.host
	}
	return &grpcChecker{addr: m.addr, host: host, tr: t, scheme: scheme}
}

func (g *grpcChecker) close() { g.tr.CloseIdleConnections() }

// The health protocol's messages are small enough to write and read by hand, which keeps the
// gRPC libraries out of the gateway: HealthCheckRequest is field 1, service (a string), and
// HealthCheckResponse field 1, status (an enum, SERVING = 1).
const (
	healthCheckPath     = "/grpc.health.v1.Health/Check"
	healthServing       = 1
	healthMaxResponse   = 4 << 10
	protoStringField1   = 1<<3 | 2 // field 1, length-delimited
	protoVarintField1   = 1<<3 | 0 // field 1, varint
	grpcFrameHeaderSize = 5
)

var errHealthNotServing = errors.New("not SERVING")

// check asks the target about h.Service once.
func (g *grpcChecker) check(h *HealthOptions) CheckResult {
	start := time.Now()
	res := CheckResult{Time: start}
	status, err := g.ask(h)
	res.Duration = time.Since(start)
	res.Status = status
	if err != nil {
		res.Error = err.Error()
	} else {
		res.OK = true
	}
	return res
}

// ask returns the HTTP status of the answer and why the target is not healthy (nil: SERVING).
func (g *grpcChecker) ask(h *HealthOptions) (int, error) {
	msg := []byte{}
	if h.Service != "" {
		msg = append(msg, protoStringField1)
		msg = binary.AppendUvarint(msg, uint64(len(h.Service)))
		msg = append(msg, h.Service...)
	}
	body := make([]byte, grpcFrameHeaderSize, grpcFrameHeaderSize+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	body = append(body, msg...)
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	req := (&http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: g.scheme, Host: g.addr, Opaque: healthCheckPath},
		Proto:  "HTTP/2.0", ProtoMajor: 2,
		Header: http.Header{"Content-Type": {grpcContentType}, "Te": {"trailers"},
			"User-Agent": {"weir-health-check"}},
		Host:          g.host,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
	resp, err := g.tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, healthMaxResponse))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("unexpected status %d", resp.StatusCode)
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status") // trailers-only
	}
	if st != "0" {
		return resp.StatusCode, fmt.Errorf("grpc-status %s: %s", st, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	serving, err := healthStatus(data)
	if err != nil {
		return resp.StatusCode, err
	}
	if serving != healthServing {
		return resp.StatusCode, fmt.Errorf("%w (status %d)", errHealthNotServing, serving)
	}
	return resp.StatusCode, nil
}

// healthStatus reads the status of the one uncompressed HealthCheckResponse in body.
func healthStatus(body []byte) (uint64, error) {
	if len(body) < grpcFrameHeaderSize || body[0] != 0 {
		return 0, errors.New("no uncompressed message in the answer")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	msg := body[grpcFrameHeaderSize:]
	if uint64(n) != uint64(len(msg)) {
		return 0, errors.New("truncated message")
	}
	var status uint64
	for len(msg) > 0 {
		tag, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, errors.New("malformed message")
		}
		msg = msg[k:]
		switch tag & 7 {
		case 0: // varint
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, errors.New("malformed message")
			}
			if tag == protoVarintField1 {
				status = v
			}
			msg = msg[k:]
		case 2: // length-delimited: skipped
			l, k := binary.Uvarint(msg)
			if k <= 0 || l > uint64(len(msg)-k) {
				return 0, errors.New("malformed message")
			}
			msg = msg[k+int(l):]
		default:
			return 0, errors.New("malformed message")
		}
	}
	return status, nil
}
