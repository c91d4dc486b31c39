package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/actions"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current output")

// detectGoldenDir is the repository's testdata/detect.
const detectGoldenDir = "../../testdata/detect"

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenIn(t, detectGoldenDir, name, got)
}

// goldenIn compares got with the golden file dir/name (or rewrites it with -update).
func goldenIn(t *testing.T, dir, name, got string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./internal/cli -run %s -update to create it): %v", t.Name(), err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (rerun with -update if the change is intended)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// fakeToken looks like an installation token; it is random enough to appear nowhere by chance.
const fakeToken = "ghs_9xQ2mV7pL4kR8tZ1wN6cB3yH5jD0fG2sA4eU"

// detectRun is one in-process run of detect.
type detectRun struct {
	code           int
	stdout, stderr string
	files          map[string]string // environment file variable → content
}

// runDetectWith runs detect with env; when step is true it gets temp GITHUB_OUTPUT, GITHUB_ENV,
// GITHUB_STATE and GITHUB_STEP_SUMMARY files, as on a runner.
func runDetectWith(t *testing.T, env map[string]string, step bool, args ...string) detectRun {
	t.Helper()
	env = maps(env)
	if step {
		dir := t.TempDir()
		for _, f := range []string{actions.FileOutput, actions.FileEnv, actions.FileState, actions.FileSummary} {
			p := filepath.Join(dir, strings.ToLower(f))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			env[f] = p
		}
		env["GITHUB_ACTIONS"] = "true"
	}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), append([]string{"detect"}, args...), MapEnv(env), &stdout, &stderr)
	r := detectRun{code: code, stdout: stdout.String(), stderr: stderr.String(), files: map[string]string{}}
	if step {
		for _, f := range []string{actions.FileOutput, actions.FileEnv, actions.FileState, actions.FileSummary} {
			b, err := os.ReadFile(env[f])
			if err != nil {
				t.Fatal(err)
			}
			r.files[f] = string(b)
		}
	}
	return r
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+5)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// parseEnvFile reads an environment file back strictly, refusing duplicates.
func parseEnvFile(t *testing.T, data string) map[string]string {
	t.Helper()
	entries, err := actions.ParseFile([]byte(data))
	if err != nil {
		t.Fatalf("parse environment file: %v\n%s", err, data)
	}
	m := map[string]string{}
	for _, e := range entries {
		if _, dup := m[e.Name]; dup {
			t.Fatalf("%s written twice", e.Name)
		}
		m[e.Name] = e.Value
	}
	return m
}

// The runner context of three jobs, one per platform.
var detectScenarios = []struct {
	name string
	env  map[string]string
}{
	{"dotcom", map[string]string{
		"GITHUB_SERVER_URL": "https://github.com", "GITHUB_API_URL": "https://api.github.com",
		"GITHUB_GRAPHQL_URL": "https://api.github.com/graphql",
	}},
	{"tenant", map[string]string{
		"GITHUB_SERVER_URL": "https://acme.ghe.com", "GITHUB_API_URL": "https://api.acme.ghe.com",
		"GITHUB_GRAPHQL_URL": "https://api.acme.ghe.com/graphql",
		"INPUT_PROXY_HOST":   "host.docker.internal", "INPUT_EXTRA_DOMAINS": "registry.npmjs.org,\n*.pythonhosted.org",
		"INPUT_EXPORT_ENV": "true",
	}},
	{"ghes", map[string]string{
		"GITHUB_SERVER_URL": "https://github.internal:8443", "GITHUB_API_URL": "https://github.internal:8443/api/v3",
		"GITHUB_GRAPHQL_URL": "https://github.internal:8443/api/graphql", "INPUT_EXPORT_ENV": "true",
	}},
}

