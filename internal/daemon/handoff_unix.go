//go:build unix

package daemon

import (
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// HandoffPipe returns the read end of a pipe that already holds data and whose write end is
// closed, for Options.ExtraFiles: the child reads data, then end of file, from an inherited
// descriptor. A secret handed over this way appears in neither the child's environment nor its
// argv, both of which /proc shows for the child's whole life (/proc/PID/environ to its user,
// /proc/PID/cmdline to everyone). The caller closes the returned file once Start has returned.
//
// The data is written before any reader exists, so it must fit the pipe's buffer (at least one
// page on Linux, 16 KiB on macOS): a longer write fails instead of blocking.
func HandoffPipe(data []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, errorf("create the handoff pipe: %w", err)
	}
	// os.Pipe's ends are non-blocking and polled, so a deadline bounds a write that does not fit.
	_ = w.SetWriteDeadline(time.Now().Add(time.Second))
	_, werr := w.Write(data)
	cerr := w.Close()
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		r.Close()
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			return nil, errorf("%d bytes do not fit the handoff pipe's buffer: hand over less", len(data))
		}
		return nil, errorf("write the handoff pipe: %w", werr)
	}
	return r, nil
}

// ReadHandoff is the child's side of HandoffPipe: it reads everything from the inherited
// descriptor fd up to end of file, then closes it. It refuses what is not a pipe (a terminal, a
// regular file, a socket), no data at all, more than max bytes, and a writer that keeps its end
// open past timeout (it would hold the child's start-up forever). Errors never quote the data.
func ReadHandoff(fd int, max int64, timeout time.Duration) ([]byte, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, errorf("fd %d is not open (%v): the parent must pass the handoff pipe there", fd, err)
	}
	// Not ours to close when it is something else: a Go child finds the runtime's own files
	// (cgroup CPU limits) at fd 3 when its parent passed nothing there.
	if uint32(st.Mode)&syscall.S_IFMT != syscall.S_IFIFO {
		kind := fileKind(uint32(st.Mode))
		if p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil {
			kind += " (" + p + ")"
		}
		return nil, errorf("fd %d is %s, not a pipe: the parent must pass there the read end of a pipe it closes after writing (copilot-route start does)", fd, kind)
	}
	// Non-blocking, so the runtime polls it and a read deadline applies. The flag belongs to the
	// pipe's read end, which only this process still holds once the parent has closed its copy.
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, errorf("fd %d: %w", fd, err)
	}
	f := os.NewFile(uintptr(fd), "handoff")
	defer f.Close()
	_ = f.SetReadDeadline(time.Now().Add(timeout))
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, errorf("fd %d gave no end of file within %s: the writer must close its end of the pipe after writing", fd, timeout)
	case err != nil:
		return nil, errorf("read fd %d: %w", fd, err)
	case int64(len(data)) > max:
		return nil, errorf("fd %d holds more than %d bytes: not what the parent hands over", fd, max)
	case len(data) == 0:
		return nil, errorf("fd %d is an empty pipe (its writer closed it without writing): nothing was handed over", fd)
	}
	return data, nil
}

// fileKind names a file type from its stat mode, for error messages.
func fileKind(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		return "a terminal or other character device"
	case syscall.S_IFREG:
		return "a regular file"
	case syscall.S_IFSOCK:
		return "a socket"
	case syscall.S_IFDIR:
		return "a directory"
	}
	return "another kind of file"
}
