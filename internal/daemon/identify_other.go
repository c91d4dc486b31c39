//go:build unix && !linux

package daemon

import (
	"os/exec"
	"strconv"
	"strings"
)

// identify returns a process's start time and state as ps reports them (macOS has no /proc). The
// start time has a one-second resolution: enough to tell a reused PID from the proxy, which Stop
// only needs to do hours later.
func identify(pid int) (identity, state string, ok bool) {
	out, err := exec.Command("ps", "-o", "stat=", "-o", "lstart=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return "", "", false
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "", "", false
	}
	return strings.Join(f[1:], " "), f[0][:1], true
}
