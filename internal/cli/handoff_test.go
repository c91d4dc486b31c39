//go:build linux

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/daemon"
)

// pipeFD returns the number of a close-on-exec descriptor for the read end of a pipe holding
// data, its write end closed: serve owns (and closes) it from then on.
func pipeFD(t *testing.T, data string) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	nfd, errno := -1, syscall.Errno(0)
	if err := rc.Control(func(fd uintptr) {
		r1, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		nfd, errno = int(r1), e
	}); err != nil || errno != 0 {
		t.Fatal(err, errno)
	}
	return nfd
}

func secretsJSON(real, client string) string {
	b, _ := json.Marshal(serveSecrets{GitHubToken: real, ClientToken: client})
	return string(b)
}

// With --secrets-fd the tokens come from the pipe only: token variables in the environment are
// not used (a decoy client token gets 401, the tenant sees only the piped real token), they are
// named in a warning and dropped from serve's environment, and the client token it was given is
// not written to the ready file.
func TestServeTakesItsTokensFromThePipe(t *testing.T) {
	t.Parallel()
	ft, dir, ca := serveFake(t)
	hp := strings.TrimPrefix(ft.URL(), "https://")
	const client = "ghs_ClientTokenFromThePipe00000000000001"
	const decoyReal, decoyClient = "gho_DecoyRealTokenFromTheEnvironment0001", "ghs_DecoyClientTokenFromTheEnvironment01"
	env := MapEnv(map[string]string{envRealToken: decoyReal, envClientToken: decoyClient, "GITHUB_RUN_ID": "9"})
	ready, logFile := filepath.Join(dir, "ready.json"), filepath.Join(dir, "proxy.log")
	r := startServeEnv(t, env, "--secrets-fd", fmt.Sprint(pipeFD(t, secretsJSON(serveRealToken, client))),
		"--server-url", "https://acme.ghe.com", "--ca-file", ca, "--ready-file", ready, "--log-file", logFile,
		"--resolve", "api.acme.ghe.com:443:"+hp, "--resolve", "copilot-api.acme.ghe.com:443:"+hp)

	for _, name := range []string{envRealToken, envClientToken} {
		if v := env.Getenv(name); v != "" {
			t.Errorf("%s is still in serve's environment", name)
		}
	}
	if env.Getenv("GITHUB_RUN_ID") != "9" {
		t.Error("serve dropped a variable that holds no token")
	}
	data, _ := os.ReadFile(ready)
	var rf serveReady
	if err := json.Unmarshal(data, &rf); err != nil || rf.ClientToken != "" {
		t.Fatalf("ready file %s (%v): want url and pid, no client token (start gave it)", data, err)
	}
	get := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, rf.URL+"/models", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(client); code != http.StatusOK {
		t.Errorf("/models with the piped client token = %d, want 200", code)
	}
	if code := get(decoyClient); code != http.StatusUnauthorized {
		t.Errorf("/models with the environment's client token = %d, want 401", code)
	}
	for _, rq := range ft.Requests() {
		if rq.Auth != "real" {
			t.Errorf("%s reached the tenant with a %q credential, want the piped real token", rq.Path, rq.Auth)
		}
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	logData, _ := os.ReadFile(logFile)
	for _, name := range []string{envRealToken, envClientToken} {
		if !strings.Contains(string(logData), `"variable":"`+name+`"`) {
			t.Errorf("the log does not warn about the unused %s:\n%s", name, logData)
		}
	}
	for _, secret := range []string{serveRealToken, client, decoyReal, decoyClient} {
		for where, b := range map[string]string{"stdout": r.stdout.String(), "stderr": r.stderr.String(), "log": string(logData)} {
			if strings.Contains(b, secret) {
				t.Errorf("%s contains a token (%.8s…)", where, secret)
			}
		}
	}
}

// Run by hand, serve reads its tokens from the environment as before, then drops them from it.
func TestServeDropsTokenVariablesItRead(t *testing.T) {
	t.Parallel()
	ft, dir, ca := serveFake(t)
	env := MapEnv(map[string]string{"MY_TOKEN": serveRealToken, envClientToken: "ghs_ClientTokenFromTheEnvironment0000001"})
	r := startServeEnv(t, env, "--token-env", "MY_TOKEN", "--api-url", ft.URL(), "--copilot-api-target", ft.URL(),
		"--server-url", "https://acme.ghe.com", "--ca-file", ca, "--ready-file", filepath.Join(dir, "ready.json"))
	for _, name := range []string{"MY_TOKEN", envClientToken} {
		if env.Getenv(name) != "" {
			t.Errorf("%s is still in serve's environment after it was read", name)
		}
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}

// Every way the pipe can be wrong stops serve before it listens, with a message that says what
// it wanted and quotes nothing of what it got.
func TestServeRefusesABadSecretsPipe(t *testing.T) {
	t.Parallel()
	_, dir, _ := serveFake(t)
	ready := filepath.Join(dir, "ready.json")
	pipe := func(data string) func(*testing.T) string {
		return func(t *testing.T) string { return fmt.Sprint(pipeFD(t, data)) }
	}
	good := secretsJSON(serveRealToken, "ghs_ClientTokenFromThePipe00000000000001")
	cases := []struct {
		name string
		fd   func(*testing.T) string
		args []string
		want string
	}{
		{"pipe closed before anything was written", pipe(""), nil, "empty pipe"},
		{"the bare token instead of JSON", pipe(serveRealToken), nil, "not JSON (syntax error at byte 1)"},
		{"cut short", pipe(good[:len(good)/2]), nil, "cut short"},
		{"a JSON string", pipe(`"` + serveRealToken + `"`), nil, "not a JSON object"},
		{"a number for the token", pipe(`{"github_token":12}`), nil, "github_token that is not a string"},
		{"an unknown field", pipe(`{"github_token":"` + serveRealToken + `","` + serveRealToken + `":"x"}`), nil, "a field other than github_token and client_token"},
		{"two objects", pipe(good + good), nil, "followed by more data"},
		{"no github token", pipe(`{"client_token":"ghs_ClientTokenFromThePipe00000000000001"}`), nil, "no GitHub token: set github_token on --secrets-fd"},
		{"the same token twice", pipe(secretsJSON(serveRealToken, serveRealToken)), nil, "must be a different value"},
		{"with --token-env", pipe(good), []string{"--token-env", "X"}, "--token-env and --secrets-fd both given"},
		{"stdout", func(*testing.T) string { return "1" }, nil, "--secrets-fd 1 is serve's own output"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--secrets-fd", tc.fd(t), "--ready-file", ready, "--server-url", "https://acme.ghe.com"}, tc.args...)
			code, out, errs := runServeFail(t, map[string]string{envRealToken: "gho_EnvironmentTokenNotToBeUsed000000001"}, args...)
			if code != 1 || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 naming %q", code, out, errs, tc.want)
			}
			if strings.Contains(errs, serveRealToken) || strings.Contains(errs, "gho_EnvironmentToken") {
				t.Errorf("the message quotes a token: %s", errs)
			}
		})
	}
}

