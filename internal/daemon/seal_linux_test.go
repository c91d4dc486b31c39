package daemon

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// sealChild holds still, sealed or not, until its stdin closes: the process the test inspects.
func sealChild(seal bool) int {
	if seal {
		if err := Seal(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Printf("ready sealed=%v\n", Sealed())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// inspectChild tries what a hostile process of the same user would: read the target's
// environment and open its memory (a read at offset 0 would fail anyway: nothing is mapped there).
// It prints one word per attempt: ok or denied.
func inspectChild(pid string) int {
	for _, f := range []string{"environ", "mem"} {
		fh, err := os.Open("/proc/" + pid + "/" + f)
		if err == nil {
			if f == "environ" {
				_, err = fh.Read(make([]byte, 1))
			}
			fh.Close()
		}
		word := "ok"
		if os.IsPermission(err) {
			word = "denied"
		} else if err != nil && err != io.EOF {
			word = "error:" + err.Error()
		}
		fmt.Printf("%s=%s ", f, word)
	}
	fmt.Println()
	return 0
}

// asSameUser runs the test binary in a child role as one unprivileged user, the same for every
// call: this user when the tests run unprivileged, nobody (65534) when they run as root (which
// may inspect anything, so it would prove nothing).
type asSameUser struct {
	exe  string
	cred *syscall.Credential
}

func newAsSameUser(t *testing.T) asSameUser {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		return asSameUser{exe: exe}
	}
	// nobody must be able to run the binary: a copy in a directory anyone may enter.
	dir, err := os.MkdirTemp("", "seal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyExe := filepath.Join(dir, "daemon.test")
	if err := os.WriteFile(copyExe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return asSameUser{exe: copyExe, cred: &syscall.Credential{Uid: 65534, Gid: 65534}}
}

func (a asSameUser) command(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(a.exe, args...)
	cmd.Env = []string{"DAEMON_TEST_CHILD=" + mode, "SEAL_TEST_MARK=visible"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: a.cred}
	return cmd
}

// A sealed process keeps a process of the same user out of its environment and memory, and the
// kernel gives its /proc files to root; an unsealed one, the control, does not.
func TestSealKeepsTheSameUserOut(t *testing.T) {
	t.Parallel()
	as := newAsSameUser(t)
	for _, seal := range []bool{true, false} {
		t.Run(fmt.Sprintf("sealed=%v", seal), func(t *testing.T) {
			t.Parallel()
			mode := "unsealed"
			if seal {
				mode = "sealed"
			}
			target := as.command(mode)
			stdin, _ := target.StdinPipe()
			stdout, _ := target.StdoutPipe()
			target.Stderr = os.Stderr
			if err := target.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stdin.Close(); _ = target.Wait() })
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != fmt.Sprintf("ready sealed=%v\n", seal) {
				t.Fatalf("target said %q, %v", line, err)
			}
			pid := strconv.Itoa(target.Process.Pid)

			var st syscall.Stat_t
			if err := syscall.Stat("/proc/"+pid+"/environ", &st); err != nil {
				t.Fatal(err)
			}
			owner := uint32(os.Getuid())
			if as.cred != nil {
				owner = as.cred.Uid
			}
			if want := map[bool]uint32{true: 0, false: owner}[seal]; st.Uid != want {
				t.Errorf("/proc/PID/environ belongs to uid %d, want %d", st.Uid, want)
			}
			out, err := as.command("inspect", pid).Output()
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			got := string(out)
			if seal && (!strings.Contains(got, "environ=denied") || !strings.Contains(got, "mem=denied")) {
				t.Errorf("a process of the same user got into the sealed one: %s", got)
			}
			// The control: environ is open to the same user whatever ptrace_scope says (mem may not be).
			if !seal && !strings.Contains(got, "environ=ok") {
				t.Errorf("the same user cannot read an unsealed process's environ (%s): the test proves nothing", got)
			}
		})
	}
}
