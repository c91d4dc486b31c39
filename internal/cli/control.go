package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// controlSocketName is the control socket's file in start's state directory.
const controlSocketName = "control.sock"

// maxSocketPath is the longest path a unix socket may be bound or reached at: sun_path holds 108
// bytes on Linux, 104 on macOS, with the final NUL.
var maxSocketPath = map[bool]int{true: 107, false: 103}[runtime.GOOS == "linux"]

// controlBase is the URL prefix for requests on the control socket (the host is not used).
const controlBase = "http://copilot-route"

// socketPathFits says whether socketPath can reach a socket at path.
func socketPathFits(path string) bool {
	return len(path) <= maxSocketPath || (runtime.GOOS == "linux" && len(filepath.Base(path)) <= 64)
}

// socketPath gives a path within the unix socket limit that names the file at path: path itself
// when it is short enough; on Linux, for a longer one (RUNNER_TEMP under act, for one, can pass
// 108 bytes), the same file through /proc/self/fd/N of a handle on its directory, which done
// closes once the socket is bound or connected.
func socketPath(path string) (short string, done func(), err error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	if !socketPathFits(path) {
		return "", nil, fmt.Errorf("%s is %d bytes, longer than a unix socket path may be here (%d): pick a shorter path", path, len(path), maxSocketPath)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

// listenControl binds serve's control socket: mode 0600, in a directory no other user may enter
// (the socket's permissions are all that guards the figures). A socket left by a proxy that was
// killed is replaced; a live one, or any other file, is not touched. Closing the listener
// removes the socket's file.
func listenControl(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--control-socket: %w (create its directory, mode 0700)", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("--control-socket: its directory %s has mode %04o, so other users could reach the socket: use a directory of mode 0700 (start's state directory is)", dir, perm)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--control-socket %s exists and is not a socket: remove it or pick another path", path)
		}
		if c, err := dialControl(context.Background(), path); err == nil {
			c.Close()
			return nil, fmt.Errorf("--control-socket %s: another process answers there (a proxy still running?): stop it first", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove the stale control socket %s: %w", path, err)
		}
	}
	bind, done, err := socketPath(path)
	if err != nil {
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	ln, err := net.Listen("unix", bind)
	done()
	if err != nil {
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	// The listener would unlink the name it was bound at, which may be a /proc/self/fd path.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	// The socket file is created with the umask's mode; the 0700 directory covers the moment
	// before this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	return &socketListener{Listener: ln, path: path}, nil
}

// socketListener removes its socket's file when closed.
type socketListener struct {
	net.Listener
	path string
}

func (l *socketListener) Close() error {
	err := l.Listener.Close()
	if !errors.Is(err, net.ErrClosed) {
		_ = os.Remove(l.path) // the first Close only: by a second one the name may be another's
	}
	return err
}

// dialControl connects to the control socket at path.
func dialControl(ctx context.Context, path string) (net.Conn, error) {
	p, done, err := socketPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	return d.DialContext(ctx, "unix", p)
}

// controlClient talks to a proxy's control socket: one connection per request, nothing kept.
func controlClient(path string) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dialControl(ctx, path) },
		},
	}
}
