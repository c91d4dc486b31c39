package summary

import (
	"fmt"
	"strings"

	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Page is the whole job summary the action writes before the agent runs: the verdict, the checks,
// what was detected, the firewall configuration and where the proxy listens.
type Page struct {
	Endpoints platform.Endpoints
	List      allowlist.List
	// Report is the probes' report; nil when diagnose was off (the page then has no verdict).
	Report *diagnose.Report
	// Detection is the detect step's section (DetectionSection), "" to leave it out.
	Detection string
	// ProxyURL is where the agent reaches the proxy, "" before it started.
	ProxyURL string
}

// RenderPage renders the page. Markdown only; no value in it is a secret (the caller's Report,
// Endpoints and List hold none, and the token is never given to this package).
func RenderPage(p Page) string {
	var b strings.Builder
	if p.Report != nil {
		fmt.Fprintf(&b, "## %s copilot-route: %s\n\n", OverallIcon(p.Report.Verdict), p.Report.Verdict)
		b.WriteString(VerdictLine(*p.Report, p.Endpoints) + "\n\n")
		b.WriteString(DiagnoseSection(*p.Report))
		if p.Detection == "" {
			// Without the detection section the notes (detection warnings) would go unseen, yet
			// the verdict line counts them.
			for _, n := range p.Report.Notes {
				fmt.Fprintf(&b, "> [!WARNING]\n> %s\n\n", text(n))
			}
		}
	} else {
		b.WriteString("## copilot-route\n\n")
	}
	if p.ProxyURL != "" {
		b.WriteString(ProxyLine(p.ProxyURL))
	}
	if p.Detection != "" {
		b.WriteString(demote(p.Detection))
		if !strings.HasSuffix(p.Detection, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(p.List.Domains) > 0 {
		// The detection section already shows the gh-aw front matter; the snippets add the rest.
		b.WriteString(Snippets(p.List, p.Detection == ""))
	}
	return b.String()
}

// ProxyLine is the summary line that says where the agent reaches the proxy; the start step can
// append it once the proxy is up.
func ProxyLine(proxyURL string) string {
	return fmt.Sprintf("**Proxy:** the agent reaches Copilot at %s (output `proxy-url`; set it as `COPILOT_API_URL`).\n\n", code(proxyURL))
}

// demote turns the detection section's level-2 heading into a level-3 one, so the page has one
// title and the sections sit under it.
func demote(section string) string {
	lines := strings.Split(section, "\n")
	inFence := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(l, "## ") {
			lines[i] = "#" + l
		}
	}
	return strings.Join(lines, "\n")
}

// Snippets is a collapsed block of ready-to-paste firewall configuration for the allowlist, one
// per egress tool, in each tool's own list format (from internal/allowlist). withGHAW adds the
// gh-aw front matter, which the detection section shows already.
func Snippets(l allowlist.List, withGHAW bool) string {
	var b strings.Builder
	tools := "awf, harden-runner, bullfrog"
	if withGHAW {
		tools = "awf, gh-aw, harden-runner, bullfrog"
	}
	fmt.Fprintf(&b, "<details><summary>Firewall steps ready to paste (%s)</summary>\n\n", tools)

	b.WriteString("**awf**: with the proxy, run `sudo -E awf $AWF_ARGS --env-all -- copilot …` with `AWF_ARGS` from the output `awf-args` " +
		"(the proxy's port, the agent's allowlist, a block of the tenant's API hosts; README \"Use it\"). " +
		"An agent that talks to the tenant itself (`start-proxy: false`) needs this list:\n\n")
	b.WriteString("```sh\n")
	fmt.Fprintf(&b, "sudo -E awf --allow-domains %s -- copilot -p \"...\"\n", shellQuote(l.Comma()))
	b.WriteString("```\n\n")

	if withGHAW {
		b.WriteString("**gh-aw**: the workflow's `network.allowed` (`copilot-route detect --format gh-aw` prints the whole frontmatter):\n\n")
		b.WriteString("```yaml\n")
		b.WriteString(l.GHAW())
		b.WriteString("```\n\n")
	}

	b.WriteString("**step-security/harden-runner**: the job's first step (pin the action by commit SHA):\n\n")
	b.WriteString("```yaml\n")
	b.WriteString("- uses: step-security/harden-runner@v2\n  with:\n    egress-policy: block\n    allowed-endpoints: >\n")
	for _, e := range strings.Fields(l.HardenRunner()) {
		fmt.Fprintf(&b, "      %s\n", e)
	}
	b.WriteString("```\n\n")

	b.WriteString("**bullfrogsec/bullfrog**: the job's first step (pin the action by commit SHA):\n\n")
	b.WriteString("```yaml\n")
	b.WriteString("- uses: bullfrogsec/bullfrog@v0.8.2\n  with:\n    egress-policy: block\n    allowed-domains: |\n")
	for _, d := range strings.Split(l.Lines(), "\n") {
		if d != "" {
			fmt.Fprintf(&b, "      %s\n", d)
		}
	}
	b.WriteString("```\n\n</details>\n\n")
	return b.String()
}

// shellQuote single-quotes s for sh. Domains hold no quote (allowlist validates them), but a
// snippet meant for pasting must be right even if that changes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
