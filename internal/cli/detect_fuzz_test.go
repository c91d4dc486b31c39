package cli

import (
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/actions"
)

// FuzzDetectStep runs detect as an Actions step with arbitrary inputs. Whatever they are, it
// exits 0 or 1; on 1 no file is written; on 0 every file parses strictly, holds exactly the
// published outputs once each, and no output but allowed-domains-list spans lines; and the token
// is in no stream or file except its ::add-mask:: lines.
func FuzzDetectStep(f *testing.F) {
	f.Add("https://acme.ghe.com", "", "", "", "", "host.docker.internal", "a.example.com\n*.b.example.com")
	f.Add("https://github.internal:8443", "https://github.internal:8443/api/v3", "acme.ghe.com", "", "auto", "", "")
	f.Add("https://github.com\nplatform<<X\nghes\nX", "", "", "", "", "", "")
	f.Add("", "", "", "https://127.0.0.1:9443", "", "", "x\nghadelimiter_0\nadmin=true")
	f.Add(fakeToken, "", "", "", "", fakeToken, "")
	f.Fuzz(func(t *testing.T, server, api, copilotHost, target, plat, proxyHost, extra string) {
		env := map[string]string{
			"INPUT_SERVER_URL": server, "INPUT_API_URL": api, "INPUT_COPILOT_HOST": copilotHost,
			"INPUT_COPILOT_API_TARGET": target, "INPUT_PLATFORM": plat, "INPUT_PROXY_HOST": proxyHost,
			"INPUT_EXTRA_DOMAINS": extra, "INPUT_EXPORT_ENV": "true", "INPUT_GITHUB_TOKEN": fakeToken,
		}
		r := runDetectWith(t, env, true, "--format", "json")
		switch r.code {
		case 1:
			for name, c := range r.files {
				if c != "" {
					t.Fatalf("exit 1 but %s holds %q", name, c)
				}
			}
		case 0:
			out := parseEnvFile(t, r.files[actions.FileOutput])
			if len(out) != 12 { // detect's outputs (awf-args comes from start while the proxy runs)
				t.Fatalf("%d outputs: %q", len(out), out)
			}
			for k, v := range out {
				if k != "allowed-domains-list" && strings.Contains(v, "\n") {
					t.Fatalf("output %s spans lines: %q", k, v)
				}
			}
			for k, v := range parseEnvFile(t, r.files[actions.FileEnv]) {
				if (k != "GH_HOST" && k != "COPILOT_GH_HOST") || strings.Contains(v, "\n") {
					t.Fatalf("env %s=%q", k, v)
				}
			}
		default:
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var kept []string
		for _, l := range strings.Split(r.stdout, "\n") {
			if !strings.HasPrefix(l, "::add-mask::") {
				kept = append(kept, l)
			}
		}
		all := strings.ToLower(strings.Join(kept, "\n") + r.stderr + r.files[actions.FileOutput] + r.files[actions.FileEnv] + r.files[actions.FileSummary])
		if strings.Contains(all, strings.ToLower(fakeToken)) {
			t.Fatalf("the token leaked")
		}
	})
}
