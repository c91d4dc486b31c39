package cli

import (
	"flag"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

// The model policy and the budgets (issue 17): action inputs for start, flags of the same names for
// start and serve. start checks them before serve starts and passes them on as flags.

// governanceInputs are the inputs, each also a flag.
var governanceInputs = []struct{ name, usage string }{
	{"allowed-models", "model globs an inference request may name ('*' any run of characters, case-insensitive), one per line or comma-separated; repeatable. Unset: every model"},
	{"blocked-models", "model globs an inference request may not name (wins over allowed-models); repeatable"},
	{"max-requests", "most inference requests forwarded (0: no limit); trusts nothing the agent sends"},
	{"max-premium-requests", "most premium requests, as Copilot counts them (model multiplier per user-initiated request; decimal, 0: no limit)"},
	{"max-tokens", "most input + output tokens, from the replies' usage (0: no limit)"},
}

// governanceFlags holds the flags as given.
type governanceFlags struct {
	fs       *flag.FlagSet
	allowed  multiFlag
	blocked  multiFlag
	requests string
	premium  string
	tokens   string
}

func addGovernanceFlags(fs *flag.FlagSet) *governanceFlags {
	g := &governanceFlags{fs: fs}
	fs.Var(&g.allowed, "allowed-models", governanceInputs[0].usage)
	fs.Var(&g.blocked, "blocked-models", governanceInputs[1].usage)
	fs.StringVar(&g.requests, "max-requests", "", governanceInputs[2].usage)
	fs.StringVar(&g.premium, "max-premium-requests", "", governanceInputs[3].usage)
	fs.StringVar(&g.tokens, "max-tokens", "", governanceInputs[4].usage)
	return g
}

// governance is the policy and the budgets, checked.
type governance struct {
	allowed, blocked                []string
	maxRequests, maxTokens          int64
	maxPremium                      float64
	requestsText, premiumText, toks string
}

// read checks the flags, each list added to the input's lines and each figure given as a flag
// winning over the input (input(name) reads an action input; nil for none).
func (g *governanceFlags) read(input func(string) string) (governance, error) {
	if input == nil {
		input = func(string) string { return "" }
	}
	var out governance
	var err error
	if out.allowed, err = modelList("allowed-models", input("allowed-models"), g.allowed); err != nil {
		return out, err
	}
	if out.blocked, err = modelList("blocked-models", input("blocked-models"), g.blocked); err != nil {
		return out, err
	}
	figure := func(name, flagValue string) string {
		if flagGiven(g.fs, name) {
			return strings.TrimSpace(flagValue)
		}
		return strings.TrimSpace(input(name))
	}
	if out.maxRequests, out.requestsText, err = wholeNumber("max-requests", figure("max-requests", g.requests), "50"); err != nil {
		return out, err
	}
	if out.maxTokens, out.toks, err = wholeNumber("max-tokens", figure("max-tokens", g.tokens), "2000000"); err != nil {
		return out, err
	}
	if out.maxPremium, out.premiumText, err = decimal("max-premium-requests", figure("max-premium-requests", g.premium)); err != nil {
		return out, err
	}
	return out, nil
}

func modelList(input, value string, flags []string) ([]string, error) {
	var out []string
	for _, v := range append([]string{value}, flags...) {
		out = append(out, proxy.SplitModelList(v)...)
	}
	for _, p := range out {
		if err := proxy.ValidateModelPattern(p); err != nil {
			return nil, &platform.InputError{Input: input, Value: platform.Quote(p), Problem: err.Error() + " (one model glob per line or comma-separated)",
				Example: "claude-sonnet-4.5, gpt-5-mini, o4-*"}
		}
	}
	return out, nil
}

func wholeNumber(input, v, example string) (int64, string, error) {
	if v == "" {
		return 0, "", nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(v, "+") {
		return 0, "", &platform.InputError{Input: input, Value: platform.Quote(v), Problem: "a whole number is needed (0 or empty: no limit)", Example: example}
	}
	if n == 0 {
		return 0, "", nil
	}
	return n, strconv.FormatInt(n, 10), nil
}

var decimalText = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,3})?$`)

func decimal(input, v string) (float64, string, error) {
	if v == "" {
		return 0, "", nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if !decimalText.MatchString(v) || err != nil || math.IsInf(f, 0) || f > 1e12 {
		return 0, "", &platform.InputError{Input: input, Value: platform.Quote(v),
			Problem: "a decimal number of premium requests is needed, at most 3 decimals (0 or empty: no limit)", Example: "25 or 12.5"}
	}
	if f == 0 {
		return 0, "", nil
	}
	return f, v, nil
}

// serveArgs passes the checked values to serve.
func (g governance) serveArgs() []string {
	var out []string
	for _, p := range g.allowed {
		out = append(out, "--allowed-models", p)
	}
	for _, p := range g.blocked {
		out = append(out, "--blocked-models", p)
	}
	for _, f := range [][2]string{{"--max-requests", g.requestsText}, {"--max-premium-requests", g.premiumText}, {"--max-tokens", g.toks}} {
		if f[1] != "" {
			out = append(out, f[0], f[1])
		}
	}
	return out
}

// apply sets them on the proxy's configuration.
func (g governance) apply(c *proxy.Config) {
	c.AllowedModels, c.BlockedModels = g.allowed, g.blocked
	c.MaxRequests, c.MaxPremiumRequests, c.MaxTokens = g.maxRequests, g.maxPremium, g.maxTokens
}

// stopOutputs are the outputs stop writes from the proxy's usage (stop/action.yml declares them).
var stopOutputs = []string{"requests", "input-tokens", "output-tokens", "premium-requests"}

// usageOutputs are their values: whole numbers, premium requests a decimal (multipliers such as
// 0.33 exist).
func usageOutputs(u proxy.UsageStats) map[string]string {
	return map[string]string{
		"requests":         strconv.FormatInt(u.Requests, 10),
		"input-tokens":     strconv.FormatInt(u.InputTokens, 10),
		"output-tokens":    strconv.FormatInt(u.OutputTokens, 10),
		"premium-requests": premiumText(u.PremiumRequests),
	}
}

// premiumText writes premium requests to the thousandth, without trailing zeros.
func premiumText(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}
