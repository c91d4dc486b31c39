package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeTenantReady struct {
	URL    string `json:"url"`
	CAFile string `json:"ca_file"`
	PID    int    `json:"pid"`
	Mode   string `json:"mode"`
}

// startFakeTenantCmd runs the subcommand in-process and returns its ready line and a stop func
// that returns the exit code.
func startFakeTenantCmd(t *testing.T, env Env, args ...string) (fakeTenantReady, *bytes.Buffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := Run(ctx, append([]string{"fake-tenant"}, args...), env, pw, &stderr)
		pw.Close()
		done <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("no ready line (exit %d): %v; stderr: %s", <-done, err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var ready fakeTenantReady
	if err := json.Unmarshal([]byte(line), &ready); err != nil {
		cancel()
		t.Fatalf("ready line %q: %v", line, err)
	}
	stopped := false
	var code int
	stop := func() int {
		if !stopped {
			cancel()
			code = <-done
			stopped = true
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return ready, &stderr, stop
}

func clientTrusting(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func getStatus(t *testing.T, c *http.Client, url, auth string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestFakeTenantCommandServesUntilCancelled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const tok = "gho_clitesttoken000000000000000000000000"
	env := MapEnv(map[string]string{"FAKE_TOKEN": tok})
	ready, _, stop := startFakeTenantCmd(t, env,
		"--ca-out", filepath.Join(dir, "ca.pem"), "--ready-file", filepath.Join(dir, "ready.json"),
		"--token-env", "FAKE_TOKEN", "--mode", "exchange-403", "--request-log", filepath.Join(dir, "requests.jsonl"))
	if !strings.HasPrefix(ready.URL, "https://127.0.0.1:") || ready.PID != os.Getpid() || ready.Mode != "exchange-403" {
		t.Fatalf("ready line %+v", ready)
	}
	if ready.CAFile != filepath.Join(dir, "ca.pem") {
		t.Fatalf("ca_file %q", ready.CAFile)
	}
	fileLine, err := os.ReadFile(filepath.Join(dir, "ready.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fromFile fakeTenantReady
	if err := json.Unmarshal(fileLine, &fromFile); err != nil || fromFile != ready {
		t.Fatalf("ready file %q (%v), want the stdout line %+v", fileLine, err, ready)
	}

	c := clientTrusting(t, ready.CAFile)
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/meta", "", 200},
		{"/copilot_internal/user", "token " + tok, 200},
		{"/copilot_internal/user", "token gho_someoneelse", 401},
		{"/copilot_internal/v2/token", "token " + tok, 403}, // the mode
	} {
		if got := getStatus(t, c, ready.URL+tc.path, tc.auth); got != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.path, got, tc.want)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d after cancel, want 0", code)
	}
	log, err := os.ReadFile(filepath.Join(dir, "requests.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "\n"); n != 4 {
		t.Fatalf("request log has %d lines, want 4", n)
	}
	if strings.Contains(string(log), tok) {
		t.Fatal("the request log holds the token")
	}
	if _, err := c.Get(ready.URL + "/meta"); err == nil {
		t.Fatal("still serving after the context was cancelled")
	}
}

func TestFakeTenantCommandTemporaryCA(t *testing.T) {
	t.Parallel()
	ready, _, stop := startFakeTenantCmd(t, MapEnv(nil), "--reply", "custom")
	if got := getStatus(t, clientTrusting(t, ready.CAFile), ready.URL+"/models", "Bearer ghs_any"); got != 200 {
		t.Fatalf("/models with any token: %d", got)
	}
	stop()
	if _, err := os.Stat(ready.CAFile); !os.IsNotExist(err) {
		t.Fatalf("temporary CA file %s left behind (%v)", ready.CAFile, err)
	}
}

// --any-host: a client that asks for any name (SNI) gets a certificate for it from the same CA.
func TestFakeTenantCommandAnyHost(t *testing.T) {
	t.Parallel()
	for _, anyHost := range []bool{false, true} {
		args := []string{"--request-log", filepath.Join(t.TempDir(), "requests.jsonl")}
		if anyHost {
			args = append(args, "--any-host")
		}
		ready, _, stop := startFakeTenantCmd(t, MapEnv(nil), args...)
		c := clientTrusting(t, ready.CAFile)
		c.Transport.(*http.Transport).TLSClientConfig.ServerName = "api.github.com"
		_, err := c.Get(ready.URL + "/meta")
		if (err == nil) != anyHost {
			t.Errorf("--any-host=%v: GET /meta as api.github.com: err=%v", anyHost, err)
		}
		stop()
	}
}

func TestFakeTenantCommandRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{[]string{"--mode", "nope"}, nil, "unknown --mode"},
		{[]string{"--token-env", "UNSET_VAR"}, nil, "empty variable"},
		{[]string{"extra"}, nil, "unexpected argument"},
		{[]string{"--listen", "127.0.0.1:notaport"}, nil, "listen"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), append([]string{"fake-tenant"}, tc.args...), MapEnv(tc.env), &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tc.wantErr) || stdout.Len() != 0 {
				t.Fatalf("exit %d, stderr %q, stdout %q", code, stderr.String(), stdout.String())
			}
		})
	}
}

func TestFakeTenantCommandModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode, path, auth string
		want             int
	}{
		{"healthy", "/models", "Bearer ghs_x", 200},
		{"seed", "/models", "Bearer ghs_x", 400},
		{"seed", "/models", "token ghs_x", 200},
		{"seed", "/copilot_internal/v2/token", "token ghs_x", 403},
		{"no-seat", "/models", "Bearer ghs_x", 403},
		{"models-400", "/models", "Bearer ghs_x", 400},
		{"bearer-scheme", "/models", "token ghs_x", 400},
	} {
		t.Run(tc.mode+tc.path+tc.auth, func(t *testing.T) {
			t.Parallel()
			ready, _, _ := startFakeTenantCmd(t, MapEnv(nil), "--mode", tc.mode)
			if got := getStatus(t, clientTrusting(t, ready.CAFile), ready.URL+tc.path, tc.auth); got != tc.want {
				t.Fatalf("--mode %s: GET %s with %q: %d, want %d", tc.mode, tc.path, tc.auth, got, tc.want)
			}
		})
	}
	// Every preset is listed in the usage text.
	var stderr bytes.Buffer
	Run(context.Background(), []string{"fake-tenant", "-h"}, MapEnv(nil), io.Discard, &stderr)
	for name := range fakeTenantModes {
		if !strings.Contains(stderr.String(), name) {
			t.Errorf("usage does not list --mode %s", name)
		}
	}
}
