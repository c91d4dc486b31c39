package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/daemon"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

const startRealToken = "gho_StartTestRealTokenNeverPrinted00000001"

// stepRunner is one simulated job: runner files in a temp dir, the fake tenant posing as
// acme.ghe.com (reached through --resolve), and the environment a composite step would get.
type stepRunner struct {
	dir    string
	env    map[string]string
	tenant *faketenant.Tenant
}

func newStepRunner(t testing.TB, inputs map[string]string) *stepRunner {
	t.Helper()
	tenant, err := faketenant.Start(faketenant.Options{Host: "acme.ghe.com", Token: startRealToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tenant.Close)
	dir := shortTempDir(t)
	ca := filepath.Join(dir, "ca.pem")
	if err := tenant.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(tenant.URL())
	addr := net.JoinHostPort(u.Hostname(), u.Port())
	env := map[string]string{
		"PATH":                   os.Getenv("PATH"),
		"GITHUB_ACTIONS":         "true",
		"GITHUB_SERVER_URL":      "https://acme.ghe.com",
		"GITHUB_API_URL":         "https://api.acme.ghe.com",
		"RUNNER_TEMP":            filepath.Join(dir, "runner-temp"),
		"RUNNER_TRACKING_ID":     "github_test_tracking",
		"GITHUB_OUTPUT":          filepath.Join(dir, "output"),
		"GITHUB_ENV":             filepath.Join(dir, "env"),
		"GITHUB_STEP_SUMMARY":    filepath.Join(dir, "summary"),
		"INPUT_GITHUB_TOKEN":     startRealToken,
		"INPUT_CA_FILE":          ca,
		"COPILOT_ROUTE_RESOLVE":  "api.acme.ghe.com:443:" + addr + " copilot-api.acme.ghe.com:443:" + addr,
		"SECRET_OF_ANOTHER_STEP": "must-not-reach-the-proxy",
	}
	for k, v := range inputs {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	for _, f := range []string{"GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY"} {
		if env[f] == "" {
			continue
		}
		if err := os.WriteFile(env[f], nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(env["RUNNER_TEMP"], 0o700); err != nil {
		t.Fatal(err)
	}
	r := &stepRunner{dir: dir, env: env, tenant: tenant}
	t.Cleanup(func() { // never leave a proxy behind, whatever the test did
		if st, err := readState(r.statePath()); err == nil {
			_, _ = daemon.Stop(context.Background(), st.handle(), 0)
		}
	})
	return r
}

// shortTempDir is a temporary directory with a short path: the control socket start puts in
// RUNNER_TEMP must fit a unix socket path (103 bytes), which t.TempDir's long names can exceed.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (r *stepRunner) statePath() string {
	return filepath.Join(r.env["RUNNER_TEMP"], "copilot-route", "proxy.json")
}

func (r *stepRunner) run(cmd func(context.Context, Env, []string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cmd(context.Background(), MapEnv(r.env), args, &out, &errb)
	return code, out.String(), errb.String()
}

func (r *stepRunner) outputs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(r.env["GITHUB_OUTPUT"])
	if err != nil {
		t.Fatal(err)
	}
	entries, err := actions.ParseFile(data)
	if err != nil {
		t.Fatalf("GITHUB_OUTPUT does not parse: %v\n%s", err, data)
	}
	m := map[string]string{}
	for _, e := range entries {
		m[e.Name] = e.Value
	}
	return m
}

func (r *stepRunner) file(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(r.env[name])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkNoLeak fails when a secret appears in step output other than in the runner's own
// ::add-mask:: commands, which must come before any other line.
func checkNoLeak(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	masking := true
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "::add-mask::") {
			if !masking {
				t.Errorf("%s line %d: a mask after other output: secrets printed before it were not hidden", where, i+1)
			}
			continue
		}
		if line != "" {
			masking = false
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("%s line %d shows a secret: %q", where, i+1, line)
			}
		}
	}
}

var clientTokenShape = regexp.MustCompile(`^ghs_[A-Za-z0-9]{36}$`)

func TestStartServeStopInAJob(t *testing.T) {
	t.Parallel()
	r := newStepRunner(t, map[string]string{"INPUT_ALLOW_ROUTES": "# the agent's extra route\nGET  /copilot_internal/content_exclusions\n\nPOST /mcp/*  # and MCP"})
	code, out, errOut := r.run(runStart)
	if code != 0 {
		t.Fatalf("start exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	o := r.outputs(t)
	client := o["client-token"]
	if !clientTokenShape.MatchString(client) {
		t.Fatalf("client-token %q is not ghs_ + 36 alphanumerics", client)
	}
	if !strings.Contains(out, "::add-mask::"+startRealToken+"\n") || !strings.Contains(out, "::add-mask::"+client+"\n") {
		t.Errorf("the real and client tokens were not both masked:\n%s", out)
	}
	checkNoLeak(t, "start stdout", out, startRealToken, client)
	checkNoLeak(t, "start stderr", errOut, startRealToken, client)

	pid, err := strconv.Atoi(o["proxy-pid"])
	if err != nil {
		t.Fatalf("proxy-pid %q", o["proxy-pid"])
	}
	if !strings.HasPrefix(o["proxy-url"], "http://127.0.0.1:") {
		t.Errorf("proxy-url = %q", o["proxy-url"])
	}
	wantEnv := fmt.Sprintf("COPILOT_API_URL=%s\nCOPILOT_DEBUG_GITHUB_API_URL=%[1]s\nCOPILOT_GITHUB_TOKEN=%s\nGH_HOST=acme.ghe.com", o["proxy-url"], client)
	if o["agent-env"] != wantEnv {
		t.Errorf("agent-env =\n%s\nwant\n%s", o["agent-env"], wantEnv)
	}
	if o["log-file"] != filepath.Join(r.env["RUNNER_TEMP"], "copilot-route", "proxy.log") {
		t.Errorf("log-file = %q", o["log-file"])
	}

	// The proxy: its own session; neither token in its environment or argv in any form (they came
	// on a pipe, closed once read); nothing else of the job's environment.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !bytes.Contains(cmdline, []byte("\x00--secrets-fd\x003\x00")) || bytes.Contains(cmdline, []byte("--token-env")) {
		t.Errorf("the proxy was not told to read its tokens from fd 3: argv %q", cmdline)
	}
	if !bytes.Contains(cmdline, []byte("\x00--allow-route\x00GET /copilot_internal/content_exclusions\x00--allow-route\x00POST /mcp/*\x00")) {
		t.Errorf("the allow-routes input did not reach serve: %q", cmdline)
	}
	// argv is open to every user; environ to the proxy's user, unless it is sealed (root only).
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	for what, tok := range map[string]string{"real token": startRealToken, "client token": client} {
		for form, f := range leakForms(tok) {
			if bytes.Contains(cmdline, []byte(f)) || bytes.Contains(environ, []byte(f)) {
				t.Errorf("the %s (%s) is in the proxy's /proc/PID/cmdline or environ", what, form)
			}
		}
	}
	switch {
	case err != nil && os.Getuid() != 0 && errors.Is(err, os.ErrPermission):
		// Sealed (daemon.Seal): only root may read it, or the proxy's descriptors.
		t.Logf("the proxy's environ is closed to this user (%v): run the tests as root to check what it holds", err)
	case err != nil:
		t.Fatal(err)
	default:
		for _, name := range []string{envRealToken, envClientToken} {
			if bytes.Contains(environ, []byte(name+"=")) {
				t.Errorf("the proxy's environment has %s", name)
			}
		}
		if !bytes.Contains(environ, []byte("RUNNER_TRACKING_ID=github_test_tracking\x00")) {
			t.Error("the proxy's environment lacks RUNNER_TRACKING_ID")
		}
		if bytes.Contains(environ, []byte("SECRET_OF_ANOTHER_STEP")) || bytes.Contains(environ, []byte("INPUT_GITHUB_TOKEN")) {
			t.Error("the proxy inherited variables it does not need")
		}
		if fds := pipesOf(pid); len(fds) > 0 {
			t.Errorf("the proxy still holds a pipe after start-up: %v", fds)
		}
	}
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) < 4 || f[3] != strconv.Itoa(pid) {
		t.Errorf("the proxy is not the leader of its own session: stat %q", stat)
	}

	info, err := os.Stat(r.statePath())
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v; want mode 0600", info, err)
	}
	state, _ := os.ReadFile(r.statePath())
	if bytes.Contains(state, []byte(startRealToken)) {
		t.Error("the state file holds the real token")
	}
	st, _ := readState(r.statePath())
	sock := filepath.Join(r.env["RUNNER_TEMP"], "copilot-route", controlSocketName)
	if st.ControlSocket != sock {
		t.Errorf("state control_socket = %q, want %q", st.ControlSocket, sock)
	}
	if info, err := os.Stat(sock); err != nil || info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, %v; want a socket of mode 0600", info, err)
	}
	if info, err := os.Stat(filepath.Dir(sock)); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v, %v; want mode 0700", info, err)
	}

	reply, err := demoChat(context.Background(), o["proxy-url"], client, io.Discard)
	if err != nil || reply != faketenant.DefaultReplyText {
		t.Fatalf("streamed reply through the proxy = %q, %v", reply, err)
	}
	var sawReal bool
	for _, req := range r.tenant.Requests() {
		if req.Path == "/chat/completions" {
			sawReal = strings.HasSuffix(req.Header.Get("Authorization"), " "+startRealToken)
		}
	}
	if !sawReal {
		t.Error("the tenant did not get the real token on /chat/completions")
	}
	// The proxy counts a request when its handler returns, a moment after the client read the
	// last byte: wait for the count so the summary check below is not a race.
	for i := 0; ; i++ {
		s, err := fetchStats(context.Background(), st)
		if err == nil && strings.Contains(fmt.Sprint(s.Routes), "/chat/completions") {
			break
		}
		if i == 500 {
			t.Fatalf("the proxy's stats never showed the chat request: %v %v", s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	code, out, errOut = r.run(runStop)
	if code != 0 {
		t.Fatalf("stop exit %d\n%s\n%s", code, out, errOut)
	}
	checkNoLeak(t, "stop stdout", out, startRealToken, client)
	checkNoLeak(t, "stop stderr", errOut, startRealToken, client)
	sum := r.file(t, "GITHUB_STEP_SUMMARY")
	for _, want := range []string{"**Proxy:** the agent reaches Copilot at `" + o["proxy-url"] + "`", "copilot-route: traffic", "`/chat/completions`", "terminated"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	checkNoLeak(t, "summary", sum, startRealToken, client)
	logText, _ := os.ReadFile(o["log-file"])
	checkNoLeak(t, "proxy log", string(logText), startRealToken, client)
	if !strings.Contains(string(logText), `"sealed":true`) {
		t.Errorf("the proxy did not seal itself against other processes of its user:\n%s", logText)
	}
	if daemon.Alive(st.handle()) {
		t.Errorf("the proxy (pid %d) still runs after stop", pid)
	}
	if _, err := os.Stat(r.statePath()); !errors.Is(err, os.ErrNotExist) {
		t.Error("the state file survived stop")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket survived the proxy: %v", err)
	}

	// A second stop (the user ran it twice, or the job is being cleaned up) is harmless.
	if code, _, errOut := r.run(runStop); code != 0 || !strings.Contains(errOut, "nothing to stop") {
		t.Errorf("second stop: exit %d, %q", code, errOut)
	}
}

// TestStartProxyHostAndSecondStart: proxy-host rewrites proxy-url and writes awf-args for the
// listening port; a loopback listen beside it warns (the test keeps to loopback: the default,
// 0.0.0.0:8790, is a fixed port parallel tests would fight over, and scripts/e2e-awf.sh runs it).
func TestStartProxyHostAndSecondStart(t *testing.T) {
	t.Parallel()
	r := newStepRunner(t, map[string]string{"INPUT_PROXY_HOST": "host.docker.internal", "INPUT_LISTEN": "127.0.0.1:0",
		"INPUT_EXTRA_DOMAINS": "registry.npmjs.org"})
	code, out, errOut := r.run(runStart)
	if code != 0 {
		t.Fatalf("start exit %d\n%s\n%s", code, out, errOut)
	}
	o := r.outputs(t)
	if !regexp.MustCompile(`^http://host\.docker\.internal:[0-9]+$`).MatchString(o["proxy-url"]) {
		t.Errorf("proxy-url = %q, want http://host.docker.internal:PORT", o["proxy-url"])
	}
	st, err := readState(r.statePath())
	port := st.URL[strings.LastIndexByte(st.URL, ':')+1:]
	if err != nil || !strings.HasSuffix(o["proxy-url"], ":"+port) {
		t.Errorf("proxy-url %q does not use the listening port of %q (%v)", o["proxy-url"], st.URL, err)
	}
	wantAWF := "--enable-host-access --allow-host-ports " + port + " --allow-domains host.docker.internal,registry.npmjs.org " +
		"--block-domains api.acme.ghe.com,copilot-api.acme.ghe.com"
	if o["awf-args"] != wantAWF {
		t.Errorf("awf-args =\n  %s\nwant\n  %s", o["awf-args"], wantAWF)
	}
	if !strings.Contains(out, "::warning title=copilot-route%3A proxy-host with a loopback listen::") || !strings.Contains(out, "cannot reach") {
		t.Errorf("no warning about proxy-host with a loopback listen:\n%s", out)
	}

	// A second start while the first proxy runs is refused, and leaves the first alone.
	before := r.file(t, "GITHUB_OUTPUT")
	code, out, _ = r.run(runStart)
	if code != 1 || !strings.Contains(out, "::error") || !strings.Contains(out, "still runs") {
		t.Errorf("second start: exit %d\n%s", code, out)
	}
	if r.file(t, "GITHUB_OUTPUT") != before {
		t.Error("the refused start wrote outputs")
	}
	if !daemon.Alive(st.handle()) {
		t.Error("the first proxy died")
	}
	if code, _, _ := r.run(runStop); code != 0 || daemon.Alive(st.handle()) {
		t.Errorf("stop: exit %d, alive %v", code, daemon.Alive(st.handle()))
	}
}

func TestStartFailsCleanly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		inputs  map[string]string
		message string // in the ::error annotation
		logTail string // in stderr, when serve ran and failed
	}{
		{"no token", map[string]string{"INPUT_GITHUB_TOKEN": ""}, "no GitHub token for the proxy", ""},
		{"token from the environment only", map[string]string{"INPUT_GITHUB_TOKEN": "", "COPILOT_GITHUB_TOKEN": startRealToken, "INPUT_LISTEN": "127.0.0.1:notaport"}, "the proxy did not start", "| "},
		{"bad server url", map[string]string{"INPUT_SERVER_URL": "https://ghe.com"}, "server-url", ""},
		{"bad proxy host", map[string]string{"INPUT_PROXY_HOST": "http://evil/"}, "proxy-host", ""},
		{"bad allow-routes", map[string]string{"INPUT_ALLOW_ROUTES": "GET /models\nPOST /copilot_internal/v2/token"}, "allow-routes", ""},
		{"allow-routes without a method", map[string]string{"INPUT_ALLOW_ROUTES": "/repos/*"}, "METHOD /path", ""},
		{"bad start-proxy", map[string]string{"INPUT_START_PROXY": "maybe"}, "start-proxy", ""},
		{"serve cannot listen", map[string]string{"INPUT_LISTEN": "127.0.0.1:notaport"}, "the proxy did not start", "listen on"},
		{"serve cannot read the CA", map[string]string{"INPUT_CA_FILE": "/nonexistent/ca.pem"}, "exited before it was ready", "read --ca-file"},
		{"serve refuses a bad auth scheme", map[string]string{"INPUT_AUTH_SCHEME": "sideways"}, "the proxy did not start", "| "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newStepRunner(t, tc.inputs)
			code, out, errOut := r.run(runStart)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
			}
			var annotation string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "::error") {
					annotation = l
				}
			}
			if !strings.Contains(annotation, tc.message) {
				t.Errorf("annotation %q lacks %q\nstdout:\n%s", annotation, tc.message, out)
			}
			if tc.logTail != "" && !strings.Contains(errOut, tc.logTail) {
				t.Errorf("stderr lacks the log tail %q:\n%s", tc.logTail, errOut)
			}
			for _, l := range strings.Split(errOut, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "::") {
					t.Errorf("a log line could act as a workflow command: %q", l)
				}
			}
			checkNoLeak(t, "stdout", out, startRealToken)
			checkNoLeak(t, "stderr", errOut, startRealToken)
			if o := r.file(t, "GITHUB_OUTPUT"); o != "" {
				t.Errorf("outputs written by a failed start:\n%s", o)
			}
			if _, err := os.Stat(r.statePath()); !errors.Is(err, os.ErrNotExist) {
				t.Error("a state file was left by a failed start")
			}
			// Another test's child between fork and exec holds a copy of every descriptor of this
			// process for a moment: only a holder that stays is a process left behind.
			logPath := filepath.Join(r.env["RUNNER_TEMP"], "copilot-route", "proxy.log")
			for i := 0; ; i++ {
				pid := pidWithOpenFile(logPath)
				if pid == 0 {
					break
				}
				if i == 400 {
					t.Errorf("pid %d still holds the proxy log: a process was left behind", pid)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// pipesOf lists the pipes among a process's open descriptors.
func pipesOf(pid int) []string {
	var out []string
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); strings.HasPrefix(l, "pipe:") {
			out = append(out, fd.Name()+" → "+l)
		}
	}
	return out
}