func TestDetectGoldenFormats(t *testing.T) {
	t.Parallel()
	for _, sc := range detectScenarios {
		for _, format := range []string{"json", "text", "comma", "lines", "harden-runner", "gh-aw"} {
			t.Run(sc.name+"/"+format, func(t *testing.T) {
				t.Parallel()
				r := runDetectWith(t, sc.env, false, "--format", format)
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				ext := map[string]string{"json": "json", "gh-aw": "yaml"}[format]
				if ext == "" {
					ext = "txt"
				}
				golden(t, sc.name+"."+format+"."+ext, r.stdout)
			})
		}
	}
}

// TestDetectStep runs detect as an Actions step against real temp files and reads every file
// back with the strict parser.
func TestDetectStep(t *testing.T) {
	t.Parallel()
	for _, sc := range detectScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			env := maps(sc.env)
			env["INPUT_GITHUB_TOKEN"] = "Bearer " + fakeToken
			r := runDetectWith(t, env, true, "--format", "none")
			if r.code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			// Masks come first, every form of the token.
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			var masks []string
			for _, l := range lines {
				if !strings.HasPrefix(l, "::add-mask::") {
					break
				}
				masks = append(masks, strings.TrimPrefix(l, "::add-mask::"))
			}
			for _, f := range []string{fakeToken, "Bearer " + fakeToken, "token " + fakeToken} {
				if !slices.Contains(masks, f) {
					t.Errorf("no mask for %q before other output; masks %q", f, masks)
				}
			}
			for _, l := range lines[len(masks):] {
				if strings.HasPrefix(l, "::add-mask::") {
					t.Errorf("a mask after other output: %q", l)
				}
			}

			out := parseEnvFile(t, r.files[actions.FileOutput])
			var keys []string
			for k := range out {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			wantKeys := []string{"agent-allowed-domains", "allowed-domains", "allowed-domains-list", "allowed-endpoints", "api-url", "copilot-api-url",
				"copilot-host", "gh-host", "platform", "server-url", "telemetry-url", "tenant"}
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("outputs %q, want %q", keys, wantKeys)
			}
			if got, want := strings.Split(out["allowed-domains"], ","), strings.Split(out["allowed-domains-list"], "\n"); len(got) == 0 || len(want) < len(got) {
				t.Errorf("allowed-domains %q vs allowed-domains-list %q", got, want)
			}
			b, _ := json.MarshalIndent(out, "", "  ")
			golden(t, sc.name+".outputs.json", string(b)+"\n")
			golden(t, sc.name+".summary.md", r.files[actions.FileSummary])
			golden(t, sc.name+".annotations.txt", strings.Join(lines[len(masks):], "\n")+"\n")

			envOut := parseEnvFile(t, r.files[actions.FileEnv])
			switch sc.name {
			case "dotcom":
				if len(envOut) != 0 {
					t.Errorf("github.com exported %q", envOut)
				}
			case "tenant":
				if len(envOut) != 1 || envOut["GH_HOST"] != "acme.ghe.com" {
					t.Errorf("tenant exported %q", envOut)
				}
			case "ghes":
				if len(envOut) != 2 || envOut["GH_HOST"] != "github.internal" || envOut["COPILOT_GH_HOST"] != "github.com" {
					t.Errorf("ghes exported %q", envOut)
				}
			}
			if r.files[actions.FileState] != "" {
				t.Errorf("detect wrote state %q", r.files[actions.FileState])
			}
		})
	}
}

func TestDetectJSONKeys(t *testing.T) {
	t.Parallel()
	r := runDetectWith(t, map[string]string{"INPUT_SERVER_URL": "https://ACME.ghe.com/x/"}, false, "--format=json")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"agent_allowed_domains", "agent_blocked_domains", "allowed_domains", "api_url", "copilot_api_url", "copilot_host", "gh_host", "platform", "server_url", "telemetry_url", "tenant"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %q, want %q", keys, want)
	}
	if m["platform"] != "ghe.com" || m["tenant"] != "acme" || m["api_url"] != "https://api.acme.ghe.com" {
		t.Errorf("json %v", m)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
}

