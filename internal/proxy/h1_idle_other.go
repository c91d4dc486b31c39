//go:build !unix

package proxy

import (
	"net"
	"syscall"
)

// rawOf and idleQuiet have no non-blocking peek here: an idle connection is taken as it is, and
// a dead one costs one retry (a body-less request can be sent again).
func rawOf(net.Conn) syscall.RawConn { return nil }

func idleQuiet(syscall.RawConn) bool { return true }
