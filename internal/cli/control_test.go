package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/daemon"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

// controlGet sends GET path on a control socket and returns the status and body.
func controlGet(t *testing.T, sock, path string) (int, []byte) {
	t.Helper()
	resp, err := controlClient(sock).Get(controlBase + path)
	if err != nil {
		t.Fatalf("GET %s on the control socket: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// serve --control-socket: a 0600 socket answering health and the figures with no client token,
// removed when serve exits.
func TestServeControlSocket(t *testing.T) {
	t.Parallel()
	ft, dir, ca := serveFake(t)
	sock := filepath.Join(shortTempDir(t), "control.sock") // t.TempDir's are 0755
	r := startServe(t, map[string]string{envRealToken: serveRealToken, envClientToken: "ghs_ClientTokenFromTheEnvironment0000001"},
		"--api-url", ft.URL(), "--copilot-api-target", ft.URL(), "--server-url", "https://acme.ghe.com", "--ca-file", ca,
		"--ready-file", filepath.Join(dir, "ready.json"), "--control-socket", sock)
	info, err := os.Lstat(sock)
	if err != nil || info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, %v; want a socket of mode 0600", info, err)
	}
	if code, b := controlGet(t, sock, proxy.HealthPath); code != http.StatusOK {
		t.Errorf("health on the control socket = %d %s", code, b)
	}
	code, b := controlGet(t, sock, proxy.StatsPath)
	var s proxy.Stats
	if err := json.Unmarshal(b, &s); err != nil || code != http.StatusOK || len(s.Upstreams) == 0 {
		t.Errorf("stats on the control socket without a client token = %d %s", code, b)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("serve exited %d: %s", code, r.stderr.String())
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket outlived serve: %v", err)
	}
}

// A socket left by a proxy that was killed is replaced; anything else at the path, a live socket
// or a directory other users can enter stops serve before it listens, and is left alone.
func TestServeControlSocketPath(t *testing.T) {
	t.Parallel()
	env := map[string]string{envRealToken: serveRealToken}
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir string) string // returns the socket path
		want    string                                // "" means serve starts
	}{
		{"stale socket", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "c.sock")
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close() // as a SIGKILLed proxy leaves it
			return p
		}, ""},
		{"live socket", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "c.sock")
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return p
		}, "another process answers there"},
		{"regular file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "c.sock")
			if err := os.WriteFile(p, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "exists and is not a socket"},
		{"directory others can enter", func(t *testing.T, dir string) string {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "c.sock")
		}, "has mode 0755, so other users could reach the socket"},
		{"no directory", func(t *testing.T, dir string) string { return filepath.Join(dir, "nope", "c.sock") }, "create its directory"},
		{"deep directory", func(t *testing.T, dir string) string {
			deep := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
			if err := os.MkdirAll(deep, 0o700); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(deep, "c.sock") // over 108 bytes: bound through /proc/self/fd
		}, ""},
		{"name too long", func(t *testing.T, dir string) string { return filepath.Join(dir, strings.Repeat("s", 100)) }, "longer than a unix socket path may be"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := shortTempDir(t)
			sock := tc.prepare(t, dir)
			before, _ := os.Lstat(sock)
			args := []string{"--ready-file", filepath.Join(dir, "ready.json"), "--server-url", "https://acme.ghe.com",
				"--api-url", "https://127.0.0.1:1", "--copilot-api-target", "https://127.0.0.1:1", "--control-socket", sock}
			if tc.want == "" {
				r := startServe(t, env, args...)
				if code, _ := controlGet(t, sock, proxy.HealthPath); code != http.StatusOK {
					t.Errorf("health on the replaced socket = %d", code)
				}
				r.stop(t)
				return
			}
			code, out, errs := runServeFail(t, env, args...)
			if code != 1 || out != "" || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 naming %q", code, out, errs, tc.want)
			}
			if after, _ := os.Lstat(sock); before != nil && (after == nil || !os.SameFile(before, after)) {
				t.Errorf("serve removed or replaced %s, which was not its to touch", sock)
			}
		})
	}
}

// holdIdle opens n keep-alive connections to the proxy, each after one answered request, and
// keeps them open until the test ends: what an agent does to exhaust the TCP listener.
func holdIdle(t *testing.T, proxyURL string, n int) {
	t.Helper()
	addr := strings.TrimPrefix(proxyURL, "http://")
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", proxy.HealthPath)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		resp.Body.Close()
	}
}

