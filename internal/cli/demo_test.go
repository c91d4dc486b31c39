package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/faketenant"
)

// TestDemo runs the README's first command in-process (the proxy is a real background process:
// this test binary re-executed as `serve`, see TestMain) and checks what it shows.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	env := MapEnv(map[string]string{"PATH": "/usr/bin:/bin", "TMPDIR": t.TempDir()})
	if code := runDemo(context.Background(), env, nil, &out, &errb); code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{
		"detect   exit 0", "start    exit 0", "stop     exit 0",
		faketenant.DefaultReplyText,
		"allowed-domains        acme.ghe.com,api.acme.ghe.com,copilot-api.acme.ghe.com",
		"client-token           ***",
		"COPILOT_GITHUB_TOKEN=***",
		"GH_HOST=acme.ghe.com",
		"copilot-route: platform detection",
		"copilot-route: traffic",
		"at stop: terminated",
		"| `/chat/completions` | 1 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`The tenant saw (\d+) requests with a credential, (\d+) with the real token`).FindStringSubmatch(got); m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("the tenant's requests did not all carry the real token: %v", m)
	}
	// Neither token may show: the client token is masked, the real one never printed.
	if regexp.MustCompile(`(gho|ghs)_[A-Za-z0-9]{20,}`).MatchString(got + errb.String()) {
		t.Errorf("a token shows in the demo output:\n%s", got)
	}
	if testing.Verbose() {
		t.Log(got)
	}
}
