package edge

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestCheckUpgrade(t *testing.T) {
	const (
		ws  = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
		key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	)
	for _, tc := range []struct {
		name, head string
		want       Upgrade
		status     int // 0: no error
		protocol   string
	}{
		{name: "no upgrade", head: "GET / HTTP/1.1\r\n", want: UpgradeNone},
		{name: "websocket", head: "GET / HTTP/1.1\r\n" + ws, want: UpgradeWebSocket},
		{name: "websocket any case, in a list", head: "GET / HTTP/1.1\r\nupgrade: foo, WebSocket\r\nconnection: keep-alive, UPGRADE\r\n" + key + "Sec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket},
		{name: "websocket on POST", head: "POST / HTTP/1.1\r\n" + ws, want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "websocket with a body", head: "GET / HTTP/1.1\r\nContent-Length: 3\r\n" + ws, want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "websocket with an empty body", head: "GET / HTTP/1.1\r\nContent-Length: 0\r\n" + ws, want: UpgradeWebSocket},
		{name: "no connection upgrade", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\n" + key + "Sec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "connection close only", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: close\r\n" + key + "Sec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "no key", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "key of 15 bytes", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\nSec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "key not base64", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "version 8", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 8\r\n", want: UpgradeWebSocket, status: 426, protocol: "websocket"},
		{name: "two versions", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n", want: UpgradeWebSocket, status: 426, protocol: "websocket"},
		{name: "no version", head: "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key, want: UpgradeWebSocket, status: 400, protocol: "websocket"},
		{name: "h2c ignored", head: "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n", want: UpgradeNone},
		{name: "HTTP/1.0 ignored", head: "GET / HTTP/1.0\r\n" + ws, want: UpgradeNone},
		{name: "other protocol", head: "GET / HTTP/1.1\r\nUpgrade: h2c, IRC/6.9\r\nConnection: Upgrade\r\n", want: UpgradeNone, status: 501, protocol: "IRC/6.9"},
		{name: "other protocol, bad name not repeated", head: "GET / HTTP/1.1\r\nUpgrade: a/b/c\r\nConnection: Upgrade\r\n", want: UpgradeNone, status: 501, protocol: "?"},
		{name: "empty upgrade", head: "GET / HTTP/1.1\r\nUpgrade: ,\r\n", want: UpgradeNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			if err := h.Read(bufio.NewReader(strings.NewReader(tc.head + "Host: a.test\r\n\r\n"))); err != nil {
				t.Fatal(err)
			}
			got, err := CheckUpgrade(&h)
			if got != tc.want {
				t.Errorf("upgrade = %d, want %d", got, tc.want)
			}
			var ue *UpgradeError
			switch {
			case tc.status == 0 && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.status != 0 && !errors.As(err, &ue):
				t.Errorf("err = %v, want an UpgradeError %d", err, tc.status)
			case tc.status != 0 && (ue.Status != tc.status || ue.Protocol != tc.protocol):
				t.Errorf("refused %d for %q (%v), want %d for %q", ue.Status, ue.Protocol, ue, tc.status, tc.protocol)
			}
		})
	}
}

// TestCheckUpgradeAllocatesNothing: a request without Upgrade pays one lookup.
func TestCheckUpgradeAllocatesNothing(t *testing.T) {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = CheckUpgrade(&h) }); n != 0 {
		t.Errorf("%v allocations per request without Upgrade, want 0", n)
	}
}

func BenchmarkCheckUpgradePlain(b *testing.B) {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nUser-Agent: t\r\nAccept-Encoding: gzip\r\nCookie: a=b\r\n\r\n"))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = CheckUpgrade(&h)
	}
}
