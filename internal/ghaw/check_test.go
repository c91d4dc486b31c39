package ghaw_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/ghaw"
	"github.com/copilot-route/copilot-route/internal/ghaw/ghawtest"
	"github.com/copilot-route/copilot-route/internal/platform"
)

func endpoints(t *testing.T, server, copilotHost string) platform.Endpoints {
	t.Helper()
	ep, err := platform.Detect(platform.Input{ServerURL: server, CopilotHost: copilotHost})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// fragment is what detect --format gh-aw prints for a platform.
func fragment(t *testing.T, server, copilotHost string) string {
	t.Helper()
	ep := endpoints(t, server, copilotHost)
	l, err := allowlist.For(ep, allowlist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ghaw.Frontmatter(ep, l, "")
}

const route = "steps:\n  - id: route\n    uses: OWNER/copilot-route@v1\n    with:\n      github-token: ${{ secrets.COPILOT_GITHUB_TOKEN }}\n"

// TestCheckCompiledLocks compiles one workflow per case with the pinned compiler and checks its
// lock on a platform: each finding kind from a lock that has exactly that problem, and locks
// that fit (including those awf fixes by itself) with none.
func TestCheckCompiledLocks(t *testing.T) {
	t.Parallel()
	type platformCase struct{ server, copilotHost string }
	var (
		dotcom     = platformCase{"https://github.com", ""}
		tenant     = platformCase{"https://acme.ghe.com", ""}
		ghesTenant = platformCase{"https://github.example.com", "acme.ghe.com"}
		ghesDotcom = platformCase{"https://github.example.com", "github.com"}
	)
	cases := []struct {
		name  string
		fm    string
		on    platformCase
		want  map[string]ghaw.Level // kind → level; empty: the lock fits
		notes []string              // substrings some note (or "why: " + a finding's why) must hold
	}{
		{"fragment-tenant", fragment(t, tenant.server, ""), tenant, nil,
			[]string{"adds acme.ghe.com, api.acme.ghe.com, copilot-api.acme.ghe.com, copilot-telemetry-service.acme.ghe.com", "`Authorization: token …`"}},
		{"fragment-ghes-tenant", fragment(t, ghesTenant.server, ghesTenant.copilotHost), ghesTenant, nil,
			[]string{"https://copilot-api.acme.ghe.com (engine.api-target)"}},
		{"fragment-ghes-dotcom", fragment(t, ghesDotcom.server, ghesDotcom.copilotHost), ghesDotcom, nil, nil},
		{"fragment-dotcom", fragment(t, dotcom.server, ""), dotcom, nil, []string{"`Authorization: Bearer …`"}},
		// awf 0.28.15 derives the tenant's Copilot API and adds its hosts: nothing to flag.
		{"plain-tenant", "engine: copilot\n", tenant, nil, []string{"derived by awf v0.28.15 from GITHUB_SERVER_URL"}},
		{"plain-dotcom", "engine: copilot\n", dotcom, nil, []string{"Copilot CLI 1.0.83 offline"}},
		{"engine", "engine: claude\n", dotcom, map[string]ghaw.Level{ghaw.KindEngine: ghaw.Fail}, nil},
		// GHES with a tenant's Copilot: awf derives api.enterprise.githubcopilot.com.
		{"api-target-ghes-tenant", "engine: copilot\n", ghesTenant, map[string]ghaw.Level{ghaw.KindAPITarget: ghaw.Fail},
			[]string{"derived by awf v0.28.15 for any server other than github.com and *.ghe.com", "why: on GitHub Enterprise Server awf derives"}},
		{"api-target-public-on-tenant", "engine:\n  id: copilot\n  api-target: api.githubcopilot.com\n", tenant,
			map[string]ghaw.Level{ghaw.KindAPITarget: ghaw.Fail}, nil},
		// GHES with github.com's Copilot: the derived enterprise plan host serves only that plan.
		{"api-target-plan-host", "engine: copilot\n", ghesDotcom, map[string]ghaw.Level{ghaw.KindAPITarget: ghaw.Warn}, nil},
		// gh-aw's engines reference's value for a tenant.
		{"rest-host", "engine:\n  id: copilot\n  api-target: api.acme.ghe.com\n", tenant, map[string]ghaw.Level{ghaw.KindRESTHost: ghaw.Fail}, nil},
		// awf v0.24.1 derives the REST host and adds no tenant host.
		{"allowlist-old-awf", "engine: copilot\nsandbox:\n  agent:\n    version: v0.24.1\n", tenant,
			map[string]ghaw.Level{ghaw.KindAllowlist: ghaw.Fail, ghaw.KindRESTHost: ghaw.Fail}, nil},
		{"token-ghes", "engine: copilot\npermissions:\n  contents: read\n  copilot-requests: write\n", ghesDotcom,
			map[string]ghaw.Level{ghaw.KindToken: ghaw.Fail, ghaw.KindAPITarget: ghaw.Warn}, nil},
		{"token-on-its-own-tenant", "engine: copilot\npermissions:\n  contents: read\n  copilot-requests: write\n", tenant, nil, nil},
		{"proxy-env", "engine:\n  id: copilot\n  env:\n    COPILOT_PROVIDER_BASE_URL: ${{ steps.route.outputs.proxy-url }}\n    COPILOT_API_URL: ${{ steps.route.outputs.proxy-url }}\n" + route,
			dotcom, map[string]ghaw.Level{ghaw.KindProxyEnv: ghaw.Fail, ghaw.KindProxyUnused: ghaw.Warn}, nil},
		{"proxy-unused", "engine: copilot\n" + route, dotcom, map[string]ghaw.Level{ghaw.KindProxyUnused: ghaw.Warn}, nil},
	}
	workflows := map[string]string{}
	for _, c := range cases {
		fm := c.fm
		if !strings.Contains(fm, "permissions:") {
			fm = ghawtest.Base + fm
		} else {
			fm = "on:\n  workflow_dispatch:\n" + fm
		}
		workflows[c.name] = fm
	}
	locks := ghawtest.Compile(t, workflows)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l, err := ghaw.ParseLock(locks[c.name])
			if err != nil {
				t.Fatal(err)
			}
			rep := ghaw.Check(l, endpoints(t, c.on.server, c.on.copilotHost))
			got := map[string]ghaw.Level{}
			for _, f := range rep.Findings {
				if _, dup := got[f.Kind]; dup && f.Kind != ghaw.KindProxyEnv {
					t.Errorf("kind %s reported twice", f.Kind)
				}
				if got[f.Kind] != ghaw.Fail {
					got[f.Kind] = f.Level
				}
				if f.What == "" || f.Why == "" || f.Fix == "" {
					t.Errorf("finding %s lacks what, why or fix: %+v", f.Kind, f)
				}
			}
			if len(got) != len(c.want) {
				t.Errorf("findings %v, want %v\n%s", got, c.want, describe(rep))
			}
			for k, lv := range c.want {
				if got[k] != lv {
					t.Errorf("finding %s = %q, want %q\n%s", k, got[k], lv, describe(rep))
				}
			}
			if rep.Fits() != (len(c.want) == 0) {
				t.Errorf("Fits() = %v with findings %v", rep.Fits(), got)
			}
			var whys []string
			for _, f := range rep.Findings {
				whys = append(whys, "why: "+f.Why)
			}
			for _, n := range c.notes {
				if !slices.ContainsFunc(append(whys, rep.Notes...), func(s string) bool { return strings.Contains(s, n) }) {
					t.Errorf("no note contains %q; notes:\n%s", n, strings.Join(rep.Notes, "\n"))
				}
			}
		})
	}
}

