package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// post sends one inference request to the proxy and returns its status and body.
func post(t *testing.T, proxyURL, client, path, model string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":"hi"}],"input":"hi"}`, model)
	req, _ := http.NewRequest(http.MethodPost, proxyURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+client)
	resp, err := loopbackClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The governance inputs reach serve through start, which checks them first; stop reports the
// usage in the summary and as outputs, equal to what the tenant recorded.
func TestStartServeStopGovernance(t *testing.T) {
	t.Parallel()
	r := newStepRunner(t, map[string]string{
		"INPUT_ALLOWED_MODELS":       "claude-*, o4-*\ngpt-5-mini  # included",
		"INPUT_BLOCKED_MODELS":       "claude-opus-*",
		"INPUT_MAX_REQUESTS":         "4",
		"INPUT_MAX_PREMIUM_REQUESTS": "1.33",
		"INPUT_MAX_TOKENS":           "100000",
	})
	code, out, errOut := r.run(runStart)
	if code != 0 {
		t.Fatalf("start exit %d\n%s\n%s", code, out, errOut)
	}
	o := r.outputs(t)
	st, _ := readState(r.statePath())
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
	for _, want := range []string{"--allowed-models\x00claude-*\x00--allowed-models\x00o4-*\x00--allowed-models\x00gpt-5-mini\x00--blocked-models\x00claude-opus-*",
		"--max-requests\x004\x00--max-premium-requests\x001.33\x00--max-tokens\x00100000"} {
		if !bytes.Contains(cmdline, []byte(want)) {
			t.Errorf("serve's argv %q lacks %q", cmdline, want)
		}
	}
	url, client := o["proxy-url"], o["client-token"]
	steps := []struct {
		path, model string
		status      int
		refused     string
	}{
		{"/v1/messages", "claude-opus-4.1", 403, "model-blocked"},
		{"/chat/completions", "gpt-5", 403, "model-not-allowed"},
		{"/v1/messages", "claude-sonnet-4.5", 200, ""}, // premium 1
		{"/chat/completions", "o4-mini", 200, ""},      // 1.33
		{"/responses", "o4-mini", 403, "budget-max-premium-requests"},
		{"/responses", "gpt-5-mini", 200, ""},        // included: still passes
		{"/chat/completions", "gpt-5-mini", 200, ""}, // the 4th request
		{"/chat/completions", "gpt-5-mini", 403, "budget-max-requests"},
	}
	for i, s := range steps {
		status, body := post(t, url, client, s.path, s.model)
		if status != s.status || (s.refused != "" && !strings.Contains(body, `"refused":"`+s.refused+`"`)) {
			t.Fatalf("step %d (%s %s): %d %s, want %d %s", i, s.path, s.model, status, body, s.status, s.refused)
		}
	}
	// Figures are recorded when a request's handler returns, just after the client's last byte.
	for i := 0; ; i++ {
		s, err := fetchStats(context.Background(), st)
		if err == nil && s.Usage.Requests == 4 {
			break
		}
		if i == 500 {
			t.Fatalf("the stats never showed 4 requests: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, out, errOut = r.run(runStop)
	if code != 0 {
		t.Fatalf("stop exit %d\n%s\n%s", code, out, errOut)
	}
	o = r.outputs(t)
	var in, cached, outTok int64
	var premium float64
	for _, u := range r.tenant.Usage() {
		in, cached, outTok, premium = in+u.InputTokens, cached+u.CachedTokens, outTok+u.OutputTokens, premium+u.Premium
	}
	want := map[string]string{"requests": "4", "premium-requests": "1.33", "input-tokens": fmt.Sprint(in), "output-tokens": fmt.Sprint(outTok)}
	for k, v := range want {
		if o[k] != v {
			t.Errorf("output %s = %q, want %q (the tenant's record)", k, o[k], v)
		}
	}
	if fmt.Sprintf("%.2f", premium) != "1.33" || cached == 0 {
		t.Errorf("the tenant recorded premium %v, cached %d", premium, cached)
	}
	sum := r.file(t, "GITHUB_STEP_SUMMARY")
	for _, w := range []string{"### Usage", "| `o4-mini` | 1 | 0.33 |", "| **Total** | **4** | **1.33** |",
		"refused by the model policy", "`max-premium-requests`"} {
		if !strings.Contains(sum, w) {
			t.Errorf("summary lacks %q:\n%s", w, sum)
		}
	}
}

// A bad governance input fails start before any proxy runs, naming the input.
func TestStartRejectsBadGovernanceInputs(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"INPUT_MAX_REQUESTS":         "ten",
		"INPUT_MAX_TOKENS":           "-5",
		"INPUT_MAX_PREMIUM_REQUESTS": "1e3",
		"INPUT_ALLOWED_MODELS":       "gpt 5",
	}
	for env, v := range cases {
		t.Run(env, func(t *testing.T) {
			t.Parallel()
			r := newStepRunner(t, map[string]string{env: v})
			code, out, _ := r.run(runStart)
			input := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "INPUT_")), "_", "-")
			if code != 1 || !strings.Contains(out, "::error") || !strings.Contains(out, "input "+input) {
				t.Errorf("start exit %d, stdout %q; want 1 and an error naming %s", code, out, input)
			}
			if _, err := os.Stat(r.statePath()); err == nil {
				t.Error("a proxy was started")
			}
		})
	}
}

// stop/action.yml declares exactly the outputs stop writes, each read from the step's outputs.
func TestStopActionDeclaresItsOutputs(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../stop/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key := regexp.MustCompile(`^  ([a-z][a-z0-9-]*):\s*$`)
	value := regexp.MustCompile(`^    value: \$\{\{ steps\.stop\.outputs\.([a-z0-9-]+) \}\}\s*$`)
	section, name := "", ""
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	stepID := false
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 0 && line[0] != ' ' && line[0] != '#' {
			section = strings.TrimSuffix(strings.TrimSpace(line), ":")
		}
		if section == "outputs" {
			if m := key.FindStringSubmatch(line); m != nil {
				name = m[1]
			}
			if m := value.FindStringSubmatch(line); m != nil {
				got[name] = m[1]
			}
		}
		stepID = stepID || strings.TrimSpace(line) == "- id: stop"
	}
	if !stepID {
		t.Error("stop/action.yml has no step with id stop")
	}
	if len(got) != len(stopOutputs) {
		t.Errorf("stop/action.yml declares %v, stop writes %v", got, stopOutputs)
	}
	for _, o := range stopOutputs {
		if got[o] != o {
			t.Errorf("output %s: value reads steps.stop.outputs.%q", o, got[o])
		}
	}
}

// docs/action.md documents every input of action.yml and every output of stop.
func TestDocsDescribeEveryInputAndStopOutput(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/action.md")
	if err != nil {
		t.Fatal(err)
	}
	inputs, _ := actionSteps(t)
	for _, name := range append(inputs, stopOutputs...) {
		if !bytes.Contains(b, []byte("| `"+name+"` |")) {
			t.Errorf("docs/action.md has no table row for %s", name)
		}
	}
}

// Premium requests are a decimal to the thousandth, as Copilot's multipliers make them.
func TestPremiumText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		premium float64
		want    string
	}{{0, "0"}, {12.33, "12.33"}, {0.33 * 3, "0.99"}, {20, "20"}, {0.001, "0.001"}} {
		if got := premiumText(tc.premium); got != tc.want {
			t.Errorf("premium %v → %q, want %q", tc.premium, got, tc.want)
		}
	}
}