// The same refusals reach start's user from a real detached serve: start's own pipe is always
// well-formed, so this hands a broken one to the serve start would run, through daemon.Start,
// and reads what start would show (the log's tail).
func TestDetachedServeRefusesABadSecretsPipe(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data *string // nil: no pipe at all
		want string
	}{
		{"pipe closed early", ptr(""), "empty pipe"},
		{"garbage", ptr("\x00\x01" + serveRealToken), "not JSON"},
		{"no pipe passed", nil, "not a pipe: the parent must pass there the read end of a pipe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := daemon.Options{
				Path: exe, Args: []string{"serve", "--secrets-fd", "3", "--ready-file", filepath.Join(dir, "ready.json"), "--server-url", "https://acme.ghe.com"},
				Env: []string{"PATH=" + os.Getenv("PATH")}, LogFile: filepath.Join(dir, "proxy.log"), ReadyFile: filepath.Join(dir, "ready.json"),
				Timeout: 10 * time.Second,
			}
			if tc.data != nil {
				pipe, err := daemon.HandoffPipe([]byte(*tc.data))
				if err != nil {
					t.Fatal(err)
				}
				defer pipe.Close()
				o.ExtraFiles = []*os.File{pipe}
			}
			st, err := daemon.Start(context.Background(), o)
			if err == nil {
				_, _ = daemon.Stop(context.Background(), st.Handle, time.Second)
				t.Fatal("serve started")
			}
			var se *daemon.StartError
			if !errors.As(err, &se) || !strings.Contains(se.Reason, "exited before it was ready") || !strings.Contains(se.LogTail, tc.want) {
				t.Fatalf("err = %v; want serve's exit with %q in its log", err, tc.want)
			}
			if strings.Contains(se.LogTail, serveRealToken) {
				t.Errorf("the log quotes the token: %s", se.LogTail)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
