package summary

import (
	"fmt"
	"strings"

	"github.com/copilot-route/copilot-route/internal/ghaw"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// LockCheckData is check-lock's verdict on one compiled gh-aw workflow.
type LockCheckData struct {
	File      string
	Endpoints platform.Endpoints
	Report    ghaw.Report
	Probe     *ghaw.Probed // nil: no probe was asked for
}

// LockCheck renders check-lock's job-summary section: the verdict, what awf will do with the lock
// on this platform, what the live target answered, and each finding with the frontmatter that
// fixes it.
func LockCheck(d LockCheckData) string {
	var b strings.Builder
	r, rt, l := d.Report, d.Report.Runtime, d.Report.Lock
	icon, verdict := "✅", "fits"
	if !r.Fits() {
		icon, verdict = "❌", plural(len(r.Findings), "finding", "findings")
	}
	fmt.Fprintf(&b, "## %s copilot-route: check-lock %s — %s\n\n", icon, code(d.File), verdict)
	fmt.Fprintf(&b, "On %s (Copilot licensed on %s, whose Copilot API is %s). The lock: gh-aw %s, awf %s, Copilot CLI %s.\n\n",
		code(platform.HostOf(d.Endpoints.ServerURL)), code(d.Endpoints.CopilotHost), code(platform.HostOf(d.Endpoints.CopilotAPIURL)),
		code(orDash(l.CompilerVersion)), code(orDash(rt.AWFVersion)), code(orDash(l.CLIVersion)))

	b.WriteString("| At run time | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| Copilot API target | %s — %s |\n", code(orDash(rt.Target)), text(rt.TargetFrom))
	if rt.Target != "" {
		fmt.Fprintf(&b, "| Authorization awf sends | %s |\n", code(rt.Scheme+" …"))
	}
	fmt.Fprintf(&b, "| Hosts awf adds by itself | %s |\n", codeList(rt.Added))
	fmt.Fprintf(&b, "| Live probe | %s |\n\n", prose(probeLine(d.Probe)))

	if len(r.Findings) > 0 {
		b.WriteString("### What to change\n\n")
		for _, f := range r.Findings {
			mark := "❌"
			if f.Level == ghaw.Warn {
				mark = "⚠️"
			}
			fmt.Fprintf(&b, "%s **%s**: %s\n\n%s\n\n", mark, text(f.Kind), prose(f.What), prose(f.Why))
			fmt.Fprintf(&b, "```yaml\n%s\n```\n\n", fence(f.Fix))
		}
		b.WriteString("Change the workflow's `.md`, recompile it (`gh aw compile`) and check the new lock again.\n\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("<details><summary>What awf and the agent do by themselves</summary>\n\n")
		for _, n := range r.Notes {
			b.WriteString("- " + prose(n) + "\n")
		}
		b.WriteString("\n</details>\n\n")
	}
	return b.String()
}

// LockCheckText is the same verdict for a terminal.
func LockCheckText(d LockCheckData) string {
	var b strings.Builder
	r, rt := d.Report, d.Report.Runtime
	verdict := "fits"
	if !r.Fits() {
		verdict = plural(len(r.Findings), "finding", "findings")
	}
	fmt.Fprintf(&b, "%s on %s: %s\n", d.File, platform.HostOf(d.Endpoints.ServerURL), verdict)
	fmt.Fprintf(&b, "  target      %s (%s)\n", orDash(rt.Target), rt.TargetFrom)
	if rt.Target != "" {
		fmt.Fprintf(&b, "  scheme      %s\n", rt.Scheme)
	}
	fmt.Fprintf(&b, "  awf adds    %s\n", orDash(strings.Join(rt.Added, ", ")))
	fmt.Fprintf(&b, "  live probe  %s\n", probeLine(d.Probe))
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\n%s %s: %s\n  why: %s\n  fix:\n", strings.ToUpper(string(f.Level)), f.Kind, f.What, f.Why)
		for _, line := range strings.Split(f.Fix, "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			b.WriteString("note: " + n + "\n")
		}
	}
	return b.String()
}

func probeLine(p *ghaw.Probed) string {
	switch {
	case p == nil:
		return "not asked for (--probe false)"
	case p.NotProbedBy != "":
		return "not run: " + p.NotProbedBy
	case p.Works != "" && strings.EqualFold(p.Works, p.Scheme):
		return fmt.Sprintf("GET %s answered %d with `%s`: %s", p.URL, p.WorksStatus, p.Scheme, plural(p.Models, "model", "models"))
	case p.Works != "":
		return fmt.Sprintf("GET %s refused `%s` (%d) and answered %d with `%s`", p.URL, p.Scheme, p.Status, p.WorksStatus, p.Works)
	case p.Status == 0:
		return fmt.Sprintf("GET %s: no answer (%s)", p.URL, p.Meaning)
	}
	return fmt.Sprintf("GET %s answered %d with `%s`: %s", p.URL, p.Status, p.Scheme, p.Meaning)
}

func codeList(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = code(v)
	}
	return strings.Join(out, ", ")
}

// fence keeps a fix from closing its code block.
func fence(s string) string { return strings.ReplaceAll(s, "```", "'''") }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
