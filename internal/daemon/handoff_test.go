//go:build linux

package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// handoffChild is the child side of the handoff tests: it reads fd 3 and reports a digest of what
// it read in its ready file (never the data), then waits for SIGTERM.
func handoffChild(readyFile string, term <-chan os.Signal) int {
	data, err := ReadHandoff(3, 4096, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	sum := sha256.Sum256(data)
	writeReady(readyFile, map[string]any{"pid": os.Getpid(), "sha256": hex.EncodeToString(sum[:])})
	<-term
	return 0
}

// The secret reaches the child through the pipe only: not in its environment, not in its argv,
// and the pipe is gone from its descriptors once read.
func TestHandoffReachesTheChildOnly(t *testing.T) {
	t.Parallel()
	secret := "handoff-secret-7f3a9c1e5b"
	r, err := HandoffPipe([]byte(`{"token":"` + secret + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	var rst syscall.Stat_t
	if err := syscall.Fstat(int(r.Fd()), &rst); err != nil {
		t.Fatal(err)
	}
	o := opts(t, "handoff")
	o.ExtraFiles = []*os.File{r}
	st, err := Start(context.Background(), o)
	r.Close()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _, _ = Stop(context.Background(), st.Handle, time.Second) })

	var ready struct{ SHA256 string }
	if err := json.Unmarshal(st.ReadyData, &ready); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte(`{"token":"` + secret + `"}`))
	if ready.SHA256 != hex.EncodeToString(want[:]) {
		t.Errorf("the child read something else than what was handed over (sha256 %s)", ready.SHA256)
	}
	for _, f := range []string{"environ", "cmdline"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", st.PID, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) {
			t.Errorf("the secret is in the child's /proc/PID/%s", f)
		}
	}
	pipe := fmt.Sprintf("pipe:[%d]", rst.Ino)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st.PID, fd.Name())); l == pipe {
			t.Errorf("the child still holds the handoff pipe as fd %s after reading it", fd.Name())
		}
	}
}

// A child given no pipe fails at once, with a message that says what to do. (A Go child finds
// the runtime's cgroup files at fd 3 then, which it must leave alone.)
func TestHandoffMissingFailsTheChild(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), opts(t, "handoff"))
	if err == nil || !strings.Contains(err.Error(), "not a pipe: the parent must pass there the read end of a pipe") ||
		!strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("err = %v; want the child's exit with its fd 3 message", err)
	}
}

func TestHandoffPipeRefusesWhatDoesNotFit(t *testing.T) {
	t.Parallel()
	_, err := HandoffPipe(make([]byte, 4<<20))
	if err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Fatalf("err = %v; want a refusal instead of a write that blocks", err)
	}
}

// dupFD gives ReadHandoff a descriptor of its own (it closes what it reads): a close-on-exec
// duplicate, so children of parallel tests do not inherit it.
func dupFD(t *testing.T, sc syscall.Conn) int {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
		}
		nfd = int(r)
	}); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	return nfd
}

func TestReadHandoffRefuses(t *testing.T) {
	t.Parallel()
	const secret = "gho_HandoffSecretThatMustNotBeQuoted000"
	pipeWith := func(data string, keepOpen bool) func(t *testing.T) int {
		return func(t *testing.T) int {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			if _, err := w.WriteString(data); err != nil {
				t.Fatal(err)
			}
			if !keepOpen {
				w.Close()
			}
			return dupFD(t, r)
		}
	}
	cases := []struct {
		name  string
		fd    func(t *testing.T) int
		max   int64
		want  string
		keeps bool // a descriptor that is not a pipe is not ReadHandoff's to close
	}{
		{"empty pipe", pipeWith("", false), 4096, "empty pipe", false},
		{"writer never closes", pipeWith(secret, true), 4096, "no end of file within", false},
		{"too much", pipeWith(secret+secret, false), int64(len(secret)), "more than", false},
		{"regular file", func(t *testing.T) int {
			p := filepath.Join(t.TempDir(), "secrets.json")
			if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return dupFD(t, f)
		}, 4096, "is a regular file (", true},
		{"terminal or device", func(t *testing.T) int {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return dupFD(t, f)
		}, 4096, "is a terminal or other character device (/dev/null), not a pipe", true},
		{"socket", func(t *testing.T) int {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return dupFD(t, ln.(*net.TCPListener))
		}, 4096, "is a socket (socket:[", true},
		// Descriptors are handed out lowest first: one this high is never open in a test.
		{"not open", func(*testing.T) int { return 19_999 }, 4096, "fd 19999 is not open", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fd := tc.fd(t)
			var before syscall.Stat_t
			_ = syscall.Fstat(fd, &before)
			data, err := ReadHandoff(fd, tc.max, 100*time.Millisecond)
			if err == nil {
				t.Fatalf("read %d bytes; want an error with %q", len(data), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "gho_") {
				t.Errorf("the error quotes the data: %v", err)
			}
			if !tc.keeps {
				return // closed, or never open: the number may already be another test's
			}
			var after syscall.Stat_t
			if syscall.Fstat(fd, &after) != nil || after.Ino != before.Ino || after.Dev != before.Dev {
				t.Fatalf("fd %d was closed: ReadHandoff must leave what is not a pipe alone", fd)
			}
			syscall.Close(fd)
		})
	}
}

// A descriptor this process inherited without close-on-exec (as from a runner or a shell) does
// not pass to the detached child: it would hold, say, a step's output pipe for the job's life.
func TestStartPassesNoInheritedDescriptor(t *testing.T) {
	t.Parallel()
	p := make([]int, 2)
	if err := syscall.Pipe(p); err != nil { // pipe2(p, 0): no close-on-exec, like an inherited one
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	var st syscall.Stat_t
	if err := syscall.Fstat(p[1], &st); err != nil {
		t.Fatal(err)
	}
	started, err := Start(context.Background(), opts(t, "ready"))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _, _ = Stop(context.Background(), started.Handle, time.Second) })
	pipe := fmt.Sprintf("pipe:[%d]", st.Ino)
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", started.PID))
	for _, fd := range fds {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", started.PID, fd.Name())); l == pipe {
			t.Errorf("the child inherited our pipe as fd %s", fd.Name())
		}
	}
}
