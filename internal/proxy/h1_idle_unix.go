//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// rawOf is the socket under an upstream connection, for idleQuiet; nil when the dialer gave
// something else (then the idle check is skipped and a dead connection costs one retry).
func rawOf(nc net.Conn) syscall.RawConn {
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// idleQuiet says whether nothing arrived on an idle connection's socket: no TLS close_notify,
// no FIN, no unsolicited reply (some servers send a 408 before closing an idle connection). A
// non-blocking MSG_PEEK, one system call, consumes nothing.
func idleQuiet(rc syscall.RawConn) bool {
	quiet := false
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		quiet = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && quiet
}
