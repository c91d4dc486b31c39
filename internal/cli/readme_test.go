package cli

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// README's agent step sets exactly agent-env's variables (for a tenant), each from the output that
// carries its value. (scripts/internal/snippets checks the rest of the snippet against the
// workflow scripts/e2e-awf.sh runs.)
func TestREADMEAgentStepIsAgentEnv(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(md)
	i := strings.Index(text, "      - name: Agent, inside the firewall\n")
	if i < 0 {
		t.Fatal("README.md has no step named 'Agent, inside the firewall'")
	}
	step := text[i:]
	step = step[:strings.Index(step, "\n      - ")]
	line := regexp.MustCompile(`(?m)^          ([A-Z_]+): \$\{\{ steps\.route\.outputs\.([a-z-]+) \}\}$`)
	got := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(step, -1) {
		got[m[1]] = m[2]
	}
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com"})
	if err != nil {
		t.Fatal(err)
	}
	const proxyURL, client = "http://host.docker.internal:8790", "ghs_client"
	var want []string
	for _, kv := range strings.Split(strings.TrimSpace(agentEnv(ep, proxyURL, client)), "\n") {
		k, v, _ := strings.Cut(kv, "=")
		want = append(want, k)
		source := map[string]string{proxyURL: "proxy-url", client: "client-token", ep.GHHost: "gh-host"}[v]
		if got[k] != source {
			t.Errorf("README's agent step sets %s from output %q; agent-env's value is output %q", k, got[k], source)
		}
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		if k != "AWF_ARGS" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		t.Errorf("README's agent step sets %q; agent-env has %q", keys, want)
	}
	if got["AWF_ARGS"] != "awf-args" {
		t.Errorf("AWF_ARGS comes from output %q, want awf-args", got["AWF_ARGS"])
	}
}
