package edge

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestSniffH2C: the preface, even split over several writes, goes to HTTP/2 with every byte;
// anything else, including a near miss, reaches the HTTP/1 reader unchanged.
func TestSniffH2C(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		h2     bool
	}{
		{"http/1", []string{"GET / HTTP/1.1\r\n\r\n"}, false},
		{"preface", []string{h2Preface + "rest"}, true},
		{"preface in pieces", []string{"PR", "I * HTTP/2.0\r\n", "\r\nSM\r\n\r\nrest"}, true},
		{"near miss", []string{"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"}, false},
		{"method starting with P", []string{"POST / HTTP/1.1\r\n\r\n"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 1)
			sl := SniffH2C(ln, func(c net.Conn) {
				b, _ := io.ReadAll(c)
				got <- "h2:" + string(b)
			})
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return
				}
				for _, w := range tt.writes {
					_, _ = io.WriteString(c, w)
					time.Sleep(10 * time.Millisecond)
				}
				c.Close()
			}()
			c, err := sl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b, err := io.ReadAll(io.LimitReader(c, 1<<10))
			if err != nil {
				t.Fatal(err)
			}
			all := ""
			for _, w := range tt.writes {
				all += w
			}
			if tt.h2 {
				if h := <-got; len(b) != 0 || h != "h2:"+all {
					t.Errorf("h1 read %q, h2 got %q; want all of %q on h2", b, h, all)
				}
			} else if string(b) != all {
				t.Errorf("h1 read %q, want %q", b, all)
			}
		})
	}
}

func TestStreamOf(t *testing.T) {
	var rc fasthttp.RequestCtx
	if StreamOf(&rc) != nil {
		t.Error("a request without a stream has one")
	}
	sc := &StreamConn{}
	rc.Init2(sc, nil, false)
	if s := StreamOf(&rc); s != &sc.Stream || rc.IsTLS() {
		t.Errorf("h2c stream: %p (want %p), tls %v", s, &sc.Stream, rc.IsTLS())
	}
	tc := &TLSStreamConn{}
	rc.Init2(tc, nil, false)
	if s := StreamOf(&rc); s != &tc.Stream || !rc.IsTLS() {
		t.Errorf("h2 stream: %p (want %p), tls %v", s, &tc.Stream, rc.IsTLS())
	}
}

// FuzzMeterH2 feeds MeterH2's frame scan arbitrary bytes, whole and split at any point: how the
// reads of a connection fall must not change what is counted or where frames begin.
func FuzzMeterH2(f *testing.F) {
	f.Add([]byte(h2Preface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), 30)
	f.Add([]byte("\x00\x00\x05\x01\x00\x00\x00\x00\x01hello\x00\x00\x00\x09\x00\x00\x00\x00\x01\x00\x00\x00\x09\x04\x00\x00\x00\x01"), 12)
	f.Add([]byte("\x00\x00\x08\x06\x00\x00\x00\x00\x00abcdefgh\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08"), 3)
	limits := H2Limits{ResetsPerSecond: 1 << 20, PingsPerSecond: 1 << 20, SettingsPerSecond: 1 << 20, ContinuationFrames: 3}
	f.Fuzz(func(t *testing.T, b []byte, at int) {
		whole := MeterH2(nil, limits).(*meteredConn)
		whole.skip = 0
		split := MeterH2(nil, limits).(*meteredConn)
		split.skip = 0
		at = int(uint(at) % uint(len(b)+1))
		okWhole := whole.scan(b)
		okSplit := split.scan(b[:at]) && split.scan(b[at:])
		if okWhole != okSplit {
			t.Fatalf("whole %v, split at %d %v", okWhole, at, okSplit)
		}
		if okWhole && (whole.hn != split.hn || whole.payload != split.payload || whole.inBlock != split.inBlock) {
			t.Fatalf("state whole %d/%d/%d, split %d/%d/%d", whole.hn, whole.payload, whole.inBlock,
				split.hn, split.payload, split.inBlock)
		}
	})
}
