//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// dirtyIdle reports whether a pooled upstream connection, idle between two requests, has bytes
// waiting that no request asked for, or was closed by the upstream. Either way it must not carry
// the next request: unsolicited bytes would be read as the next request's response, handing one
// client's answer (or a compromised backend's forged one) to another client. nginx guards its
// keep-alive cache the same way, by closing a cached connection that turns readable.
//
// It peeks without blocking and without consuming (MSG_PEEK|MSG_DONTWAIT): one system call, about
// 0.3 µs, per reused connection. Only plain TCP connections are checked: the concrete type keeps
// SyscallConn and the callback off the heap, and a TLS connection's bytes are not its records.
func dirtyIdle(c net.Conn) bool {
	if u, ok := c.(*upConn); ok {
		c = u.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	dirty := false
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// n > 0: bytes nobody asked for. n == 0 without error: the upstream closed its end.
		// EAGAIN: nothing waiting, the connection is clean.
		dirty = n > 0 || (n == 0 && err == nil)
		return true // never wait for readiness
	})
	return dirty
}
