package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

const serveRealToken = "gho_ServeTestRealTokenNeverShown0000000001"

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type serveRun struct {
	readyLine string
	stdout    *lockedBuffer
	stderr    *lockedBuffer
	cancel    context.CancelFunc
	code      chan int
}

// startServe runs serve in-process and returns once it printed its ready line (or exited).
func startServe(t *testing.T, env map[string]string, args ...string) *serveRun {
	t.Helper()
	return startServeEnv(t, MapEnv(env), args...)
}

// startServeEnv is startServe with an Env the caller keeps, to see what serve did to it.
func startServeEnv(t *testing.T, env Env, args ...string) *serveRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	r := &serveRun{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, cancel: cancel, code: make(chan int, 1)}
	go func() {
		code := runServe(ctx, env, args, io.MultiWriter(pw, r.stdout), r.stderr)
		pw.Close()
		r.code <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain anything else
	if err != nil {
		cancel()
		t.Fatalf("serve exited (%d) before its ready line: %s", <-r.code, r.stderr.String())
	}
	r.readyLine = line
	t.Cleanup(func() { cancel() })
	return r
}

func (r *serveRun) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	return <-r.code
}

// runServeFail runs serve expecting it to refuse to start.
func runServeFail(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runServe(context.Background(), MapEnv(env), args, &out, &errb)
	return code, out.String(), errb.String()
}