// TestDetectAgentList: with the proxy (the default) the sandboxed agent's list is the proxy host and
// extra-domains and awf-args is left to start (which knows the port); without it the agent needs
// the whole list, and detect writes awf-args itself. A proxied host listed on purpose warns.
func TestDetectAgentList(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, startProxy, extra string
		agent, awf              string
		awfSet                  bool
		warn                    string
	}{
		{name: "proxy (default)", agent: "host.docker.internal,registry.npmjs.org", extra: "registry.npmjs.org"},
		{name: "proxy, a proxied host on purpose", extra: "api.acme.ghe.com", agent: "api.acme.ghe.com,host.docker.internal",
			warn: "extra-domains lists api.acme.ghe.com, which the proxy serves"},
		{name: "no proxy", startProxy: "false", agent: "acme.ghe.com,api.acme.ghe.com,copilot-api.acme.ghe.com,copilot-telemetry-service.acme.ghe.com,host.docker.internal",
			awfSet: true, awf: "--allow-domains acme.ghe.com,api.acme.ghe.com,copilot-api.acme.ghe.com,copilot-telemetry-service.acme.ghe.com,host.docker.internal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := runDetectWith(t, map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "INPUT_PROXY_HOST": "host.docker.internal",
				"INPUT_EXTRA_DOMAINS": c.extra, "INPUT_START_PROXY": c.startProxy}, true, "--format", "none")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			out := parseEnvFile(t, r.files[actions.FileOutput])
			if out["agent-allowed-domains"] != c.agent {
				t.Errorf("agent-allowed-domains = %q, want %q", out["agent-allowed-domains"], c.agent)
			}
			if awf, set := out["awf-args"]; set != c.awfSet || awf != c.awf {
				t.Errorf("awf-args = %q (set %v), want %q (set %v)", awf, set, c.awf, c.awfSet)
			}
			if got := strings.Contains(r.stdout, "::warning"); got != (c.warn != "") || !strings.Contains(r.stdout, c.warn) {
				t.Errorf("warning %q expected: %v; stdout:\n%s", c.warn, c.warn != "", r.stdout)
			}
		})
	}
	if r := runDetectWith(t, map[string]string{"INPUT_START_PROXY": "maybe"}, true, "--format", "none"); r.code != 1 || !strings.Contains(r.stdout, "start-proxy") {
		t.Errorf("start-proxy: maybe: exit %d, stdout %q; want 1 and an annotation naming the input", r.code, r.stdout)
	}
}

