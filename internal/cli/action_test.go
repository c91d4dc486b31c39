package cli

import (
	"bufio"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

// actionSteps reads ../../action.yml (line-based: the file is ours and plainly indented) and
// returns the declared inputs and, per step id, the INPUT_* variables its env: sets, each with the
// input it reads.
func actionSteps(t *testing.T) (inputs []string, steps map[string]map[string]string) {
	t.Helper()
	f, err := os.Open("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps = map[string]map[string]string{}
	inputKey := regexp.MustCompile(`^  ([a-z][a-z0-9-]*):\s*$`)
	stepID := regexp.MustCompile(`^    - id: ([a-z-]+)\s*$`)
	envLine := regexp.MustCompile(`^        (INPUT_[A-Z0-9_]+): \$\{\{ inputs\.([a-z0-9-]+) \}\}\s*$`)
	section, step := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 0 && line[0] != ' ' && line[0] != '#' {
			section = strings.TrimSuffix(strings.TrimSpace(line), ":")
		}
		if m := inputKey.FindStringSubmatch(line); m != nil && section == "inputs" {
			inputs = append(inputs, m[1])
		}
		if m := stepID.FindStringSubmatch(line); m != nil {
			step = m[1]
			steps[step] = map[string]string{}
		}
		if m := envLine.FindStringSubmatch(line); m != nil && step != "" {
			steps[step][m[1]] = m[2]
		}
		if strings.Contains(line, "INPUT_") && envLine.FindStringSubmatch(line) == nil && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			t.Errorf("action.yml: an INPUT_ line not of the form `INPUT_NAME: ${{ inputs.name }}`: %q", line)
		}
	}
	return inputs, steps
}

// TestActionPassesEveryInputExplicitly guards what act cannot: act exports INPUT_* to composite
// steps by itself, GitHub does not, so a missing env: line passes under act and breaks on GitHub.
func TestActionPassesEveryInputExplicitly(t *testing.T) {
	t.Parallel()
	inputs, steps := actionSteps(t)
	if len(inputs) < 10 || len(steps) < 3 {
		t.Fatalf("parsed %d inputs and %d steps from action.yml: the parser no longer fits the file", len(inputs), len(steps))
	}
	used := map[string]bool{}
	for id, env := range steps {
		for k, in := range env {
			used[in] = true
			if k != actions.InputEnv(in) {
				t.Errorf("step %s: %s carries inputs.%s; the binary reads it as %s", id, k, in, actions.InputEnv(in))
			}
		}
	}
	for _, in := range inputs {
		if !used[in] {
			t.Errorf("input %s is declared but no step passes it to the binary", in)
		}
	}
	want := map[string][]string{
		"detect": {"github-token", "server-url", "api-url", "copilot-host", "copilot-api-target", "platform", "extra-domains", "proxy-host", "export-env"},
		"start": {"github-token", "server-url", "api-url", "copilot-host", "copilot-api-target", "platform", "proxy-host",
			"extra-domains", "listen", "auth-scheme", "integration-id", "ca-file", "start-proxy", "allow-routes"},
		"check-lock": {"github-token", "check-lock", "server-url", "api-url", "copilot-host", "copilot-api-target", "platform", "ca-file"},
	}
	for _, in := range governanceInputs {
		want["start"] = append(want["start"], in.name)
	}
	for _, in := range detectInputs {
		want["detect"] = append(want["detect"], in.name)
	}
	for id, names := range want {
		sort.Strings(names)
		for _, in := range names {
			if _, ok := steps[id][actions.InputEnv(in)]; !ok {
				t.Errorf("step %s reads input %s but its env: does not set %s", id, in, actions.InputEnv(in))
			}
		}
	}
	if _, ok := steps["resolve"][actions.InputEnv("github-token")]; ok {
		t.Error("the resolve step gets the token; it needs none")
	}
}

// docs/action.md's table of default routes is the proxy's own list, in order.
func TestDocsListTheDefaultRoutes(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/action.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "<!-- default-routes")
	end := strings.Index(doc, "<!-- /default-routes -->")
	if start < 0 || end < start {
		t.Fatal("docs/action.md has no default-routes table")
	}
	var got []string
	for _, l := range strings.Split(doc[start:end], "\n") {
		if strings.HasPrefix(l, "| `") {
			got = append(got, strings.Trim(strings.Split(l, "|")[1], " `"))
		}
	}
	if want := proxy.DefaultRoutes(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("docs/action.md lists\n%s\nthe proxy forwards\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