// startEdited runs start, then lets edit change the state file stop will read. It returns the
// state and start's stdout.
func startEdited(t *testing.T, r *stepRunner, edit func(*proxyState)) (proxyState, string) {
	t.Helper()
	code, out, errOut := r.run(runStart)
	if code != 0 {
		t.Fatalf("start exit %d\n%s%s", code, out, errOut)
	}
	st, err := readState(r.statePath())
	if err != nil {
		t.Fatal(err)
	}
	edit(&st)
	if err := writeState(r.statePath(), st); err != nil {
		t.Fatal(err)
	}
	return st, out
}

var requestsLine = regexp.MustCompile(`(\d+) requests? in `)

// summaryRequests is the request count the traffic report shows, or -1 without figures.
func summaryRequests(t *testing.T, sum string) int {
	t.Helper()
	m := requestsLine.FindStringSubmatch(sum)
	if m == nil || strings.Contains(sum, "No traffic figures") {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// stop reads the figures on the control socket, so neither the agent's connections to the TCP
// listener nor a TCP listener it cannot reach keep them from the summary. The idle count stands
// in for the connection cap being added to the TCP listener (Config.MaxConns): once it exists,
// serve gets a small cap here and the test holds all of it; the proxy package's
// TestControlSocketAnswersWhileTCPIsFull already holds a full cap.
func TestStopReadsFiguresWhileTheAgentHoldsTCP(t *testing.T) {
	t.Parallel()
	const maxConns, idle = 16, 64
	r := newStepRunner(t, nil)
	code, out, errOut := r.run(runStart, "--max-conns", strconv.Itoa(maxConns))
	if code != 0 {
		t.Fatalf("start exit %d\n%s%s", code, out, errOut)
	}
	st, err := readState(r.statePath())
	if err != nil {
		t.Fatal(err)
	}
	// Four times the cap in connections: the agent keeps every slot of the TCP listener.
	holdIdle(t, st.URL, idle)
	code, out, errOut = r.run(runStop)
	if code != 0 {
		t.Fatalf("stop exit %d\n%s%s", code, out, errOut)
	}
	sum := r.file(t, "GITHUB_STEP_SUMMARY")
	if n := summaryRequests(t, sum); n < idle {
		t.Errorf("the traffic report shows %d requests, want the %d of the idle clients at least:\n%s", n, idle, sum)
	}
	if !strings.Contains(sum, "connection cap") {
		t.Errorf("the traffic report does not say the connection cap was reached:\n%s", sum)
	}
	if daemon.Alive(st.handle()) {
		t.Error("the proxy still runs after stop")
	}
}

// A state file from an older start has no control socket, and a socket may fail to answer:
// stop then reads the figures over TCP with the client token.
func TestStopFallsBackToTCP(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		socket func(dir string) string
	}{
		{"state from an older start", func(string) string { return "" }},
		{"socket gone", func(dir string) string { return filepath.Join(dir, "gone.sock") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newStepRunner(t, nil)
			st, _ := startEdited(t, r, func(st *proxyState) { st.ControlSocket = tc.socket(filepath.Dir(r.statePath())) })
			s, err := fetchStats(context.Background(), st)
			if err != nil || s == nil {
				t.Fatalf("figures over TCP: %v", err)
			}
			if code, out, errOut := r.run(runStop); code != 0 || summaryRequests(t, r.file(t, "GITHUB_STEP_SUMMARY")) < 0 {
				t.Errorf("stop exit %d, summary:\n%s\n%s%s", code, r.file(t, "GITHUB_STEP_SUMMARY"), out, errOut)
			}
		})
	}
}

// RUNNER_TEMP can be deeper than a unix socket path may be long (under act it can pass 108
// bytes): the control socket is still there, bound and reached through /proc/self/fd.
func TestStartWithADeepStateDirectory(t *testing.T) {
	t.Parallel()
	deep := filepath.Join(shortTempDir(t), strings.Repeat("d", 90))
	r := newStepRunner(t, map[string]string{"RUNNER_TEMP": deep})
	st, out := startEdited(t, r, func(st *proxyState) { st.URL = "http://127.0.0.1:1" }) // figures from the socket only
	if want := filepath.Join(deep, "copilot-route", controlSocketName); st.ControlSocket != want || len(want) <= maxSocketPath {
		t.Fatalf("state control_socket %q, want %q (longer than %d bytes)", st.ControlSocket, want, maxSocketPath)
	}
	if strings.Contains(out, "::warning") {
		t.Errorf("start warned:\n%s", out)
	}
	if code, out, errOut := r.run(runStop); code != 0 || summaryRequests(t, r.file(t, "GITHUB_STEP_SUMMARY")) < 0 {
		t.Errorf("stop exit %d, summary:\n%s\n%s%s", code, r.file(t, "GITHUB_STEP_SUMMARY"), out, errOut)
	}
	if _, err := os.Lstat(st.ControlSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket outlived the proxy: %v", err)
	}
}
