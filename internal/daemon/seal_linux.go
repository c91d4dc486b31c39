package daemon

import "syscall"

// Seal makes this process non-dumpable (prctl PR_SET_DUMPABLE 0). Then a process of the same
// user without CAP_SYS_PTRACE can no longer ptrace it, nor open its /proc/PID/mem, environ, fd/
// or maps (the kernel hands those to root), whatever kernel.yama.ptrace_scope says; and it leaves
// no core dump. Root still can. The setting lasts until the process execs, which the proxy never
// does. Call it first thing, before any secret is read.
func Seal() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		return errorf("prctl(PR_SET_DUMPABLE, 0): %w", errno)
	}
	return nil
}

// Sealed reports whether Seal is in effect for this process.
func Sealed() bool {
	r, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0)
	return errno == 0 && r == 0
}
