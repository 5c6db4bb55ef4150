package proxy

import (
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// streamSize is 1 GiB; over loopback all four transfers take a few seconds. WEIR_STREAM_MIB
// lowers it on machines where that is too slow.
func streamSize() int {
	if v, err := strconv.Atoi(os.Getenv("WEIR_STREAM_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 1 << 30
}

const memoryBound = 100 << 20

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// peakMemory samples the heap in use until stop is called and returns the peak.
func peakMemory() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func TestStreamUpload(t *testing.T) {
	size := streamSize()
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			var got atomic.Int64
			be := serve(t, func(ctx *fasthttp.RequestCtx) {
				n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
				if err != nil {
					ctx.SetStatusCode(500)
				}
				got.Store(n)
			})
			u := newUpstream(t, Options{Targets: []string{be}, Timeout: 5 * time.Minute})
			gw := gateway(t, nil, u.Forward)
			runtime.GC()
			stop := peakMemory()
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + gw + "/upload")
			req.Header.SetMethod("POST")
			n := size
			if chunked {
				n = -1
			}
			req.SetBodyStream(io.LimitReader(zeros{}, int64(size)), n)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			c := &fasthttp.Client{}
			err := c.DoTimeout(req, resp, 5*time.Minute)
			peak := stop()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != 200 || got.Load() != int64(size) {
				t.Fatalf("status %d, upstream got %d bytes, want %d", resp.StatusCode(), got.Load(), size)
			}
			t.Logf("upload %d MiB: peak heap in use %d MiB", size>>20, peak>>20)
			if peak > memoryBound {
				t.Errorf("peak heap in use %d MiB, want < %d MiB", peak>>20, memoryBound>>20)
			}
		})
	}
}

func TestStreamDownload(t *testing.T) {
	size := streamSize()
	for _, known := range []bool{true, false} {
		t.Run("length="+strconv.FormatBool(known), func(t *testing.T) {
			be := serve(t, func(ctx *fasthttp.RequestCtx) {
				n := size
				if !known {
					n = -1
				}
				ctx.SetBodyStream(io.LimitReader(zeros{}, int64(size)), n)
			})
			u := newUpstream(t, Options{Targets: []string{be}, Timeout: 5 * time.Minute})
			gw := gateway(t, nil, u.Forward)
			runtime.GC()
			stop := peakMemory()
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + gw + "/download")
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			c := &fasthttp.Client{StreamResponseBody: true}
			if err := c.DoTimeout(req, resp, 5*time.Minute); err != nil {
				t.Fatal(err)
			}
			got, err := io.Copy(io.Discard, resp.BodyStream())
			_ = resp.CloseBodyStream()
			peak := stop()
			if err != nil || got != int64(size) {
				t.Fatalf("downloaded %d bytes (err %v), want %d", got, err, size)
			}
			t.Logf("download %d MiB: peak heap in use %d MiB", size>>20, peak>>20)
			if peak > memoryBound {
				t.Errorf("peak heap in use %d MiB, want < %d MiB", peak>>20, memoryBound>>20)
			}
			// The upstream connection went back to the pool once the body was read to the end.
			deadline := time.Now().Add(5 * time.Second)
			for u.cur.Load().members[0].hc.IdleConnsCount() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if known && u.cur.Load().members[0].hc.IdleConnsCount() != 1 {
				t.Errorf("idle upstream connections = %d, want 1", u.cur.Load().members[0].hc.IdleConnsCount())
			}
		})
	}
}