func pidWithOpenFile(path string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == path {
				return pid
			}
		}
	}
	return 0
}

func TestStartProxyFalseStartsNothing(t *testing.T) {
	t.Parallel()
	r := newStepRunner(t, map[string]string{"INPUT_START_PROXY": "false", "INPUT_GITHUB_TOKEN": ""})
	code, out, errOut := r.run(runStart)
	if code != 0 || r.file(t, "GITHUB_OUTPUT") != "" || !strings.Contains(errOut, "no proxy started") {
		t.Errorf("exit %d, outputs %q\n%s%s", code, r.file(t, "GITHUB_OUTPUT"), out, errOut)
	}
	if _, err := os.Stat(r.statePath()); !errors.Is(err, os.ErrNotExist) {
		t.Error("state file written")
	}
}

func TestStopWithoutAProxy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		state   string // "" means no state file
		summary string
		stdout  string
	}{
		{"never started", "", "No proxy was started in this job", ""},
		{"damaged state", "{not json", "", "::warning"},
		{"proxy already gone", `{"pid":2147483000,"identity":"1","url":"http://127.0.0.1:1","client_token":"ghs_x","log_file":"/x/proxy.log"}`, "at stop: already-gone", "had exited before stop"},
		{"pid reused by another process", fmt.Sprintf(`{"pid":%d,"identity":"1","url":"http://127.0.0.1:1"}`, os.Getpid()), "at stop: not-ours", "no longer the proxy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newStepRunner(t, nil)
			if tc.state != "" {
				_ = os.MkdirAll(filepath.Dir(r.statePath()), 0o700)
				if err := os.WriteFile(r.statePath(), []byte(tc.state), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errOut := r.run(runStop)
			if code != 0 {
				t.Fatalf("stop exit %d\n%s\n%s", code, out, errOut)
			}
			if sum := r.file(t, "GITHUB_STEP_SUMMARY"); !strings.Contains(sum, tc.summary) {
				t.Errorf("summary lacks %q:\n%s", tc.summary, sum)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out)
			}
		})
	}
}

func TestListenAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, proxyHost, want string }{
		{"", "", "127.0.0.1:0"},
		{"", "host.docker.internal", "0.0.0.0:8790"},
		{" 0.0.0.0:9000 ", "host.docker.internal", "0.0.0.0:9000"},
		{"127.0.0.1:0", "host.docker.internal", "127.0.0.1:0"},
		{"[::1]:0", "", "[::1]:0"},
	} {
		if got := listenAddr(tc.listen, tc.proxyHost); got != tc.want {
			t.Errorf("listenAddr(%q, %q) = %q, want %q", tc.listen, tc.proxyHost, got, tc.want)
		}
	}
}

func TestAgentEnv(t *testing.T) {
	t.Parallel()
	const both = "COPILOT_API_URL=http://p:1\nCOPILOT_DEBUG_GITHUB_API_URL=http://p:1\nCOPILOT_GITHUB_TOKEN=ghs_c\n"
	cases := []struct {
		server, copilotHost string
		want                string
	}{
		{"https://github.com", "", both},
		{"https://acme.ghe.com", "", both + "GH_HOST=acme.ghe.com\n"},
		{"https://github.example.com", "", both + "GH_HOST=github.example.com\nCOPILOT_GH_HOST=github.com\n"},
		{"https://github.example.com", "acme.ghe.com", both + "GH_HOST=github.example.com\nCOPILOT_GH_HOST=acme.ghe.com\n"},
	}
	for _, tc := range cases {
		ep, err := platform.Detect(platform.Input{ServerURL: tc.server, CopilotHost: tc.copilotHost})
		if err != nil {
			t.Fatal(err)
		}
		if got := agentEnv(ep, "http://p:1", "ghs_c"); got != tc.want {
			t.Errorf("%s (%s): agent-env =\n%s\nwant\n%s", tc.server, tc.copilotHost, got, tc.want)
		}
	}
}

