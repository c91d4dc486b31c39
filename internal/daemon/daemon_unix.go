//go:build unix

package daemon

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// pollInterval is how often Start looks for the ready file and Stop for the exit. Short, because
// start-to-ready is on every job's critical path; the cost is a stat per tick.
const pollInterval = 3 * time.Millisecond

// Start launches the child in a new session (so it survives the step and the step does not wait
// for it), with stdin from /dev/null and stdout/stderr appended to the log file, and waits until
// it is ready. On any failure the child (and its process group) is killed and reaped before Start
// returns, so nothing is left behind; the error is a *StartError with the log's tail when the
// child ran at all.
func Start(ctx context.Context, o Options) (*Started, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.ReadyFile != "" {
		if err := os.Remove(o.ReadyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, errorf("remove the stale ready file %s: %w", o.ReadyFile, err)
		}
	}
	logf, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, errorf("open the log file %s: %w (is its directory writable?)", o.LogFile, err)
	}
	defer logf.Close()
	// The log is appended to across starts: a failure reports only what this child wrote, not an
	// earlier run's last words.
	var logFrom int64
	if st, err := logf.Stat(); err == nil {
		logFrom = st.Size()
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()

	env := o.Env
	if env == nil {
		env = []string{} // nil would make exec inherit our whole environment
	}
	cmd := &exec.Cmd{
		Path:   o.Path,
		Args:   append([]string{o.Path}, o.Args...),
		Env:    env,
		Dir:    o.Dir,
		Stdin:  devnull,
		Stdout: logf,
		Stderr: logf,
		// Exactly these descriptors beyond 0-2: the runtime opens everything else close-on-exec.
		ExtraFiles: o.ExtraFiles,
		// A new session: no controlling terminal, its own process group, and not in the step's
		// group, so neither the step's end nor a Ctrl-C aimed at the parent reaches it.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	closeInheritedOnExec()
	if err := cmd.Start(); err != nil {
		return nil, errorf("start %s: %w", o.Path, err)
	}
	pid := cmd.Process.Pid
	// Reap the child if it dies while we still run (tests, the demo); after we exit, init does.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	fail := func(reason string) error {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // the whole group: the session leader's pgid is its pid
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
		return &StartError{Reason: reason, LogTail: logTail(o.LogFile, logFrom, 4096, 30)}
	}

	timeout := o.timeout()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastCheck error
	for {
		select {
		case werr := <-exited:
			reason := "the process exited before it was ready"
			if werr != nil {
				reason += " (" + werr.Error() + ")"
			}
			return nil, &StartError{Reason: reason, LogTail: logTail(o.LogFile, logFrom, 4096, 30)}
		case <-ctx.Done():
			return nil, fail("cancelled while waiting for the process to be ready: " + ctx.Err().Error())
		case <-deadline.C:
			reason := "the process was not ready after " + timeout.String()
			if lastCheck != nil {
				reason += " (last ready check: " + lastCheck.Error() + ")"
			}
			return nil, fail(reason)
		case <-tick.C:
		}
		var data []byte
		if o.ReadyFile != "" {
			var ok bool
			if data, ok = readReady(o.ReadyFile); !ok {
				continue
			}
		}
		if o.Ready != nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			lastCheck = o.Ready(cctx, data)
			cancel()
			if lastCheck != nil {
				continue
			}
		}
		id, state, ok := identify(pid)
		if !ok || isZombie(state) {
			continue // it is exiting: the exited case reports it
		}
		return &Started{Handle: Handle{PID: pid, Identity: id}, ReadyData: data}, nil
	}
}

// Alive reports whether the handle still names a running process made by Start.
func Alive(h Handle) bool {
	if h.PID <= 0 || h.Identity == "" {
		return false
	}
	id, state, ok := identify(h.PID)
	return ok && !isZombie(state) && id == h.Identity
}

// Stop ends the process: SIGTERM, up to grace for it to exit, then SIGKILL to its process group.
// It is safe to call for a process never started, already gone, or when the PID was reused by
// another process (which it leaves alone).
func Stop(ctx context.Context, h Handle, grace time.Duration) (StopResult, error) {
	if h.PID <= 0 {
		return NotStarted, nil
	}
	id, state, ok := identify(h.PID)
	if !ok || isZombie(state) {
		return AlreadyGone, nil
	}
	if h.Identity == "" || id != h.Identity {
		return NotOurs, nil
	}
	if err := syscall.Kill(h.PID, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return AlreadyGone, nil
		}
		return StillRunning, errorf("signal pid %d: %w", h.PID, err)
	}
	if waitGone(ctx, h, grace) {
		return Terminated, nil
	}
	_ = syscall.Kill(-h.PID, syscall.SIGKILL)
	_ = syscall.Kill(h.PID, syscall.SIGKILL)
	if waitGone(ctx, h, 5*time.Second) {
		return Killed, nil
	}
	return StillRunning, errorf("pid %d survived SIGKILL", h.PID)
}

// waitGone polls until the process is gone (or a zombie, or no longer ours) or d passes.
func waitGone(ctx context.Context, h Handle, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if !Alive(h) {
			return true
		}
		select {
		case <-ctx.Done():
			return !Alive(h)
		case <-t.C:
			return !Alive(h)
		case <-tick.C:
		}
	}
}

// closeInheritedOnExec marks every descriptor above stderr close-on-exec. The runtime opens its
// own files that way, but a descriptor this process inherited without the flag (a runner's or a
// shell's pipe) would otherwise pass to the child, which exec.Cmd never closes: the detached
// proxy would hold it for the job's life, and a step waits for every holder of its output pipe.
// ExtraFiles still reach the child: they are duplicated onto 3, 4, … whatever their flags.
func closeInheritedOnExec() {
	dir := "/dev/fd"
	if runtime.GOOS == "linux" {
		dir = "/proc/self/fd"
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

func isZombie(state string) bool { return state == "Z" || state == "X" || state == "x" }
