//go:build !unix

package proxy

import "net"

// dirtyIdle cannot peek without consuming on this platform; pooled connections are trusted.
func dirtyIdle(net.Conn) bool { return false }