// serveFake starts the simulated tenant accepting serveRealToken and writes its CA into a
// temporary directory, which it returns with the CA file's path.
func serveFake(t *testing.T) (ft *faketenant.Tenant, dir, ca string) {
	t.Helper()
	ft, err := faketenant.Start(faketenant.Options{Token: serveRealToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ft.Close)
	dir = t.TempDir()
	ca = filepath.Join(dir, "ca.pem")
	if err := ft.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	return ft, dir, ca
}

// serve end to end: ready line and file, the generated client token only in the 0600 ready file,
// discovery and routing to the tenant's derived hosts via --resolve, a stream, stats, graceful
// stop, and no token in stdout, stderr or the log.
func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	ft, dir, ca := serveFake(t)
	hp := strings.TrimPrefix(ft.URL(), "https://")
	ready, logFile := filepath.Join(dir, "ready.json"), filepath.Join(dir, "proxy.log")
	r := startServe(t, map[string]string{"COPILOT_GITHUB_TOKEN": "  Bearer " + serveRealToken + "\n", "GITHUB_RUN_ID": "77", "GITHUB_RUN_ATTEMPT": "2"},
		"--server-url", "https://acme.ghe.com", "--ca-file", ca, "--ready-file", ready, "--log-file", logFile,
		"--resolve", "api.acme.ghe.com:443:"+hp, "--resolve", "copilot-api.acme.ghe.com:443:"+hp)

	var line map[string]any
	if err := json.Unmarshal([]byte(r.readyLine), &line); err != nil || len(line) != 2 || line["url"] == nil || line["pid"] == nil {
		t.Fatalf("ready line %q, want exactly {url, pid}", r.readyLine)
	}
	info, err := os.Stat(ready)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("ready file mode %v, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(ready)
	var rf serveReady
	if err := json.Unmarshal(data, &rf); err != nil {
		t.Fatal(err)
	}
	if rf.URL != line["url"] || !strings.HasPrefix(rf.ClientToken, "ghs_") || len(rf.ClientToken) != 40 {
		t.Fatalf("ready file %s: want the same url and a generated ghs_ token of 40 characters", data)
	}
	if parsed, err := parseReady(data); err != nil || parsed.URL != rf.URL {
		t.Errorf("start's parseReady cannot read serve's ready file: %v", err)
	}

	get := func(path, tok string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, rf.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := get("/models", rf.ClientToken); code != 200 {
		t.Fatalf("/models = %d %s", code, b)
	}
	if code, _ := get("/models", ""); code != 401 {
		t.Errorf("/models without the client token = %d, want 401", code)
	}
	resp, err := http.Post(rf.URL+"/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, rf.URL+"/chat/completions", strings.NewReader(`{"model":"gpt-4.1","stream":true,"messages":[]}`))
	req.Header.Set("Authorization", "token "+rf.ClientToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(stream), `"content":"Hell"`) || !strings.Contains(string(stream), "[DONE]") {
		t.Errorf("stream through serve: %q", stream)
	}
	for _, rq := range ft.Requests() {
		if rq.Auth != "real" {
			t.Errorf("%s reached the tenant with a %q credential, want the real token", rq.Path, rq.Auth)
		}
	}
	if rs := ft.Requests(); len(rs) < 3 || rs[0].Path != "/copilot_internal/user" || rs[1].Host != "copilot-api.acme.ghe.com" ||
		rs[1].Header.Get("X-Interaction-Id") != "77-2" {
		t.Errorf("tenant saw %+v, want the discovery look-up then /models at copilot-api.acme.ghe.com with X-Interaction-Id 77-2", rs[:min(2, len(rs))])
	}

	code, b := get(proxy.StatsPath, rf.ClientToken)
	var st proxy.Stats
	if err := json.Unmarshal(b, &st); err != nil || code != 200 {
		t.Fatalf("stats = %d %s", code, b)
	}
	if st.Discovery.State != "used" || st.ClientAuthFailures != 2 {
		t.Errorf("stats discovery %+v, auth failures %d; want used and 2", st.Discovery, st.ClientAuthFailures)
	}

	if code := r.stop(t); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0; stderr: %s", code, r.stderr.String())
	}
	logData, _ := os.ReadFile(logFile)
	if !bytes.Contains(logData, []byte(`"msg":"request"`)) {
		t.Errorf("log file has no request lines: %s", logData)
	}
	for where, b := range map[string]string{"stdout": r.stdout.String(), "stderr": r.stderr.String(), "log": string(logData)} {
		for _, secret := range []string{serveRealToken, rf.ClientToken, "tid=fake"} {
			if strings.Contains(b, secret) {
				t.Errorf("%s contains a secret (%.8s…)", where, secret)
			}
		}
	}
	if n := strings.Count(r.stdout.String(), "\n"); n != 1 {
		t.Errorf("stdout has %d lines, want exactly the ready line", n)
	}
}

// A client token from the environment is used as is and never written to the ready file; a
// proxy pointed at the fake by URL (--api-url, --copilot-api-target) needs no --resolve.
func TestServeClientTokenFromEnv(t *testing.T) {
	t.Parallel()
	ft, dir, ca := serveFake(t)
	client := "ghs_ClientTokenFromTheEnvironment0000001"
	ready := filepath.Join(dir, "ready.json")
	r := startServe(t, map[string]string{"MY_TOKEN": serveRealToken, envClientToken: client},
		"--token-env", "MY_TOKEN", "--server-url", "https://acme.ghe.com", "--api-url", ft.URL(),
		"--copilot-api-target", ft.URL(), "--ca-file", ca, "--ready-file", ready, "--auth-scheme", "token")
	data, _ := os.ReadFile(ready)
	if strings.Contains(string(data), client) || strings.Contains(string(data), "client_token") {
		t.Errorf("ready file carries a client token that came from the environment: %s", data)
	}
	var rf serveReady
	_ = json.Unmarshal(data, &rf)
	req, _ := http.NewRequest(http.MethodGet, rf.URL+"/copilot_internal/user", nil)
	req.Header.Set("Authorization", "Bearer "+client)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/copilot_internal/user = %d", resp.StatusCode)
	}
	if rs := ft.Requests(); len(rs) != 1 || rs[0].AuthScheme != "token" || rs[0].Auth != "real" {
		t.Errorf("tenant saw %+v, want one request with the real token in the token scheme (--auth-scheme token; no discovery with an explicit target)", rs)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// serve refuses to start, clearly and without echoing a secret, when it cannot work.
func TestServeRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	realEnv := map[string]string{"COPILOT_GITHUB_TOKEN": serveRealToken}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no token", map[string]string{}, []string{"--ready-file", ready}, 1, "COPILOT_GITHUB_TOKEN"},
		{"named token variable unset", realEnv, []string{"--token-env", "OTHER_TOKEN", "--ready-file", ready}, 1, "OTHER_TOKEN"},
		{"generated client token with nowhere to report it", realEnv, nil, 1, "--ready-file"},
		{"client token equals the real one", map[string]string{"COPILOT_GITHUB_TOKEN": serveRealToken, envClientToken: "token " + serveRealToken}, nil, 1, "must be a different value"},
		{"bad auth scheme", realEnv, []string{"--ready-file", ready, "--auth-scheme", "basic"}, 1, "auto, bearer or token"},
		{"bad ca file", realEnv, []string{"--ready-file", ready, "--ca-file", bad}, 1, "no PEM certificate"},
		{"missing ca file", realEnv, []string{"--ready-file", ready, "--ca-file", filepath.Join(dir, "nope.pem")}, 1, "--ca-file"},
		{"bad server url", realEnv, []string{"--ready-file", ready, "--server-url", "ftp://x"}, 1, "server-url"},
		{"bad resolve", realEnv, []string{"--resolve", "nonsense"}, 2, "HOST:PORT:ADDR"},
		{"stray argument", realEnv, []string{"extra"}, 2, "unexpected argument"},
		{"short client token off loopback", map[string]string{"COPILOT_GITHUB_TOKEN": serveRealToken, envClientToken: "short"},
			[]string{"--listen", "0.0.0.0:0"}, 1, "20 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := runServeFail(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d naming %q", code, out, errs, tc.code, tc.want)
			}
			if strings.Contains(errs, serveRealToken) {
				t.Errorf("stderr shows the token")
			}
		})
	}
}

func TestReadyURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, addr, want string }{
		{"0.0.0.0:8790", "[::]:8790", "http://127.0.0.1:8790"},
		{":0", "[::]:41000", "http://127.0.0.1:41000"},
		{"[::]:0", "[::]:41000", "http://[::1]:41000"},
		{"127.0.0.1:0", "127.0.0.1:41000", "http://127.0.0.1:41000"},
		{"10.1.2.3:9", "10.1.2.3:9", "http://10.1.2.3:9"},
		{"localhost:0", "127.0.0.1:41000", "http://127.0.0.1:41000"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := readyURL(tc.listen, addr); got != tc.want {
			t.Errorf("readyURL(%q, %s) = %q, want %q", tc.listen, tc.addr, got, tc.want)
		}
	}
}
