//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child: with DAEMON_TEST_CHILD set it plays one of the roles below
// instead of running the tests, so every test drives a real, separate process.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DAEMON_TEST_CHILD"); mode != "" {
		os.Exit(child(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func child(mode string, args []string) int {
	readyFile := ""
	if len(args) > 0 {
		readyFile = args[0]
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode {
	case "crash":
		fmt.Fprintln(os.Stderr, "serve: bad flag --nope; run copilot-route serve -h")
		return 3
	case "never":
		fmt.Println("waiting for something that never comes")
		select {}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		writeReady(readyFile, map[string]any{"pid": os.Getpid()})
		select {}
	case "handoff":
		return handoffChild(readyFile, term)
	case "sealed", "unsealed":
		return sealChild(mode == "sealed")
	case "inspect":
		return inspectChild(readyFile)
	case "ready":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		go func() { _ = http.Serve(ln, mux) }()
		fmt.Println("child says hello")
		writeReady(readyFile, map[string]any{"url": "http://" + ln.Addr().String(), "pid": os.Getpid()})
		<-term
		fmt.Println("child got SIGTERM")
		return 0
	}
	return 99
}

func writeReady(path string, v any) {
	b, _ := json.Marshal(v)
	tmp := path + ".tmp"
	_ = os.WriteFile(tmp, b, 0o600)
	_ = os.Rename(tmp, path)
}

func opts(t *testing.T, mode string, extraEnv ...string) Options {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	return Options{
		Path:      exe,
		Args:      []string{ready},
		Env:       append([]string{"DAEMON_TEST_CHILD=" + mode}, extraEnv...),
		LogFile:   filepath.Join(dir, "child.log"),
		ReadyFile: ready,
	}
}

// procField returns field n (1-based, as in proc(5)) of /proc/PID/stat.
func procField(t *testing.T, pid, n int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[n-3]
}

func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}

func stopOrFail(t *testing.T, h Handle) StopResult {
	t.Helper()
	res, err := Stop(context.Background(), h, 5*time.Second)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	return res
}

func TestStartDetachesAndStopTerminates(t *testing.T) {
	t.Parallel()
	o := opts(t, "ready", "CHILD_SECRET=s3cr3t-value", "RUNNER_TRACKING_ID=github_abc")
	var checked []byte
	o.Ready = func(ctx context.Context, data []byte) error {
		var r struct{ URL string }
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		checked = data
		return nil
	}
	st, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _, _ = Stop(context.Background(), st.Handle, time.Second) })
	pid := st.PID

	if string(checked) != string(st.ReadyData) || !strings.Contains(string(st.ReadyData), `"pid":`+strconv.Itoa(pid)) {
		t.Errorf("ready data %q (checked %q) is not the child's ready file", st.ReadyData, checked)
	}
	if got := procField(t, pid, 6); got != strconv.Itoa(pid) {
		t.Errorf("session id = %s, want the child's own pid %d (a new session)", got, pid)
	}
	if got := procField(t, pid, 5); got != strconv.Itoa(pid) {
		t.Errorf("process group = %s, want %d", got, pid)
	}
	if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); err != nil || l != "/dev/null" {
		t.Errorf("stdin = %q, %v; want /dev/null", l, err)
	}
	for _, fd := range []string{"1", "2"} {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd)); l != o.LogFile {
			t.Errorf("fd %s = %q, want the log file %s", fd, l, o.LogFile)
		}
	}
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	for _, want := range []string{"CHILD_SECRET=s3cr3t-value", "RUNNER_TRACKING_ID=github_abc"} {
		if !strings.Contains(string(environ), want) {
			t.Errorf("child environment lacks %s", want)
		}
	}
	if strings.Contains(string(environ), "PATH=") {
		t.Errorf("child inherited PATH: its environment must be exactly Options.Env")
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.Contains(string(cmdline), "s3cr3t") {
		t.Errorf("secret visible in argv: %q", cmdline)
	}
	if info, err := os.Stat(o.LogFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("log file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	if !Alive(st.Handle) {
		t.Fatal("Alive = false for the running child")
	}

	if res := stopOrFail(t, st.Handle); res != Terminated {
		t.Errorf("Stop = %s, want %s", res, Terminated)
	}
	if Alive(st.Handle) {
		t.Error("still alive after Stop")
	}
	log, _ := os.ReadFile(o.LogFile)
	for _, want := range []string{"child says hello", "child got SIGTERM"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if res := stopOrFail(t, st.Handle); res != AlreadyGone {
		t.Errorf("second Stop = %s, want %s", res, AlreadyGone)
	}
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, mode string
		timeout    time.Duration
		reason     string
		tail       string
	}{
		{"exits early", "crash", 0, "exited before it was ready", "serve: bad flag --nope"},
		// Long enough for the child to print its line on a loaded machine: the tail is what is checked.
		{"never ready", "never", 3 * time.Second, "not ready after 3s", "waiting for something"},
		{"unknown mode", "no-such-mode", 0, "exit status 99", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := opts(t, tc.mode)
			o.Timeout = tc.timeout
			st, err := Start(context.Background(), o)
			if err == nil {
				_, _ = Stop(context.Background(), st.Handle, time.Second)
				t.Fatal("Start succeeded")
			}
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want *StartError", err, err)
			}
			if !strings.Contains(se.Reason, tc.reason) || !strings.Contains(se.LogTail, tc.tail) {
				t.Errorf("error = %q; want reason with %q and tail with %q", err, tc.reason, tc.tail)
			}
			if _, statErr := os.Stat(o.ReadyFile); statErr == nil {
				t.Error("a ready file exists after a failed start")
			}
		})
	}
}

