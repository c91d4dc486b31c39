package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
)

// Budgets: what a job's agent may spend through the proxy, checked before an inference request
// is forwarded and counted in the same step (one lock), so that with N requests left, any number
// of concurrent requests forward exactly N.
//
//   - max-requests: inference requests forwarded, whatever they say about themselves. The hard
//     cap: it trusts nothing the agent sends.
//   - max-premium-requests: Copilot's own accounting. A user-initiated request (X-Initiator
//     "user" or absent) costs its model's billing.multiplier from the tenant's GET /models (fetched
//     by the proxy with the real credential); an agent-initiated one ("agent") costs nothing. The
//     agent sets that header itself, which is why max-requests exists. A request that would take
//     the count over the limit is refused; one that costs nothing always passes. A request the
//     tenant answers with an error is given back.
//   - max-tokens: input + output tokens from the replies' usage. A reply's tokens are known only
//     once it ends, so requests are refused once the count has reached the limit, and streams
//     already running finish (the count can end above the limit by what they use).

// Budget names are the action inputs (and serve flags) that set them.
const (
	budgetRequests = "max-requests"
	budgetPremium  = "max-premium-requests"
	budgetTokens   = "max-tokens"
)

var budgetNames = [...]string{budgetRequests, budgetPremium, budgetTokens}

// budgetWarnAt are the shares of a budget (percent) at which a line is logged, once each.
var budgetWarnAt = [...]int64{80, 90, 95, 99, 100}

type budgets struct {
	limit [3]int64 // 0: no limit; premium in thousandths

	mu      sync.Mutex
	used    [3]int64
	refused [3]int64
	warned  [3]uint8 // a bit per budgetWarnAt entry already logged
	log     *slog.Logger
}

func newBudgets(maxRequests int64, maxPremium float64, maxTokens int64, log *slog.Logger) (*budgets, error) {
	if maxRequests < 0 || maxPremium < 0 || maxTokens < 0 {
		return nil, fmt.Errorf("budgets must be 0 (none) or positive: max-requests %d, max-premium-requests %s, max-tokens %d",
			maxRequests, strconv.FormatFloat(maxPremium, 'f', -1, 64), maxTokens)
	}
	b := &budgets{log: log}
	b.limit = [3]int64{maxRequests, milliOf(maxPremium), maxTokens}
	if maxPremium > 0 && b.limit[1] == 0 {
		return nil, fmt.Errorf("max-premium-requests %s is below 0.001: set 0 for no budget, or at least 0.001", strconv.FormatFloat(maxPremium, 'f', -1, 64))
	}
	return b, nil
}

func milliOf(v float64) int64 { return int64(v*1000 + 0.5) }

func (b *budgets) any() bool { return b.limit != [3]int64{} }

// admit counts one inference request of the given premium cost (thousandths), or names the budget
// it would overrun. Nothing is counted for a refused request.
func (b *budgets) admit(cost int64) string {
	b.mu.Lock()
	var refused string
	switch {
	case b.limit[0] > 0 && b.used[0]+1 > b.limit[0]:
		refused = budgetRequests
	case b.limit[2] > 0 && b.used[2] >= b.limit[2]:
		refused = budgetTokens
	case b.limit[1] > 0 && cost > 0 && b.used[1]+cost > b.limit[1]:
		refused = budgetPremium
	}
	if refused != "" {
		b.refused[budgetIndex(refused)]++
		b.mu.Unlock()
		return refused
	}
	b.used[0]++
	b.used[1] += cost
	warn := b.crossedLocked(0, 1)
	b.mu.Unlock()
	b.logCrossed(warn)
	return ""
}

// refund gives back the premium cost of a request the tenant did not bill (an error reply).
func (b *budgets) refund(cost int64) {
	if cost == 0 {
		return
	}
	b.mu.Lock()
	b.used[1] -= cost
	b.mu.Unlock()
}

func (b *budgets) addTokens(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used[2] += n
	warn := b.crossedLocked(2)
	b.mu.Unlock()
	b.logCrossed(warn)
}

func budgetIndex(name string) int {
	for i, n := range budgetNames {
		if n == name {
			return i
		}
	}
	return 0
}

type crossing struct {
	budget      int
	pct         int64
	used, limit int64
}

// crossedLocked lists the warning levels the given budgets have just reached.
func (b *budgets) crossedLocked(idx ...int) []crossing {
	var out []crossing
	for _, i := range idx {
		if b.limit[i] == 0 {
			continue
		}
		for k, pct := range budgetWarnAt {
			if b.warned[i]&(1<<k) == 0 && b.used[i]*100 >= pct*b.limit[i] {
				b.warned[i] |= 1 << k
				out = append(out, crossing{budget: i, pct: pct, used: b.used[i], limit: b.limit[i]})
			}
		}
	}
	return out
}

func (b *budgets) logCrossed(cs []crossing) {
	for _, c := range cs {
		name := budgetNames[c.budget]
		msg := fmt.Sprintf("budget %s %d%% used", name, c.pct)
		if c.pct >= 100 {
			msg = "budget " + name + " spent: further requests that would add to it get 403"
		}
		b.log.LogAttrs(context.Background(), slog.LevelWarn, msg, slog.String("budget", name),
			slog.String("used", budgetFigure(c.budget, c.used)), slog.String("limit", budgetFigure(c.budget, c.limit)))
	}
}

// budgetFigure shows a budget's count: premium requests as a decimal.
func budgetFigure(i int, v int64) string {
	if i == 1 {
		return milliText(v)
	}
	return strconv.FormatInt(v, 10)
}

// milliText writes thousandths as a decimal without trailing zeros: 12330 → "12.33".
func milliText(v int64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := strconv.FormatInt(v/1000, 10)
	if f := v % 1000; f != 0 {
		frac := fmt.Sprintf("%03d", f)
		for frac[len(frac)-1] == '0' {
			frac = frac[:len(frac)-1]
		}
		s += "." + frac
	}
	if neg {
		s = "-" + s
	}
	return s
}

// BudgetStats is one budget's use against its limit.
type BudgetStats struct {
	Name    string  `json:"name"`    // max-requests, max-premium-requests or max-tokens: the input that sets it
	Limit   float64 `json:"limit"`   // premium requests may be decimal
	Used    float64 `json:"used"`    // max-tokens may end above the limit by what running streams used
	Refused int64   `json:"refused"` // requests refused because of this budget
}

func (b *budgets) stats() []BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []BudgetStats{}
	for i, name := range budgetNames {
		if b.limit[i] == 0 {
			continue
		}
		l, u := float64(b.limit[i]), float64(b.used[i])
		if i == 1 {
			l, u = l/1000, u/1000
		}
		out = append(out, BudgetStats{Name: name, Limit: l, Used: u, Refused: b.refused[i]})
	}
	return out
}

// figures are one budget's use and limit, for a refusal message.
func (b *budgets) figures(name string) (used, limit string) {
	i := budgetIndex(name)
	b.mu.Lock()
	defer b.mu.Unlock()
	return budgetFigure(i, b.used[i]), budgetFigure(i, b.limit[i])
}
