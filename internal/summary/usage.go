package summary

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/proxy"
)

// usageSection reports what the agent spent through the proxy: a row per model and a total
// (requests, premium requests, input / cached / output tokens, refusals), each budget against its
// limit, the model policy, and the tenant's latest quota snapshot.
func usageSection(b *strings.Builder, u proxy.UsageStats) {
	if !usageWorthShowing(u) {
		return
	}
	b.WriteString("### Usage\n\n")
	fmt.Fprintf(b, "%s forwarded · %s premium requests · %s input tokens (%s cached) · %s output tokens",
		plural(int(u.Requests), "inference request", "inference requests"), premium(u.PremiumRequests),
		thousands(u.InputTokens), thousands(u.CachedTokens), thousands(u.OutputTokens))
	if r := u.RefusedByPolicy + u.RefusedByBudget; r > 0 {
		fmt.Fprintf(b, " · %d refused", r)
	}
	b.WriteString("\n\n")
	if len(u.Models) > 0 {
		b.WriteString("| Model | Requests | Premium requests | Input tokens | Cached | Output tokens | Refused (policy) | Refused (budget) |\n" +
			"| --- | --: | --: | --: | --: | --: | --: | --: |\n")
		for _, m := range u.Models {
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", code(m.Model), m.Requests, premium(m.PremiumRequests),
				thousands(m.InputTokens), thousands(m.CachedTokens), thousands(m.OutputTokens), refusedCell(m.RefusedByPolicy), refusedCell(m.RefusedByBudget))
		}
		fmt.Fprintf(b, "| **Total** | **%d** | **%s** | **%s** | **%s** | **%s** | **%d** | **%d** |\n\n", u.Requests, premium(u.PremiumRequests),
			thousands(u.InputTokens), thousands(u.CachedTokens), thousands(u.OutputTokens), u.RefusedByPolicy, u.RefusedByBudget)
	}
	var notes []string
	if u.UnpricedRequests > 0 {
		notes = append(notes, fmt.Sprintf("%s not in the premium figures: the proxy never saw the tenant's model multipliers (no `GET /models` passed; set `max-premium-requests` to have the proxy read them itself).",
			plural(int(u.UnpricedRequests), "user-initiated request is", "user-initiated requests are")))
	}
	if u.EstimatedReplies > 0 {
		notes = append(notes, fmt.Sprintf("%s no usage: their tokens are estimated from their bytes (4 bytes a token, an over-estimate).",
			plural(int(u.EstimatedReplies), "reply carried", "replies carried")))
	}
	if len(u.Budgets) > 0 {
		b.WriteString("| Budget (input) | Used | Limit | | Refused |\n| --- | --: | --: | --- | --: |\n")
		for _, bu := range u.Budgets {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %d |\n", code(bu.Name), budgetNum(bu.Name, bu.Used), budgetNum(bu.Name, bu.Limit), budgetState(bu), bu.Refused)
		}
		b.WriteString("\n")
	}
	if len(u.AllowedModels)+len(u.BlockedModels) > 0 {
		var parts []string
		if len(u.AllowedModels) > 0 {
			parts = append(parts, "allowed "+codes(u.AllowedModels))
		}
		if len(u.BlockedModels) > 0 {
			parts = append(parts, "blocked "+codes(u.BlockedModels))
		}
		refused := "no request refused"
		if u.RefusedByPolicy > 0 {
			refused = plural(int(u.RefusedByPolicy), "request", "requests") + " refused by the model policy, nothing of them sent upstream"
		}
		fmt.Fprintf(b, "**Model policy:** %s; %s.\n\n", strings.Join(parts, "; "), refused)
	} else if u.RefusedByPolicy > 0 {
		fmt.Fprintf(b, "%s refused by the model policy (inference on a route added by `allow-routes`), nothing of them sent upstream.\n\n",
			plural(int(u.RefusedByPolicy), "request", "requests"))
	}
	if len(u.Quota) > 0 {
		var parts []string
		for _, q := range u.Quota {
			parts = append(parts, quotaText(q))
		}
		fmt.Fprintf(b, "**Quota** (the tenant's latest `X-Quota-Snapshot-*`): %s.\n\n", strings.Join(parts, "; "))
	}
	for _, n := range notes {
		b.WriteString(n + "\n\n")
	}
}

func usageWorthShowing(u proxy.UsageStats) bool {
	return u.Requests > 0 || u.RefusedByPolicy+u.RefusedByBudget > 0 || len(u.Budgets) > 0 || len(u.Quota) > 0 ||
		len(u.AllowedModels)+len(u.BlockedModels) > 0
}

func refusedCell(n int64) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("⚠️ %d", n)
}

func budgetState(bu proxy.BudgetStats) string {
	if bu.Limit <= 0 {
		return ""
	}
	pct := bu.Used / bu.Limit * 100
	switch {
	case bu.Used >= bu.Limit || bu.Refused > 0:
		return "⛔ spent"
	case pct >= 80:
		return fmt.Sprintf("⚠️ %.0f%%", pct)
	}
	return fmt.Sprintf("%.0f%%", pct)
}

func budgetNum(name string, v float64) string {
	if name == "max-premium-requests" {
		return premium(v)
	}
	return thousands(int64(v))
}

// premium writes premium requests to the thousandth without trailing zeros.
func premium(v float64) string {
	s := strconv.FormatFloat(v, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// thousands groups a whole number's digits by thousands: 1234567 → 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func codes(vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = code(v)
	}
	return strings.Join(out, ", ")
}

// quotaText says one quota snapshot for a person: "premium_interactions 99.7% left of 300, resets
// 2026-12-01 00:00 UTC".
func quotaText(q proxy.QuotaSnapshot) string {
	s := code(q.Type) + " "
	if q.Entitlement < 0 {
		s += "unlimited"
	} else {
		s += fmt.Sprintf("%s%% left of %s", strconv.FormatFloat(q.RemainingPercent, 'f', -1, 64), strconv.FormatFloat(q.Entitlement, 'f', -1, 64))
		if q.Overage > 0 {
			s += fmt.Sprintf(", %s over", strconv.FormatFloat(q.Overage, 'f', -1, 64))
		}
	}
	if q.Reset != "" {
		if t, err := time.Parse(time.RFC3339, q.Reset); err == nil {
			s += ", resets " + t.UTC().Format("2006-01-02 15:04") + " UTC"
		} else {
			s += ", resets " + text(q.Reset)
		}
	}
	return s
}

// usageAnnotations carry refusals by the model policy and the budgets to the run page.
func usageAnnotations(u proxy.UsageStats) []Annotation {
	var out []Annotation
	if u.RefusedByPolicy > 0 {
		out = append(out, Annotation{Level: "warning", Title: "copilot-route: model policy",
			Message: fmt.Sprintf("%s refused by the model policy (allowed-models/blocked-models), nothing of them sent upstream; the usage table in the job summary names the models.",
				plural(int(u.RefusedByPolicy), "inference request was", "inference requests were"))})
	}
	for _, bu := range u.Budgets {
		if bu.Refused > 0 {
			out = append(out, Annotation{Level: "warning", Title: "copilot-route: budget " + bu.Name,
				Message: fmt.Sprintf("The budget %s was spent (%s of %s): %s refused with 403. Raise the input %s if the job needs more.",
					bu.Name, budgetNum(bu.Name, bu.Used), budgetNum(bu.Name, bu.Limit), plural(int(bu.Refused), "request was", "requests were"), bu.Name)})
		}
	}
	return out
}
