// Package daemon starts a process detached from its parent, waits until it says it is ready, and
// stops it later from another process.
//
// It exists because an Actions step ends when every process holding its output streams has exited:
// a proxy that must outlive its step has to run in its own session with its output sent to a file.
// A later step (another process) stops it, knowing only what a state file recorded, so Stop checks
// that the PID still names the process Start made before it sends a signal (PIDs are reused).
package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// DefaultReadyTimeout is how long Start waits for the child to become ready.
const DefaultReadyTimeout = 10 * time.Second

// Options says what to start and how to know it is ready.
type Options struct {
	Path string   // the executable
	Args []string // argv[1:]
	// Env is the child's whole environment: nothing is inherited, so secrets reach the child only
	// when the caller puts them here (never in Args, which any user can read from ps).
	Env []string
	Dir string // working directory; "" means the caller's
	// ExtraFiles are inherited by the child as fd 3, 4, …, e.g. a HandoffPipe carrying the
	// secrets that must stay out of Env. The caller keeps its copies and closes them after Start.
	ExtraFiles []*os.File

	// LogFile receives the child's stdout and stderr (created 0600, appended to). Required: a
	// detached process must not hold the step's own output streams.
	LogFile string
	// ReadyFile is written by the child (atomically: temp file + rename) when it is ready. Start
	// removes a stale one first. Either ReadyFile or Ready must be set.
	ReadyFile string
	// Ready, when set, is called (repeatedly, until it returns nil or the wait ends) after the
	// ready file appears, with its contents (nil without a ready file), e.g. to GET a health URL.
	Ready func(ctx context.Context, readyData []byte) error
	// Timeout bounds the wait for ready; 0 means DefaultReadyTimeout.
	Timeout time.Duration
}

// Handle names a started process well enough to find it again from another process.
type Handle struct {
	PID int `json:"pid"`
	// Identity is the process's start time as the OS reports it (Linux: ticks since boot from
	// /proc/PID/stat; elsewhere `ps -o lstart`). A PID whose identity differs is someone else's.
	Identity string `json:"identity"`
}

// Started is a process Start made and saw ready.
type Started struct {
	Handle
	ReadyData []byte // the ready file's contents
}

// StartError is a child that did not become ready. It carries the tail of the child's log, which
// usually says why; the child has been killed by the time it is returned.
type StartError struct {
	Reason  string
	LogTail string
}

func (e *StartError) Error() string {
	if strings.TrimSpace(e.LogTail) == "" {
		return e.Reason + " (its log is empty)"
	}
	return e.Reason + "; the end of its log:\n" + e.LogTail
}

// StopResult says what Stop did.
type StopResult string

const (
	NotStarted   StopResult = "not-started"    // no PID recorded
	AlreadyGone  StopResult = "already-gone"   // nothing runs under that PID, or it is a zombie
	NotOurs      StopResult = "not-ours"       // the PID now names another process: left alone
	Terminated   StopResult = "terminated"     // exited after SIGTERM
	Killed       StopResult = "killed"         // needed SIGKILL after the grace period
	StillRunning StopResult = "still-running"  // survived SIGKILL until ctx ended (should not happen)
	Unsupported  StopResult = "unsupported-os" // no process control on this OS
)

// ErrUnsupported is returned on an OS without sessions and signals.
var ErrUnsupported = errors.New("detached processes are supported on Linux and macOS only")

// logTail returns the last lines of a log file written after offset from (at most maxBytes), for
// error messages.
func logTail(path string, from, maxBytes int64, maxLines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	if from < 0 || from > st.Size() { // truncated since: all of it is new
		from = 0
	}
	off := max(st.Size()-maxBytes, from)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	if off > from {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// readReady reads a complete ready file; a missing or empty one is "not yet".
func readReady(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return nil, false
	}
	return b, true
}

func (o Options) validate() error {
	if o.Path == "" {
		return errors.New("daemon: no executable given")
	}
	if o.LogFile == "" {
		return errors.New("daemon: a log file is required (the child must not hold the caller's output streams)")
	}
	if o.ReadyFile == "" && o.Ready == nil {
		return errors.New("daemon: give a ready file or a ready check")
	}
	return nil
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultReadyTimeout
}

func errorf(format string, a ...any) error { return fmt.Errorf("daemon: "+format, a...) }