// TestDetectPrecedence: flags win over INPUT_*, which win over the runner's GITHUB_*; the
// runner's API URL is used only for the runner's own server.
func TestDetectPrecedence(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		key  string
		want string
	}{
		{"runner server", map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com"}, nil, "server_url", "https://acme.ghe.com"},
		{"input beats runner", map[string]string{"GITHUB_SERVER_URL": "https://github.com", "INPUT_SERVER_URL": "https://acme.ghe.com"}, nil, "server_url", "https://acme.ghe.com"},
		{"flag beats input", map[string]string{"INPUT_SERVER_URL": "https://acme.ghe.com"}, []string{"--server-url", "https://beta.ghe.com"}, "server_url", "https://beta.ghe.com"},
		{"empty input falls back", map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "INPUT_SERVER_URL": "  "}, nil, "gh_host", "acme.ghe.com"},
		{"runner API URL for its own server", map[string]string{"GITHUB_SERVER_URL": "https://ghes.corp", "GITHUB_API_URL": "https://api.ghes.corp"}, nil, "api_url", "https://api.ghes.corp"},
		{"runner API URL ignored for another server", map[string]string{"GITHUB_SERVER_URL": "https://github.com", "GITHUB_API_URL": "https://api.github.com", "INPUT_SERVER_URL": "https://acme.ghe.com"}, nil, "api_url", "https://api.acme.ghe.com"},
		{"api-url input wins", map[string]string{"GITHUB_SERVER_URL": "https://ghes.corp", "GITHUB_API_URL": "https://ghes.corp/api/v3", "INPUT_API_URL": "https://api2.ghes.corp"}, nil, "api_url", "https://api2.ghes.corp"},
		{"copilot-host input", map[string]string{"GITHUB_SERVER_URL": "https://ghes.corp", "INPUT_COPILOT_HOST": "acme.ghe.com"}, nil, "copilot_api_url", "https://copilot-api.acme.ghe.com"},
		{"copilot-api-target flag", nil, []string{"--copilot-api-target", "https://127.0.0.1:9443"}, "copilot_api_url", "https://127.0.0.1:9443"},
		{"platform input", map[string]string{"INPUT_SERVER_URL": "https://acme.test", "INPUT_PLATFORM": "ghe.com"}, nil, "tenant", "acme"},
		{"no context at all", nil, nil, "platform", "github.com"},
	}
	exportCases := []struct {
		env  map[string]string
		want map[string]string
	}{
		{map[string]string{"GITHUB_SERVER_URL": "https://github.com", "INPUT_COPILOT_HOST": "acme.ghe.com"}, map[string]string{"COPILOT_GH_HOST": "acme.ghe.com"}},
		{map[string]string{"GITHUB_SERVER_URL": "https://ghes.corp", "INPUT_COPILOT_HOST": "acme.ghe.com"}, map[string]string{"GH_HOST": "ghes.corp", "COPILOT_GH_HOST": "acme.ghe.com"}},
		{map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "INPUT_EXPORT_ENV": "false"}, map[string]string{}},
		{map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "INPUT_EXPORT_ENV": "true"}, map[string]string{"GH_HOST": "acme.ghe.com"}},
		{map[string]string{"GITHUB_SERVER_URL": "https://github.com"}, map[string]string{}},
	}
	for _, tc := range exportCases {
		env := maps(tc.env)
		if env["INPUT_EXPORT_ENV"] == "" {
			env["INPUT_EXPORT_ENV"] = "TRUE"
		}
		r := runDetectWith(t, env, true, "--format", "none")
		got := parseEnvFile(t, r.files[actions.FileEnv])
		if r.code != 0 || len(got) != len(tc.want) {
			t.Errorf("%v: exit %d, exported %q, want %q", tc.env, r.code, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%v: %s=%q, want %q", tc.env, k, got[k], v)
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runDetectWith(t, tc.env, false, append(tc.args, "--format", "json")...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
				t.Fatal(err)
			}
			if m[tc.key] != tc.want {
				t.Errorf("%s = %v, want %s", tc.key, m[tc.key], tc.want)
			}
		})
	}
}

