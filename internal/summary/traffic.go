package summary

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/proxy"
)

// Traffic renders the stop step's traffic report from the proxy's figures.
func Traffic(s proxy.Stats) string {
	var b strings.Builder
	icon := "✅"
	switch {
	case len(s.UpstreamErrors) > 0 || serverErrors(s) > 0 || s.ClientAuthFailures > 0 || s.Policy.Refused > 0 ||
		s.Usage.RefusedByPolicy+s.Usage.RefusedByBudget > 0:
		icon = "⚠️"
	case s.Requests == 0:
		icon = "➖"
	}
	fmt.Fprintf(&b, "## %s copilot-route: traffic\n\n", icon)
	fmt.Fprintf(&b, "%s in %s · %s received, %s sent back · first byte p50 %s, p95 %s\n\n",
		plural(int(s.Requests), "request", "requests"), uptime(s.UptimeSeconds),
		bytesText(s.BytesIn), bytesText(s.BytesOut), ms(s.LatencyMS.P50, s.LatencyMS.Count), ms(s.LatencyMS.P95, s.LatencyMS.Count))

	if len(s.Routes) > 0 {
		b.WriteString("| Route | Requests | Statuses |\n| --- | --: | --- |\n")
		for _, r := range groupRoutes(s.Routes) {
			fmt.Fprintf(&b, "| %s | %d | %s |\n", code(r.route), r.total, r.statuses)
		}
		b.WriteString("\n")
	}

	if s.LatencyMS.Count > 0 || s.DurationMS.Count > 0 {
		b.WriteString("| Latency (ms) | p50 | p95 | p99 | max |\n| --- | --: | --: | --: | --: |\n")
		fmt.Fprintf(&b, "| to the first byte | %s | %s | %s | %s |\n", num(s.LatencyMS.P50), num(s.LatencyMS.P95), num(s.LatencyMS.P99), num(s.LatencyMS.Max))
		fmt.Fprintf(&b, "| to the last byte | %s | %s | %s | %s |\n\n", num(s.DurationMS.P50), num(s.DurationMS.P95), num(s.DurationMS.P99), num(s.DurationMS.Max))
	}

	usageSection(&b, s.Usage)

	if len(s.UpstreamErrors) > 0 {
		b.WriteString("### Upstream errors\n\n| | Host | Kind | Count | What to do |\n| :-: | --- | --- | --: | --- |\n")
		for _, e := range s.UpstreamErrors {
			fmt.Fprintf(&b, "| ⚠️ | %s | %s | %d | %s |\n", code(e.Host), text(e.Kind), e.Count, text(hintFor(e)))
		}
		b.WriteString("\n")
	}

	policySection(&b, s.Policy)

	if len(s.SchemeSwitches) > 0 {
		b.WriteString("### Authorization scheme switches\n\n")
		for _, sw := range s.SchemeSwitches {
			fmt.Fprintf(&b, "- %s: %s → %s at %s\n", code(sw.Host), code(sw.From), code(sw.To), sw.At.UTC().Format("15:04:05"))
		}
		b.WriteString("\n" + text(schemeHint(s.SchemeSwitches)) + "\n\n")
	}

	b.WriteString("<details><summary>Upstreams, discovery and token exchange</summary>\n\n")
	if len(s.Upstreams) > 0 {
		b.WriteString("| Upstream | URL | Chosen | Scheme |\n| --- | --- | --- | --- |\n")
		for _, u := range s.Upstreams {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", text(u.Name), code(u.URL), text(u.Source), code(u.Scheme))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "- Endpoint discovery (`/copilot_internal/user`): %s%s\n", text(words(discoveryWords, s.Discovery.State)), discoveryDetail(s.Discovery))
	fmt.Fprintf(&b, "- Token exchange for clients: %s%s\n", text(words(exchangeWords, s.Exchange.State)), exchangeDetail(s.Exchange))
	fmt.Fprintf(&b, "- Refused before reaching upstream: %d%s\n", s.Refused, reasons(s.RefusedReasons))
	fmt.Fprintf(&b, "- Requests without the client token: %d\n", s.ClientAuthFailures)
	if s.ConnCapHits > 0 {
		fmt.Fprintf(&b, "- Connections closed at the connection cap: %d\n", s.ConnCapHits)
	}
	b.WriteString("\n</details>\n\n")
	return b.String()
}

// policySection reports the route policy: the requests it refused (most refused routes first)
// and how to allow one, and any routes the operator allowed beyond the defaults.
func policySection(b *strings.Builder, p proxy.PolicyStats) {
	if p.Refused > 0 {
		fmt.Fprintf(b, "### Refused by the route policy\n\n%s went nowhere: the proxy forwards only the routes Copilot clients use, "+
			"so its credential did no other work. If the agent needs one of these, add the line to the action input `allow-routes`.\n\n",
			plural(int(p.Refused), "request", "requests"))
		b.WriteString("| Method | Path | Count | To allow it (`allow-routes`) |\n| --- | --- | --: | --- |\n")
		for _, r := range p.TopRefused {
			allow := code(r.Method + " " + r.Path)
			if r.Reason != "route-not-allowed" {
				allow = "never forwarded (" + text(r.Reason) + ")"
			}
			fmt.Fprintf(b, "| %s | %s | %d | %s |\n", code(r.Method), code(r.Path), r.Count, allow)
		}
		if p.OtherRefused > 0 {
			fmt.Fprintf(b, "| | *other routes* | %d | |\n", p.OtherRefused)
		}
		b.WriteString("\n")
	}
	if len(p.Widened) > 0 {
		b.WriteString("**Routes allowed beyond the defaults** (`allow-routes`): ")
		for i, w := range p.Widened {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(code(w))
		}
		b.WriteString("\n\n")
	}
}

// The proxy's state names, said for a person.
var (
	discoveryWords = map[string]string{
		"used":     "used: the proxy sends Copilot traffic to the advertised API",
		"skipped":  "skipped",
		"rejected": "rejected: the proxy kept the derived Copilot API",
		"absent":   "nothing advertised: the proxy kept the derived Copilot API",
		"failed":   "failed: the proxy kept the derived Copilot API",
	}
	exchangeWords = map[string]string{
		"not-requested": "no client asked for it",
		"ok":            "a Copilot token is used upstream",
		"refused":       "refused by the platform: the proxy uses the GitHub token directly",
		"error":         "failed: the proxy uses the GitHub token directly",
	}
)

func words(m map[string]string, state string) string {
	if w, ok := m[state]; ok {
		return w
	}
	return state
}

type routeRow struct {
	route    string
	total    int64
	statuses string
}

// groupRoutes folds the (route, status) counts into one row per route, routes in the order the
// proxy sorted them, statuses as "200 ×11, 502 ×1" with a mark for failures.
func groupRoutes(rc []proxy.RouteCount) []routeRow {
	var rows []routeRow
	idx := map[string]int{}
	parts := map[string][]string{}
	for _, r := range rc {
		i, ok := idx[r.Route]
		if !ok {
			i = len(rows)
			idx[r.Route] = i
			rows = append(rows, routeRow{route: r.Route})
		}
		rows[i].total += r.Count
		st := fmt.Sprint(r.Status)
		if r.Status == 0 {
			st = "no status"
		}
		mark := ""
		switch {
		case r.Status >= 500 || r.Status == 0:
			mark = "❌ "
		case r.Status >= 400:
			mark = "⚠️ "
		}
		parts[r.Route] = append(parts[r.Route], fmt.Sprintf("%s%s ×%d", mark, st, r.Count))
	}
	for i := range rows {
		rows[i].statuses = strings.Join(parts[rows[i].route], ", ")
	}
	return rows
}

func serverErrors(s proxy.Stats) int64 {
	var n int64
	for _, r := range s.Routes {
		if r.Status >= 500 {
			n += r.Count
		}
	}
	return n
}

// hintFor is the proxy's hint, or ours when it gave none.
func hintFor(e proxy.UpstreamError) string {
	if strings.TrimSpace(e.Hint) != "" {
		return e.Hint
	}
	switch e.Kind {
	case "refused", "dns", "timeout":
		return "The runner cannot reach " + e.Host + ": allow it in the egress rules, or check the network."
	case "reset":
		return "The connection to " + e.Host + " was cut: often an egress firewall blocking the host."
	case "tls":
		return "The certificate of " + e.Host + " was not trusted: pass a TLS-inspecting proxy's CA with ca-file."
	case "mid-stream":
		return "A streamed reply from " + e.Host + " broke off: the agent saw an incomplete answer; run again."
	}
	return "Check the proxy's log file (output log-file)."
}

func schemeHint(sw []proxy.SchemeSwitch) string {
	last := sw[len(sw)-1].To
	return "The platform refused the first Authorization scheme and the proxy switched by itself; set auth-scheme: " +
		strings.ToLower(last) + " to skip the refused first request."
}

func discoveryDetail(d proxy.DiscoveryStats) string {
	var parts []string
	if d.Advertised != "" {
		parts = append(parts, "advertised "+code(d.Advertised))
	}
	if d.Reason != "" {
		// A reason is often a transport error quoting a URL: as code it is neither autolinked nor
		// mangled by escapes.
		parts = append(parts, code(d.Reason))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func exchangeDetail(e proxy.ExchangeStats) string {
	var parts []string
	if e.Requests > 0 {
		parts = append(parts, plural(int(e.Requests), "request", "requests"))
	}
	if e.UpstreamStatus != 0 {
		parts = append(parts, fmt.Sprintf("the platform answered %d", e.UpstreamStatus))
	}
	if e.Message != "" {
		parts = append(parts, text(fmt.Sprintf("%q", e.Message)))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func reasons(rs []proxy.ReasonCount) string {
	if len(rs) == 0 {
		return ""
	}
	sorted := append([]proxy.ReasonCount(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Reason < sorted[j].Reason })
	parts := make([]string, len(sorted))
	for i, r := range sorted {
		parts[i] = fmt.Sprintf("%s ×%d", text(r.Reason), r.Count)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func uptime(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	if d < time.Second {
		return "under a second"
	}
	return d.String()
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func ms(v float64, count int64) string {
	if count == 0 {
		return "—"
	}
	return num(v) + " ms"
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// TrafficAnnotations carry the traffic report's hints to the run page: upstream errors and
// scheme switches as warnings.
func TrafficAnnotations(s proxy.Stats) []Annotation {
	var out []Annotation
	for _, e := range s.UpstreamErrors {
		out = append(out, Annotation{Level: "warning", Title: "copilot-route: upstream " + e.Kind,
			Message: fmt.Sprintf("%d× %s talking to %s. %s", e.Count, e.Kind, e.Host, hintFor(e))})
	}
	if len(s.SchemeSwitches) > 0 {
		out = append(out, Annotation{Level: "warning", Title: "copilot-route: Authorization scheme", Message: schemeHint(s.SchemeSwitches)})
	}
	if s.Policy.Refused > 0 {
		var top []string
		for i, r := range s.Policy.TopRefused {
			if i == 3 {
				break
			}
			top = append(top, fmt.Sprintf("%s %s (%d×)", r.Method, r.Path, r.Count))
		}
		out = append(out, Annotation{Level: "warning", Title: "copilot-route: route policy",
			Message: fmt.Sprintf("%s refused by the route policy, nothing sent upstream: %s. If the agent needs a route, add 'METHOD /path' to the input allow-routes.",
				plural(int(s.Policy.Refused), "request was", "requests were"), strings.Join(top, ", "))})
	}
	out = append(out, usageAnnotations(s.Usage)...)
	if s.ConnCapHits > 0 {
		out = append(out, Annotation{Level: "warning", Title: "copilot-route: connection cap",
			Message: fmt.Sprintf("%s closed at the proxy's connection cap: a client held too many connections open (the longest-idle ones were closed for new ones, or new ones refused while all were busy).",
				plural(int(s.ConnCapHits), "connection was", "connections were"))})
	}
	if s.ClientAuthFailures > 0 {
		out = append(out, Annotation{Level: "warning", Title: "copilot-route: client token",
			Message: fmt.Sprintf("%s reached the proxy without the client token and were refused: give the agent the client-token output as COPILOT_GITHUB_TOKEN.", plural(int(s.ClientAuthFailures), "request", "requests"))})
	}
	return out
}
