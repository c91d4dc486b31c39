package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

// runDemo runs the whole flow of the action on this machine, with no credentials and no network
// beyond loopback: the simulated tenant poses as acme.ghe.com; detect, diagnose, start (a real background
// proxy), one streamed Copilot request through the proxy, and stop run as Actions steps would,
// against fake runner files in a temporary directory. It prints what a workflow would see.
func runDemo(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keep := fs.Bool("keep", false, "keep the temporary directory (runner files, proxy log) and print its path")
	serveBinary := fs.String("serve-binary", "", "the copilot-route binary to run serve with (default: this program)")
	if code, ok := parseFlags(fs, args, stderr, "Runs the whole flow of the action on this machine against the simulated tenant (acme.ghe.com on\n"+
		"loopback, no credentials): detect, diagnose, start, one streamed request through the proxy, stop."); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "copilot-route demo: "+format+"\n", a...)
		return 1
	}

	dir, err := os.MkdirTemp("", "copilot-route-demo-")
	if err != nil {
		return fail("create a temporary directory: %v (set TMPDIR to a writable directory)", err)
	}
	if *keep {
		defer fmt.Fprintf(stdout, "\nRunner files and the proxy log are kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	// The fake tenant accepts only this token, so a request that reaches it with anything else
	// (the client token, say) fails: the reply proves the proxy swapped the credential.
	realToken := "gho_" + proxy.NewClientToken().Reveal()[4:]
	tenant, err := faketenant.Start(faketenant.Options{Host: "acme.ghe.com", Token: realToken})
	if err != nil {
		return fail("start the simulated tenant: %v", err)
	}
	defer tenant.Close()
	caFile := filepath.Join(dir, "tenant-ca.pem")
	if err := tenant.WriteCA(caFile); err != nil {
		return fail("%v", err)
	}
	tu, _ := url.Parse(tenant.URL())
	fakeAddr := net.JoinHostPort(tu.Hostname(), tu.Port())

	files := map[string]string{}
	for _, f := range []string{actions.FileOutput, actions.FileEnv, actions.FileSummary} {
		files[f] = filepath.Join(dir, strings.ToLower(f))
		if err := os.WriteFile(files[f], nil, 0o600); err != nil {
			return fail("%v", err)
		}
	}
	runnerEnv := map[string]string{
		"PATH": env.Getenv("PATH"), "HOME": env.Getenv("HOME"), "TMPDIR": env.Getenv("TMPDIR"),
		"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://acme.ghe.com", "GITHUB_API_URL": "https://api.acme.ghe.com",
		"GITHUB_RUN_ID": "1", "RUNNER_TEMP": filepath.Join(dir, "runner-temp"),
		actions.FileOutput: files[actions.FileOutput], actions.FileEnv: files[actions.FileEnv], actions.FileSummary: files[actions.FileSummary],
		"INPUT_GITHUB_TOKEN": realToken,
		"INPUT_CA_FILE":      caFile,
		// The tenant's names lead to the fake's loopback port, as /etc/hosts would.
		"COPILOT_ROUTE_RESOLVE": "api.acme.ghe.com:443:" + fakeAddr + " copilot-api.acme.ghe.com:443:" + fakeAddr,
	}
	if err := os.MkdirAll(runnerEnv["RUNNER_TEMP"], 0o700); err != nil {
		return fail("%v", err)
	}
	step := func(name string, run func(context.Context, Env, []string, io.Writer, io.Writer) int, args ...string) (int, string, time.Duration) {
		// Each step's stdout is what the runner would parse (masks, annotations): kept, not shown,
		// since the mask lines name the secrets they hide.
		var out, errb bytes.Buffer
		t0 := time.Now()
		code := run(ctx, MapEnv(runnerEnv), args, &out, &errb)
		d := time.Since(t0)
		fmt.Fprintf(stdout, "  %-8s exit %d in %s\n", name, code, d.Round(100*time.Microsecond))
		if code != 0 {
			fmt.Fprint(stderr, redactAll(out.String()+errb.String(), realToken))
		}
		return code, errb.String(), d
	}

	fmt.Fprintf(stdout, "Simulated tenant acme.ghe.com at %s (it accepts only its own token).\n", tenant.URL())
	fmt.Fprintln(stdout, "\nSteps, as the action runs them:")
	if code, _, _ := step("detect", runDetect, "--format", "none"); code != 0 {
		return fail("detect failed")
	}
	// As the action does, by default: probe the tenant with the real token and explain it.
	if code, _, _ := step("diagnose", runDiagnose, "--format", "none"); code != 0 {
		return fail("diagnose failed")
	}
	startArgs := []string{}
	if *serveBinary != "" {
		startArgs = append(startArgs, "--serve-binary", *serveBinary)
	}
	if code, _, _ := step("start", runStart, startArgs...); code != 0 {
		return fail("start failed")
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _, _ = step("stop", runStop)
		}
	}()

	outputs := map[string]string{}
	data, err := os.ReadFile(files[actions.FileOutput])
	if err != nil {
		return fail("%v", err)
	}
	entries, err := actions.ParseFile(data)
	if err != nil {
		return fail("the step outputs do not parse: %v", err)
	}
	for _, e := range entries {
		outputs[e.Name] = e.Value
	}
	client := outputs["client-token"]

	fmt.Fprintf(stdout, "  request  POST %s/chat/completions (stream) with the client token:\n           ", outputs["proxy-url"])
	reply, err := demoChat(ctx, outputs["proxy-url"], client, stdout)
	fmt.Fprintln(stdout)
	if err != nil {
		return fail("the streamed request through the proxy failed: %v", err)
	}
	// The proxy counts a request as its handler returns, a moment after the last byte reached us:
	// give the count a moment so the traffic report includes it.
	if st, err := readState(filepath.Join(runnerEnv["RUNNER_TEMP"], "copilot-route", "proxy.json")); err == nil {
		for i := 0; i < 100; i++ {
			if s, err := fetchStats(ctx, st); err == nil && strings.Contains(fmt.Sprint(s.Routes), "/chat/completions") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	code, _, _ := step("stop", runStop)
	stopped = true
	if code != 0 {
		return fail("stop failed")
	}

	// Count the requests that carried a credential (diagnose's /meta probe carries none).
	seen, withReal := 0, 0
	for _, r := range tenant.Requests() {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			continue
		}
		seen++
		if strings.HasSuffix(auth, " "+realToken) {
			withReal++
		}
	}

	fmt.Fprintln(stdout, "\nOutputs (steps.<id>.outputs):")
	for _, e := range entries {
		v := e.Value
		if e.Name == "client-token" || strings.Contains(v, client) {
			v = strings.ReplaceAll(v, client, "***")
		}
		if strings.Contains(v, "\n") {
			fmt.Fprintf(stdout, "  %s:\n    %s\n", e.Name, strings.ReplaceAll(v, "\n", "\n    "))
		} else {
			fmt.Fprintf(stdout, "  %-22s %s\n", e.Name, v)
		}
	}
	fmt.Fprintln(stdout, "\nEgress allowlist for the firewall (allowed-domains-list):")
	for _, d := range strings.Split(outputs["allowed-domains-list"], "\n") {
		fmt.Fprintf(stdout, "  %s\n", d)
	}
	summary, err := os.ReadFile(files[actions.FileSummary])
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, "\nJob summary (markdown):")
	fmt.Fprintln(stdout, strings.Repeat("-", 72))
	fmt.Fprint(stdout, redactAll(string(summary), realToken, client))
	fmt.Fprintln(stdout, strings.Repeat("-", 72))
	fmt.Fprintf(stdout, "\nThe reply %q came through the proxy. The tenant saw %d requests with a credential, %d with the real token;\n"+
		"the agent held only the client token, which the tenant would have refused.\n", reply, seen, withReal)
	return 0
}

// demoChat streams one chat completion through the proxy and echoes the text as it arrives.
func demoChat(ctx context.Context, proxyURL, client string, w io.Writer) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	body := `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"Say hello from the tenant."}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, proxyURL+"/chat/completions", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+client)
	req.Header.Set("Content-Type", "application/json")
	resp, err := loopbackClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var text strings.Builder
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(line), &chunk) == nil && len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
			fmt.Fprint(w, chunk.Choices[0].Delta.Content)
		}
	}
	if err := sc.Err(); err != nil {
		return text.String(), err
	}
	if !done {
		return text.String(), fmt.Errorf("the stream ended without data: [DONE]")
	}
	return text.String(), nil
}

func redactAll(s string, secrets ...string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "***")
		}
	}
	return s
}