func TestStartKillsTheChildOnTimeout(t *testing.T) {
	t.Parallel()
	o := opts(t, "never")
	o.Timeout = 200 * time.Millisecond
	var pid int
	o.ReadyFile = "" // readiness only through the check below, which never passes
	// Find the child's pid through the log file it holds open while it runs.
	o.Ready = func(context.Context, []byte) error {
		if pid == 0 {
			pid = pidHolding(t, o.LogFile)
		}
		return errors.New("health check refused")
	}
	_, err := Start(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "health check refused") {
		t.Fatalf("err = %v; want the last ready check's error", err)
	}
	if pid == 0 {
		t.Fatal("never saw the child")
	}
	if !gone(pid) {
		t.Errorf("pid %d still exists after the failed Start", pid)
	}
}

func TestStartCancelledKillsTheChild(t *testing.T) {
	t.Parallel()
	o := opts(t, "never")
	ctx, cancel := context.WithCancel(context.Background())
	var pid int
	o.ReadyFile = ""
	o.Ready = func(context.Context, []byte) error {
		if pid == 0 {
			if pid = pidHolding(t, o.LogFile); pid != 0 {
				cancel() // the caller gives up (the step was cancelled) once the child runs
			}
		}
		return errors.New("not yet")
	}
	_, err := Start(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err = %v, want a cancellation", err)
	}
	if pid == 0 || !gone(pid) {
		t.Errorf("child %d not reaped after the cancelled Start", pid)
	}
}

// pidHolding finds a process of ours whose stdout is path.
func pidHolding(t *testing.T, path string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", pid)); l == path {
			return pid
		}
	}
	return 0
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	st, err := Start(context.Background(), opts(t, "stubborn"))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	res, err := Stop(context.Background(), st.Handle, 100*time.Millisecond)
	if err != nil || res != Killed {
		t.Errorf("Stop = %s, %v; want %s", res, err, Killed)
	}
	if Alive(st.Handle) {
		t.Error("alive after SIGKILL")
	}
}

func TestStopLeavesOtherProcessesAlone(t *testing.T) {
	t.Parallel()
	st, err := Start(context.Background(), opts(t, "ready"))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _, _ = Stop(context.Background(), st.Handle, time.Second) })

	cases := []struct {
		name string
		h    Handle
		want StopResult
	}{
		{"nothing recorded", Handle{}, NotStarted},
		{"negative pid", Handle{PID: -1}, NotStarted},
		{"reused pid", Handle{PID: st.PID, Identity: "1"}, NotOurs},
		{"no identity", Handle{PID: st.PID}, NotOurs},
		{"our own test process", Handle{PID: os.Getpid(), Identity: st.Identity}, NotOurs},
	}
	for _, tc := range cases {
		if got := stopOrFail(t, tc.h); got != tc.want {
			t.Errorf("%s: Stop = %s, want %s", tc.name, got, tc.want)
		}
	}
	if !Alive(st.Handle) {
		t.Fatal("a Stop with a wrong identity killed the child")
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no path", Options{LogFile: "x", ReadyFile: "y"}, "no executable"},
		{"no log", Options{Path: "/bin/true", ReadyFile: "y"}, "log file is required"},
		{"no readiness", Options{Path: "/bin/true", LogFile: "x"}, "ready file or a ready check"},
	}
	for _, tc := range cases {
		if _, err := Start(context.Background(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestLogTailKeepsTheLastLines(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "line %03d %s\n", i, strings.Repeat("x", 50))
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := logTail(p, 0, 4096, 5)
	lines := strings.Split(got, "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "line 095") || !strings.HasPrefix(lines[4], "line 099") {
		t.Errorf("tail = %q", got)
	}
	if logTail(filepath.Join(t.TempDir(), "missing"), 0, 100, 5) != "" {
		t.Error("tail of a missing file is not empty")
	}
	if got := logTail(p, int64(b.Len()-2*60), 4096, 5); got != strings.TrimSuffix(b.String()[b.Len()-2*60:], "\n") {
		t.Errorf("tail from an offset = %q, want the last two lines", got)
	}
}

// A log appended to across starts: a failed start reports what its own child wrote, not the
// failure of an earlier run still at the end of the file.
func TestStartFailureShowsOnlyThisRunsLog(t *testing.T) {
	t.Parallel()
	o := opts(t, "no-such-mode")
	if err := os.WriteFile(o.LogFile, []byte("an old run: listen on 127.0.0.1:1: address already in use\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), o)
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("Start = %v, want a *StartError", err)
	}
	if strings.Contains(se.LogTail, "an old run") {
		t.Errorf("the failure replays an earlier run's log: %q", se.LogTail)
	}
}
