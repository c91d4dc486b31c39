package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// controlSocketName is the control socket's file in start's state directory.
const controlSocketName = "control.sock"

// maxSocketPath is the longest unix socket path both Linux (107 bytes) and macOS (103) bind.
const maxSocketPath = 103

// controlBase is the URL prefix for requests on the control socket (the host is not used).
const controlBase = "http://copilot-route"

// listenControl binds serve's control socket: mode 0600, in a directory no other user may enter
// (the socket's permissions are all that guards the figures). A socket left by a proxy that was
// killed is replaced; a live one, or any other file, is not touched.
func listenControl(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("--control-socket %s is %d bytes, longer than a unix socket path may be (%d): pick a shorter path", path, len(path), maxSocketPath)
	}
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
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--control-socket %s: another process answers there (a proxy still running?): stop it first", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove the stale control socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	// The socket file is created with the umask's mode; the 0700 directory covers the moment
	// before this chmod. Closing the listener removes the file.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	return ln, nil
}

// controlClient talks to a proxy's control socket: one connection per request, nothing kept.
func controlClient(path string) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}
