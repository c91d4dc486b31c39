package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/faketenant"
)

// leakForms is every form of a token worth searching for: as is, behind each Authorization
// scheme, and base64-encoded (alone, as Basic credentials, and inside a longer base64 text at
// each of the three byte alignments, where only the middle of the encoding is stable).
func leakForms(tok string) map[string]string {
	forms := map[string]string{
		"raw": tok, "Bearer": "Bearer " + tok, "token": "token " + tok,
		"base64":         base64.StdEncoding.EncodeToString([]byte(tok)),
		"base64url":      base64.RawURLEncoding.EncodeToString([]byte(tok)),
		"basic user":     base64.StdEncoding.EncodeToString([]byte(tok + ":")),
		"basic password": base64.StdEncoding.EncodeToString([]byte("x-access-token:" + tok)),
	}
	for k := 0; k < 3; k++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x00", k) + tok))
		forms[fmt.Sprintf("base64 at offset %d", k)] = enc[4 : len(enc)-4]
	}
	return forms
}

// TestNoSecretInAnythingWritten runs a whole job — detect, start, traffic through the proxy
// (successes and every kind of failure: client refusals, upstream error statuses, a scheme switch,
// a stream cut mid-way, the upstream gone), diagnose and stop — with a recognisable token, then
// searches every byte any of it wrote: stdout, stderr, the runner's output, env and summary files,
// the state, ready and log files, and every reply the agent got. The real token may appear in no
// form anywhere except the runner's ::add-mask:: commands; the client token only in the step
// outputs, the 0600 state file and those mask commands.
func TestNoSecretInAnythingWritten(t *testing.T) {
	t.Parallel()
	r := newStepRunner(t, map[string]string{"INPUT_EXPORT_ENV": "true"})
	real := startRealToken
	written := map[string][]byte{} // what → bytes
	step := func(name string, cmd func(context.Context, Env, []string, io.Writer, io.Writer) int, args ...string) int {
		code, out, errOut := r.run(cmd, args...)
		written[name+" stdout"] = []byte(out)
		written[name+" stderr"] = []byte(errOut)
		return code
	}
	if code := step("detect", runDetect); code != 0 {
		t.Fatalf("detect exit %d: %s", code, written["detect stderr"])
	}
	if code := step("start", runStart); code != 0 {
		t.Fatalf("start exit %d: %s", code, written["start stderr"])
	}
	o := r.outputs(t)
	client, proxyURL := o["client-token"], o["proxy-url"]
	if client == "" || proxyURL == "" {
		t.Fatalf("start gave no client token or proxy URL: %v", o)
	}

	// Traffic, as an agent (or an attacker holding the agent) would send it.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	n := 0
	send := func(method, path, auth, body string) int {
		t.Helper()
		n++
		var rb io.Reader
		if body != "" {
			rb = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, proxyURL+path, rb)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		var sb strings.Builder
		resp, err := hc.Do(req)
		if err != nil {
			written[fmt.Sprintf("reply %d (%s %s) error", n, method, path)] = []byte(err.Error())
			return 0
		}
		_ = resp.Header.Write(&sb)
		b, _ := io.ReadAll(resp.Body) // a cut stream ends with an error: keep what came
		resp.Body.Close()
		written[fmt.Sprintf("reply %d (%s %s)", n, method, path)] = append([]byte(resp.Status+"\n"+sb.String()), b...)
		return resp.StatusCode
	}
	raw := func(req string) {
		n++
		c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.WriteString(c, req)
		b, _ := io.ReadAll(bufio.NewReader(c))
		written[fmt.Sprintf("raw reply %d", n)] = b
	}
	bearer := "Bearer " + client
	chat := `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}],"input":"hi","max_tokens":5}`
	for _, s := range []struct {
		method, path, auth, body string
		want                     int
	}{
		{"GET", "/models", bearer, "", 200},
		{"POST", "/chat/completions", bearer, chat, 200},
		{"POST", "/responses", bearer, chat, 200},
		{"POST", "/v1/messages", bearer, chat, 200},
		{"POST", "/embeddings", bearer, `{"input":"x"}`, 403},
		{"PUT", "/repos/o/r/contents/x", bearer, `{"content":"eA=="}`, 403},
		{"POST", "/graphql", bearer, `{"query":"mutation{x}"}`, 403},
		{"GET", "/copilot_internal/user", bearer, "", 200},
		{"GET", "/copilot_internal/v2/token", bearer, "", 200},
		{"GET", "/_copilot-route/stats", bearer, "", 200},
		{"GET", "/models", "", "", 401},
		{"GET", "/models", "Bearer " + real, "", 401},
		{"GET", "/models", "token " + real, "", 401},
		{"GET", "/models", "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+real)), "", 401},
		{"GET", "/_copilot-route/stats", "Bearer " + real, "", 401},
		{"GET", "/models?access_token=" + client, bearer, "", 400},
		{"GET", "/models?access_token=" + real, bearer, "", 200},
		{"GET", "/%2e%2e/copilot_internal/user", bearer, "", 400},
		{"TRACE", "/models", bearer, "", 400},
	} {
		if got := send(s.method, s.path, s.auth, s.body); got != s.want {
			t.Errorf("%s %s = %d, want %d", s.method, s.path, got, s.want)
		}
	}
	raw("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nAuthorization: Bearer " + client + "\r\nConnection: close\r\n\r\n")
	raw("GET http://evil.example/models HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " + client + "\r\nConnection: close\r\n\r\n")
	raw("POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + client + "\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n")
	raw("POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + client + "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n")

	// Upstream failures, one after the other.
	for _, f := range []struct {
		name   string
		set    func(*faketenant.Behavior)
		method string
		path   string
	}{
		{"500", func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": 500} }, "GET", "/models"},
		{"503", func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": 503} }, "GET", "/models"},
		{"429", func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": 429}; b.RetryAfter = "9" }, "GET", "/models"},
		{"user refused", func(b *faketenant.Behavior) { b.Status = nil; b.UserStatus = 403 }, "GET", "/copilot_internal/user"},
		{"Bearer badly formatted", func(b *faketenant.Behavior) { b.UserStatus = 0; b.RequireScheme = "token" }, "GET", "/models"},
		{"reset mid-stream", func(b *faketenant.Behavior) { b.StreamChunks, b.ResetAfterChunks = 6, 2 }, "POST", "/chat/completions"},
	} {
		r.tenant.Set(f.set)
		body := ""
		if f.method == "POST" {
			body = chat
		}
		send(f.method, f.path, bearer, body)
	}
	r.tenant.Set(func(b *faketenant.Behavior) { b.ResetAfterChunks = 0 })

	// diagnose while the tenant answers (it refuses Bearer now), then with a refused exchange.
	diagArgs := func() []string {
		ca := filepath.Join(r.dir, "ca.pem")
		return []string{"--api-url", r.tenant.URL(), "--copilot-api-target", r.tenant.URL(), "--ca-file", ca, "--format", "json"}
	}
	step("diagnose", runDiagnose, diagArgs()...)
	r.tenant.Set(func(b *faketenant.Behavior) {
		b.ExchangeStatus, b.ExchangeMessage = 403, "Resource not accessible by personal access token"
	})
	step("diagnose refused", runDiagnose, diagArgs()...)

	// The tenant goes away: the proxy's 502s, diagnose against nothing.
	r.tenant.Close()
	send("GET", "/models", bearer, "")
	send("POST", "/chat/completions", bearer, chat)
	step("diagnose unreachable", runDiagnose, diagArgs()...)

	if code := step("stop", runStop); code != 0 {
		t.Fatalf("stop exit %d: %s", code, written["stop stderr"])
	}

	// Every file the job left behind.
	allowedClient := map[string]bool{}
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		written["file "+rel] = b
		switch {
		case p == r.env["GITHUB_OUTPUT"], filepath.Base(p) == "proxy.json", filepath.Base(p) == "ready.json":
			allowedClient["file "+rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"file output", "file summary", "file env", "file runner-temp/copilot-route/proxy.log"} {
		if len(written[must]) == 0 {
			t.Errorf("%s is empty or missing: the scan would prove nothing about it", must)
		}
	}

	var total int
	realForms, clientForms := leakForms(real), leakForms(client)
	for what, b := range written {
		total += len(b)
		text := string(b)
		if strings.HasSuffix(what, " stdout") {
			checkNoLeak(t, what, text, real, client) // masks first, then no token in any line
			var kept []string
			for _, l := range strings.Split(text, "\n") {
				if !strings.HasPrefix(l, "::add-mask::") {
					kept = append(kept, l)
				}
			}
			text = strings.Join(kept, "\n")
		}
		for form, s := range realForms {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the real token (%s form)", what, form)
			}
		}
		if allowedClient[what] {
			continue
		}
		for form, s := range clientForms {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the client token (%s form)", what, form)
			}
		}
	}
	t.Logf("scanned %d bytes in %d places (%d requests through the proxy) for %d forms of each token", total, len(written), n, len(realForms))
}