func TestCheckProxyHost(t *testing.T) {
	t.Parallel()
	for h, ok := range map[string]bool{
		"host.docker.internal": true, "172.30.0.1": true, "::1": true, "[::1]": true, "localhost": true,
		"http://x": false, "x:80": false, "x/y": false, "a b": false, "x\n": false, "u@x": false, "x?y": false, "%41": false,
	} {
		if err := checkProxyHost(h); (err == nil) != ok {
			t.Errorf("checkProxyHost(%q) = %v, want ok=%v", h, err, ok)
		}
	}
}

// BenchmarkStartStop measures what the start and stop steps cost a job: start spawns a real
// detached proxy (this test binary as serve), waits for its ready file, discovery and health
// check; stop reads the stats, sends SIGTERM and waits for the exit.
func BenchmarkStartStop(b *testing.B) {
	r := newStepRunner(b, nil)
	for b.Loop() {
		if code, out, errOut := r.run(runStart); code != 0 {
			b.Fatalf("start exit %d\n%s%s", code, out, errOut)
		}
		if code, out, errOut := r.run(runStop); code != 0 {
			b.Fatalf("stop exit %d\n%s%s", code, out, errOut)
		}
	}
}

// Outside Actions (a terminal, a script) there is no runner to read workflow commands: start
// prints the agent's environment, stop prints the report, and no ::add-mask:: line spells out a
// secret.
func TestStartStopOutsideActions(t *testing.T) {
	t.Parallel()
	r := newStepRunner(t, map[string]string{"GITHUB_ACTIONS": "", "GITHUB_OUTPUT": "", "GITHUB_ENV": "", "GITHUB_STEP_SUMMARY": ""})
	code, out, errOut := r.run(runStart)
	if code != 0 {
		t.Fatalf("start exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "::") || strings.Contains(out+errOut, startRealToken) {
		t.Errorf("workflow commands or the real token outside Actions:\n%s%s", out, errOut)
	}
	if !regexp.MustCompile(`(?m)^COPILOT_API_URL=(http://127\.0\.0\.1:\d+)\nCOPILOT_DEBUG_GITHUB_API_URL=http://127\.0\.0\.1:\d+\nCOPILOT_GITHUB_TOKEN=ghs_[A-Za-z0-9]{36}\nGH_HOST=acme\.ghe\.com\n$`).MatchString(out) {
		t.Errorf("stdout is not the agent's environment:\n%s", out)
	}
	code, out, errOut = r.run(runStop)
	if code != 0 || !strings.Contains(errOut, "copilot-route: traffic") || strings.Contains(out+errOut, "::") {
		t.Errorf("stop exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
