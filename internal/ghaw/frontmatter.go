package ghaw

import (
	"fmt"
	"slices"
	"strings"

	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// ActionRef is how the frontmatter's step names this action (the docs' placeholder owner).
const ActionRef = "OWNER/copilot-route@v1"

// Frontmatter is the gh-aw frontmatter a workflow needs on the platform ep describes: the Copilot
// engine with engine.api-target (the host the Copilot CLI really uses for /models and inference,
// which awf's api-proxy otherwise derives — wrongly for GHES with a tenant's Copilot), the
// allowlist, and a step that runs copilot-route before the agent: detect, diagnose with the real
// token, and check-lock of the workflow's own lock, without the proxy (no gh-aw agent can use it).
// Merge its keys into the workflow's frontmatter; check-lock accepts what it compiles to.
// proxyHost (detect's proxy-host input), when given, is left out of network.allowed: no gh-aw
// agent uses the proxy, and admitting the runner's name would only widen the agent's egress.
func Frontmatter(ep platform.Endpoints, list allowlist.List, proxyHost string) string {
	if proxyHost != "" {
		list.Domains = slices.DeleteFunc(slices.Clone(list.Domains), func(d string) bool { return strings.EqualFold(d, proxyHost) })
	}
	var b strings.Builder
	target := platform.HostOf(ep.CopilotAPIURL)
	where := ep.CopilotHost
	fmt.Fprintf(&b, "# gh-aw frontmatter for %s", platform.HostOf(ep.ServerURL))
	if ep.CopilotHost != platform.HostOf(ep.ServerURL) {
		fmt.Fprintf(&b, " with Copilot licensed on %s", where)
	}
	b.WriteString(" (copilot-route detect --format gh-aw).\n")
	b.WriteString("# Merge these keys into the workflow's frontmatter, compile (gh aw compile), then check the lock:\n")
	b.WriteString("# copilot-route check-lock .github/workflows/NAME.lock.yml\n")
	b.WriteString("engine:\n  id: copilot\n")
	fmt.Fprintf(&b, "  api-target: %s", target)
	switch {
	case ep.CopilotPlatform == platform.GHECom:
		fmt.Fprintf(&b, "   # the Copilot API, not the REST host api.%s\n", ep.CopilotHost)
	case ep.Platform == platform.GHES:
		b.WriteString("   # awf would derive api.enterprise.githubcopilot.com on GHES\n")
	default:
		b.WriteString("\n")
	}
	b.WriteString(list.GHAW())
	if ep.CopilotHost != platform.HostOf(ep.ServerURL) {
		fmt.Fprintf(&b, "# The job's own token (permissions copilot-requests: write) is a token of %s and cannot use\n", platform.HostOf(ep.ServerURL))
		fmt.Fprintf(&b, "# Copilot on %s: store a fine-grained PAT of %s with \"Copilot Requests\" as the secret COPILOT_GITHUB_TOKEN.\n", where, where)
	}
	b.WriteString("steps:\n")
	b.WriteString("  - name: copilot-route (platform, token and lock check)\n")
	fmt.Fprintf(&b, "    uses: %s\n", ActionRef)
	b.WriteString("    with:\n")
	b.WriteString("      github-token: ${{ secrets.COPILOT_GITHUB_TOKEN }}\n")
	if ep.Platform == platform.GHES {
		fmt.Fprintf(&b, "      copilot-host: %s\n", where)
	}
	b.WriteString("      start-proxy: false   # awf's api-proxy carries the agent's Copilot traffic\n")
	b.WriteString("      check-lock: self     # this workflow's .lock.yml, with one live probe of the target\n")
	return b.String()
}
