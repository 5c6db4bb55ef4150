//go:build unix

package proxy

import (
	"net"
	"testing"
	"time"
)

func TestDirtyIdle(t *testing.T) {
	tests := []struct {
		name string
		peer func(net.Conn) // what the upstream does with its end
		want bool
	}{
		{"quiet", func(net.Conn) {}, false},
		{"unsolicited bytes", func(c net.Conn) { c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")) }, true},
		{"closed by upstream", func(c net.Conn) { c.Close() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-accepted
			if s == nil {
				t.Fatal("accept failed")
			}
			defer s.Close()
			tt.peer(s)
			time.Sleep(20 * time.Millisecond) // let loopback deliver
			if got := dirtyIdle(c); got != tt.want {
				t.Errorf("dirtyIdle: got %v, want %v", got, tt.want)
			}
			// Peeking consumes nothing.
			if got := dirtyIdle(c); got != tt.want {
				t.Errorf("second dirtyIdle: got %v, want %v", got, tt.want)
			}
		})
	}
}