// TestDetectBadInput: each bad input stops the step with an error annotation naming the input,
// the problem and an example, exit 1, and nothing in any environment file.
func TestDetectBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		env   map[string]string
		args  []string
		input string
	}{
		{"server-url no host", map[string]string{"INPUT_SERVER_URL": "https://"}, nil, "server-url"},
		{"server-url ftp", map[string]string{"INPUT_SERVER_URL": "ftp://github.com"}, nil, "server-url"},
		{"server-url userinfo", map[string]string{"INPUT_SERVER_URL": "https://me:pw@acme.ghe.com"}, nil, "server-url"},
		{"server-url bare ghe.com", map[string]string{"GITHUB_SERVER_URL": "https://ghe.com"}, nil, "server-url"},
		{"server-url not a URL", nil, []string{"--server-url", "https://%zz"}, "server-url"},
		{"server-url injection", map[string]string{"INPUT_SERVER_URL": "https://github.com\nplatform<<EOF\nghes\nEOF"}, nil, "server-url"},
		{"platform unknown", map[string]string{"INPUT_PLATFORM": "bitbucket"}, nil, "platform"},
		{"platform contradicts tenant", map[string]string{"INPUT_SERVER_URL": "https://acme.ghe.com", "INPUT_PLATFORM": "github.com"}, nil, "platform"},
		{"api-url ftp", map[string]string{"INPUT_API_URL": "ftp://x.example.com"}, nil, "api-url"},
		{"copilot-host ghes", map[string]string{"INPUT_SERVER_URL": "https://ghes.corp", "INPUT_COPILOT_HOST": "ghes.corp"}, nil, "copilot-host"},
		{"copilot-api-target http", map[string]string{"INPUT_COPILOT_API_TARGET": "http://x.example.com"}, nil, "copilot-api-target"},
		{"extra-domains space inside quotes", map[string]string{"INPUT_EXTRA_DOMAINS": `"a.example.com b"`}, nil, "extra-domains"},
		{"extra-domains semicolon", map[string]string{"INPUT_EXTRA_DOMAINS": "a.example.com;curl x"}, nil, "extra-domains"},
		{"extra-domains star", map[string]string{"INPUT_EXTRA_DOMAINS": "*"}, nil, "extra-domains"},
		{"extra-domains star.com", map[string]string{"INPUT_EXTRA_DOMAINS": "ok.example.com,*.com"}, nil, "extra-domains"},
		{"extra-domains IP", map[string]string{"INPUT_EXTRA_DOMAINS": "10.0.0.1"}, nil, "extra-domains"},
		{"extra-domains delimiter injection", map[string]string{"INPUT_EXTRA_DOMAINS": "a.example.com\nghadelimiter_1\nadmin=true"}, nil, "extra-domains"},
		{"proxy-host wildcard", map[string]string{"INPUT_PROXY_HOST": "*.docker.internal"}, nil, "proxy-host"},
		{"proxy-host IP", nil, []string{"--proxy-host", "172.17.0.1"}, "proxy-host"},
		{"proxy-host space", map[string]string{"INPUT_PROXY_HOST": "host docker"}, nil, "proxy-host"},
		{"export-env not boolean", map[string]string{"INPUT_EXPORT_ENV": "yes"}, nil, "export-env"},
		{"token inside server-url", map[string]string{"INPUT_SERVER_URL": "https://" + fakeToken + ".example.com"}, nil, "server-url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := maps(tc.env)
			env["INPUT_GITHUB_TOKEN"] = fakeToken
			r := runDetectWith(t, env, true, tc.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			prefix := "::error title=copilot-route%3A bad input " + tc.input + "::"
			var errLine string
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(l, "::error") {
					errLine = l
				}
			}
			if !strings.HasPrefix(errLine, prefix) {
				t.Errorf("error annotation %q, want prefix %q", errLine, prefix)
			}
			if !strings.Contains(errLine, "for example") || !strings.Contains(errLine, "input "+tc.input) {
				t.Errorf("error annotation %q lacks the input name or an example", errLine)
			}
			for f, content := range r.files {
				if content != "" {
					t.Errorf("%s written on bad input: %q", f, content)
				}
			}
			if !strings.Contains(r.stderr, "bad input "+tc.input) {
				t.Errorf("stderr %q", r.stderr)
			}
		})
	}
}

func TestDetectUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--format", "xml"}, {"--no-such-flag"}, {"extra"}} {
		r := runDetectWith(t, nil, true, args...)
		if r.code != 2 {
			t.Errorf("%q: exit %d, want 2", args, r.code)
		}
		for f, content := range r.files {
			if content != "" {
				t.Errorf("%q: %s written", args, f)
			}
		}
	}
	if r := runDetectWith(t, nil, false, "-h"); r.code != 0 || !strings.Contains(r.stderr, "--extra-domains") && !strings.Contains(r.stderr, "-extra-domains") {
		t.Errorf("-h: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestDetectTokenNeverLeaks runs detect many ways with a token and scans every stream and file
// for it in all its forms. The only place it may appear is an ::add-mask:: line.
func TestDetectTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	forms := []string{fakeToken, "Bearer " + fakeToken, "token " + fakeToken}
	type run struct {
		name string
		env  map[string]string
		args []string
	}
	var runs []run
	for _, sc := range detectScenarios {
		for _, format := range []string{"json", "text", "comma", "lines", "harden-runner", "gh-aw"} {
			runs = append(runs, run{sc.name + "/" + format, sc.env, []string{"--format", format}})
		}
	}
	runs = append(runs,
		run{"token in server-url", map[string]string{"INPUT_SERVER_URL": "https://" + fakeToken + ".corp"}, nil},
		run{"token as server-url", map[string]string{"INPUT_SERVER_URL": fakeToken}, nil},
		run{"upper-cased token in server-url", map[string]string{"INPUT_SERVER_URL": "https://" + strings.ToUpper(fakeToken) + ".corp"}, []string{"--format", "json"}},
		run{"token in extra-domains", map[string]string{"INPUT_EXTRA_DOMAINS": "a.example.com," + fakeToken + ".example.com"}, nil},
		run{"token in proxy-host", map[string]string{"INPUT_PROXY_HOST": fakeToken}, []string{"--format", "json"}},
		run{"token in copilot-api-target", map[string]string{"INPUT_COPILOT_API_TARGET": "https://x.example.com/" + fakeToken}, nil},
		run{"token in platform", map[string]string{"INPUT_PLATFORM": "Bearer " + fakeToken}, nil},
		run{"token in export-env", map[string]string{"INPUT_EXPORT_ENV": fakeToken}, nil},
		run{"token in a flag", nil, []string{"--api-url", "https://" + fakeToken}},
		run{"token as an argument", nil, []string{fakeToken}},
	)
	for _, rn := range runs {
		for _, tokenVar := range []string{"INPUT_GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN"} {
			for _, step := range []bool{true, false} {
				env := maps(rn.env)
				env[tokenVar] = "  token " + fakeToken + "\n"
				r := runDetectWith(t, env, step, rn.args...)
				var streams = map[string]string{"stderr": r.stderr}
				var kept []string
				for _, l := range strings.Split(r.stdout, "\n") {
					if !strings.HasPrefix(l, "::add-mask::") {
						kept = append(kept, l)
					}
				}
				streams["stdout"] = strings.Join(kept, "\n")
				for f, c := range r.files {
					streams[f] = c
				}
				for where, content := range streams {
					for _, f := range forms {
						if strings.Contains(strings.ToLower(content), strings.ToLower(f)) {
							t.Errorf("%s (%s, step %v): %s holds the token form %q:\n%s", rn.name, tokenVar, step, where, f[:8], content)
						}
					}
				}
				if step && !strings.Contains(r.stdout, "::add-mask::"+fakeToken+"\n") {
					t.Errorf("%s: token not masked", rn.name)
				}
			}
		}
	}
}

func TestDetectClassicPATWarns(t *testing.T) {
	t.Parallel()
	r := runDetectWith(t, map[string]string{"COPILOT_GITHUB_TOKEN": "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"}, true, "--format", "none")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if !strings.Contains(r.stdout, "::warning title=copilot-route::The github-token is a classic personal access token") {
		t.Errorf("no classic-PAT warning in %q", r.stdout)
	}
	if !strings.Contains(r.files[actions.FileSummary], "classic personal access token") {
		t.Error("summary lacks the warning")
	}
}

// BenchmarkDetect measures one in-process detect as an Actions step (masks, outputs, summary).
func BenchmarkDetect(b *testing.B) {
	dir := b.TempDir()
	env := map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "INPUT_GITHUB_TOKEN": fakeToken, "INPUT_EXPORT_ENV": "true"}
	for _, f := range []string{actions.FileOutput, actions.FileEnv, actions.FileSummary} {
		env[f] = filepath.Join(dir, f)
	}
	var out, errb bytes.Buffer
	for b.Loop() {
		out.Reset()
		errb.Reset()
		if code := Run(context.Background(), []string{"detect", "--format", "none"}, MapEnv(env), &out, &errb); code != 0 {
			b.Fatal(errb.String())
		}
	}
}