// TestFixesCompile: applying each finding's fix to the failing workflow and recompiling gives a
// lock that fits. The fixes are frontmatter the compiler takes, not prose.
func TestFixesCompile(t *testing.T) {
	t.Parallel()
	tenant := endpoints(t, "https://acme.ghe.com", "")
	ghesTenant := endpoints(t, "https://github.example.com", "acme.ghe.com")
	cases := []struct {
		name, broken, fixed string
		ep                  platform.Endpoints
	}{
		{"rest-host", "engine:\n  id: copilot\n  api-target: api.acme.ghe.com\n", "", tenant},
		{"ghes-tenant", "engine: copilot\n", "", ghesTenant},
	}
	broken := map[string]string{}
	for _, c := range cases {
		broken[c.name] = ghawtest.Base + c.broken
	}
	locks := ghawtest.Compile(t, broken)
	fixed := map[string]string{}
	for _, c := range cases {
		l, err := ghaw.ParseLock(locks[c.name])
		if err != nil {
			t.Fatal(err)
		}
		rep := ghaw.Check(l, c.ep)
		if len(rep.Findings) != 1 {
			t.Fatalf("%s: want one finding, got\n%s", c.name, describe(rep))
		}
		// The fix replaces the engine key.
		fixed[c.name] = ghawtest.Base + rep.Findings[0].Fix + "\n"
	}
	relocked := ghawtest.Compile(t, fixed)
	for _, c := range cases {
		l, err := ghaw.ParseLock(relocked[c.name])
		if err != nil {
			t.Fatal(err)
		}
		if rep := ghaw.Check(l, c.ep); !rep.Fits() {
			t.Errorf("%s: after the fix\n%s\nstill\n%s", c.name, fixed[c.name], describe(rep))
		}
	}
}

func describe(r ghaw.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString("  " + string(f.Level) + " " + f.Kind + ": " + f.What + "\n")
	}
	for _, n := range r.Notes {
		b.WriteString("  note: " + n + "\n")
	}
	return b.String()
}
