package daemon

import (
	"os"
	"strconv"
	"strings"
)

// identify returns a process's start time (clock ticks since boot, field 22 of /proc/PID/stat)
// and state letter. A PID reused by another process has a different start time.
func identify(pid int) (identity, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", false
	}
	// The command name (field 2) is in parentheses and may hold spaces or ')': split after the last.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", "", false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 {
		return "", "", false
	}
	return f[19], f[0], true
}
