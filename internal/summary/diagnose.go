package summary

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Icon is the mark a verdict gets in tables and headers.
func Icon(v diagnose.Verdict) string {
	switch v {
	case diagnose.OK:
		return "✅"
	case diagnose.Warn:
		return "⚠️"
	case diagnose.Fail:
		return "❌"
	}
	return "➖"
}

// OverallIcon is the mark of a report's verdict.
func OverallIcon(o diagnose.Overall) string {
	switch o {
	case diagnose.Ready:
		return "✅"
	case diagnose.ReadyWithWarnings:
		return "⚠️"
	}
	return "❌"
}

// VerdictLine is the one sentence under the page header: what the verdict means for the agent.
func VerdictLine(r diagnose.Report, ep platform.Endpoints) string {
	where := ep.CopilotHost
	if where == "" {
		where = "this platform"
	}
	fails, warns := count(r, diagnose.Fail), count(r, diagnose.Warn)+len(r.Notes)
	switch r.Verdict {
	case diagnose.Ready:
		return fmt.Sprintf("Copilot on %s answers as the proxy will call it: every check passed.", code(where))
	case diagnose.ReadyWithWarnings:
		return fmt.Sprintf("Copilot on %s should work through the proxy; %s worth reading below.", code(where), plural(warns, "thing", "things"))
	}
	return fmt.Sprintf("The agent will not reach Copilot on %s: %s failed. Fix %s below and run again.",
		code(where), plural(fails, "check", "checks"), map[bool]string{true: "it", false: "them"}[fails == 1])
}

func count(r diagnose.Report, v diagnose.Verdict) int {
	n := 0
	for _, p := range r.Probes {
		if p.Verdict == v {
			n++
		}
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// DiagnoseSection renders the checks: what to do (failures first), then the probe table.
// Headings are level 3: the section sits under the page header.
func DiagnoseSection(r diagnose.Report) string {
	var b strings.Builder
	if fixes := r.Fixes(); len(fixes) > 0 {
		b.WriteString("### What to do\n\n")
		for i, f := range fixes {
			where := f.Title
			fmt.Fprintf(&b, "%d. %s **%s**: %s\n", i+1, Icon(f.Level), text(where), prose(f.Fix))
		}
		b.WriteString("\n")
	}
	b.WriteString("### Checks\n\n")
	b.WriteString("| | Check | Host | Request | Status | Time | What it means |\n")
	b.WriteString("| :-: | --- | --- | --- | :-: | --: | --- |\n")
	for _, p := range r.Probes {
		host, req := request(p)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n",
			Icon(p.Verdict), text(p.Title), host, req, status(p), latency(p), prose(p.Meaning)+requestID(p))
	}
	b.WriteString("\n")
	if r.CopilotAPIURL != "" {
		fmt.Fprintf(&b, "The models check used %s (%s), the Copilot API the proxy will use.\n\n", code(r.CopilotAPIURL), text(r.CopilotAPIFrom))
	}
	return b.String()
}

// nbsp keeps "10 ms" and "400 → 200" on one line in a narrow table column.
const nbsp = "\u00a0"

// request splits a probe's URL into the host and the request line, which keeps the table narrow.
func request(p diagnose.Probe) (host, req string) {
	if p.URL == "" {
		return "—", "none: read from the token's prefix"
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return "—", code(p.Method + " " + p.URL)
	}
	// Method and path stay on one line: a wrapped "GET" alone on a line reads as a value.
	return code(u.Host), code(p.Method + nbsp + u.EscapedPath())
}

func status(p diagnose.Probe) string {
	switch {
	case p.Verdict == diagnose.Skip || p.Method == "":
		return "—"
	case p.Status == 0:
		return "no answer"
	case p.Retried && p.FirstTry != 0:
		return fmt.Sprintf("%d%s→%s%d", p.FirstTry, nbsp, nbsp, p.Status)
	}
	return fmt.Sprint(p.Status)
}

func latency(p diagnose.Probe) string {
	if p.Verdict == diagnose.Skip || p.Method == "" {
		return "—"
	}
	return fmt.Sprintf("%d%sms", p.Latency.Milliseconds(), nbsp)
}

func requestID(p diagnose.Probe) string {
	if p.RequestID == "" || p.Verdict == diagnose.OK {
		return ""
	}
	return " (request id " + code(p.RequestID) + ")"
}

// prose renders one line of our own explanatory text: `code spans` stay code, everything else is
// escaped, so a server message quoted inside (already stripped of backticks and pipes by the
// probes) cannot add markup.
func prose(s string) string {
	parts := strings.Split(s, "`")
	if len(parts)%2 == 0 {
		// An unpaired backtick: treat it all as text.
		return text(s)
	}
	var b strings.Builder
	for i, part := range parts {
		if i%2 == 0 {
			b.WriteString(text(part))
		} else {
			b.WriteString(code(part))
		}
	}
	return b.String()
}

// DiagnoseText is the --format text rendering: one block per probe, for a terminal.
func DiagnoseText(r diagnose.Report, ep platform.Endpoints) string {
	var b strings.Builder
	fmt.Fprintf(&b, "copilot-route diagnose: %s\n", strings.ToUpper(string(r.Verdict)))
	fmt.Fprintf(&b, "platform %s, Copilot on %s, Copilot API %s (%s)\n\n", ep.Platform, ep.CopilotHost, r.CopilotAPIURL, r.CopilotAPIFrom)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, p := range r.Probes {
		lat := strings.ReplaceAll(latency(p), nbsp, " ")
		if lat == "—" {
			lat = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", label(p.Verdict), p.Title, plainStatus(p), lat, strings.ReplaceAll(p.Meaning, "`", ""))
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	if fixes := r.Fixes(); len(fixes) > 0 {
		b.WriteString("\nwhat to do:\n")
		for i, f := range fixes {
			fmt.Fprintf(&b, "%d. %s %s: %s\n", i+1, label(f.Level), f.Title, strings.ReplaceAll(f.Fix, "`", ""))
		}
	}
	return b.String()
}

func plainStatus(p diagnose.Probe) string {
	s := strings.ReplaceAll(status(p), nbsp, " ")
	if s == "—" {
		return "-"
	}
	return s
}

// label is a verdict for a terminal or a log, where emoji widths break column alignment.
func label(v diagnose.Verdict) string {
	switch v {
	case diagnose.OK:
		return "[ok]"
	case diagnose.Warn:
		return "[warn]"
	case diagnose.Fail:
		return "[FAIL]"
	}
	return "[skip]"
}

// Annotation is one ::warning:: or ::error:: for the run page, carrying the same hint as the
// summary. Level is "error" or "warning".
type Annotation struct {
	Level   string
	Title   string
	Message string
}

// Annotations are the report's findings as annotations: failures as errors (warnings unless
// strict says a failure stops the job: the message reads the same either way), one per fix.
func Annotations(r diagnose.Report) []Annotation {
	var out []Annotation
	for _, f := range r.Fixes() {
		a := Annotation{Level: "warning", Title: "copilot-route: " + f.Title}
		if f.Level == diagnose.Fail {
			a.Level = "error"
		}
		msg := strings.ReplaceAll(f.Fix, "`", "")
		if f.Meaning != "" {
			msg = strings.ReplaceAll(f.Meaning, "`", "") + ". " + msg
		}
		a.Message = msg
		out = append(out, a)
	}
	return out
}
