package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// burst sends n requests at once (released together) and returns how many got each status.
func burst(t *testing.T, h *harness, n int, path, body string, hdr map[string]string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(body))
			req.Header.Set("Authorization", h.bearer())
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("POST %s: %v", path, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			got[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return got
}

// Check and count are one step: with N requests' worth of a budget left, 40 requests sent at once
// forward exactly N; the others get 403 naming the budget, and nothing of theirs reaches the tenant.
func TestBudgetsExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		set       func(*Config)
		path      string
		model     string
		initiator string
		forwarded int
		budget    string
		used      float64
	}{
		{"max-requests 10", func(c *Config) { c.MaxRequests = 10 }, "/chat/completions", "gpt-5-mini", "user", 10, budgetRequests, 10},
		{"max-requests 10, agent turns count too", func(c *Config) { c.MaxRequests = 10 }, "/v1/messages", "claude-sonnet-4.5", "agent", 10, budgetRequests, 10},
		{"premium 5 at multiplier 1", func(c *Config) { c.MaxPremiumRequests = 5 }, "/responses", "claude-sonnet-4.5", "user", 5, budgetPremium, 5},
		{"premium 3.3 at multiplier 0.33", func(c *Config) { c.MaxPremiumRequests = 3.3 }, "/chat/completions", "o4-mini", "user", 10, budgetPremium, 3.3},
		{"premium 5 at multiplier 10: none", func(c *Config) { c.MaxPremiumRequests = 5 }, "/v1/messages", "claude-opus-4.1", "", 0, budgetPremium, 0},
		{"premium 30: a model missing from /models costs the highest multiplier (10)", func(c *Config) { c.MaxPremiumRequests = 30 }, "/chat/completions", "gpt-unlisted", "user", 3, budgetPremium, 30},
		{"premium 1: agent turns cost nothing", func(c *Config) { c.MaxPremiumRequests = 1 }, "/chat/completions", "claude-opus-4.1", "agent", 40, budgetPremium, 0},
		{"premium 1: an included model costs nothing", func(c *Config) { c.MaxPremiumRequests = 1 }, "/chat/completions", "gpt-5-mini", "user", 40, budgetPremium, 0},
		{"premium and requests: the tighter wins", func(c *Config) { c.MaxPremiumRequests = 20; c.MaxRequests = 7 }, "/responses", "gpt-5", "user", 7, budgetRequests, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			h := setup(t, ft, platform.Input{}, tc.set)
			hdr := map[string]string{}
			if tc.initiator != "" {
				hdr["X-Initiator"] = tc.initiator
			}
			got := burst(t, h, 40, tc.path, chatBody(tc.model, false), hdr)
			if got[200] != tc.forwarded || got[403] != 40-tc.forwarded {
				t.Errorf("statuses %v, want %d × 200 and %d × 403", got, tc.forwarded, 40-tc.forwarded)
			}
			if n := len(requestsTo(ft, tc.path)); n != tc.forwarded {
				t.Errorf("the tenant got %d requests, want %d", n, tc.forwarded)
			}
			waitFor(t, "the forwarded requests settled", func() bool { return h.p.Stats().Usage.Requests == int64(tc.forwarded) })
			s := h.p.Stats()
			var b *BudgetStats
			for i := range s.Usage.Budgets {
				if s.Usage.Budgets[i].Name == tc.budget {
					b = &s.Usage.Budgets[i]
				}
			}
			if b == nil || b.Used != tc.used || b.Refused != int64(40-tc.forwarded) {
				t.Errorf("budgets %+v, want %s used %v, refused %d", s.Usage.Budgets, tc.budget, tc.used, 40-tc.forwarded)
			}
			if s.Usage.Requests != int64(tc.forwarded) || s.Usage.RefusedByBudget != int64(40-tc.forwarded) {
				t.Errorf("usage: %d requests, %d refused by a budget", s.Usage.Requests, s.Usage.RefusedByBudget)
			}
		})
	}
}

// A budget refusal is 403 (never 429: clients retry those) naming the budget, its figures and the
// input that sets it.
func TestBudgetRefusal(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxPremiumRequests = 1.5 })
	body := chatBody("claude-sonnet-4.5", true)
	if status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), body, nil); status != 200 {
		t.Fatalf("first request: %d %s", status, b)
	}
	status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), body, nil)
	if status != http.StatusForbidden {
		t.Fatalf("second request: %d %s, want 403", status, b)
	}
	m := refusal(t, b)
	if m["budget"] != budgetPremium || m["input"] != budgetPremium || m["used"] != "1" || m["limit"] != "1.5" || m["refused"] != "budget-max-premium-requests" {
		t.Errorf("refusal %s", b)
	}
	if msg := m["message"].(string); !strings.Contains(msg, "1 of 1.5 premium requests") || !strings.Contains(msg, "costs 1") {
		t.Errorf("message %q", msg)
	}
	// An agent turn and an included model still pass.
	for _, c := range []struct{ model, initiator string }{{"claude-sonnet-4.5", "agent"}, {"gpt-5-mini", "user"}} {
		if status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody(c.model, false), map[string]string{"X-Initiator": c.initiator}); status != 200 {
			t.Errorf("%s %s: %d %s, want 200", c.model, c.initiator, status, b)
		}
	}
	// An initiator the tenant would not read as "agent" is the user's.
	if status, _, _ := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), body, map[string]string{"X-Initiator": "Agent"}); status != http.StatusForbidden {
		t.Errorf("X-Initiator: Agent got %d, want 403", status)
	}
}

// max-tokens counts the replies' usage: requests pass while the count is under the limit (streams
// running then finish), and nothing passes once it is reached.
func TestMaxTokens(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	// Each reply reports 42 input and 7 output tokens (the default reply text).
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxTokens = 100 })
	for i, path := range []string{"/chat/completions", "/v1/messages", "/responses"} {
		status, _, b := h.do(t, http.MethodPost, path, h.bearer(), chatBody("gpt-5-mini", i%2 == 0), nil)
		if status != 200 {
			t.Fatalf("request %d: %d %s", i, status, b)
		}
	}
	waitFor(t, "the third reply's usage", func() bool { return h.p.Stats().Usage.Requests == 3 })
	if got := burst(t, h, 40, "/chat/completions", chatBody("gpt-5-mini", false), nil); got[403] != 40 {
		t.Errorf("with 147 of 100 tokens used: %v, want 40 × 403", got)
	}
	u := h.p.Stats().Usage
	if len(u.Budgets) != 1 || u.Budgets[0].Used != 147 || u.Budgets[0].Limit != 100 || u.InputTokens != 126 || u.OutputTokens != 21 {
		t.Errorf("usage %+v", u)
	}
	// With tokens left, 40 streams opened at once all pass (their tokens are known only when they
	// end) and all finish, though together they use far more than the limit.
	ft2 := startTenant(t, realToken)
	gate := make(chan struct{})
	ft2.Set(func(b *faketenant.Behavior) { b.Gate, b.StreamChunks = gate, 2 })
	h2 := setup(t, ft2, platform.Input{}, func(c *Config) { c.MaxTokens = 100 })
	readers := make([]*streamReader, 40)
	for i := range readers {
		_, readers[i] = openStream(t, h2, "/chat/completions")
	}
	close(gate)
	for _, sr := range readers {
		sr.until("[DONE]")
	}
	waitFor(t, "the 40 streams settled", func() bool { return h2.p.Stats().Usage.Requests == 40 })
	if u := h2.p.Stats().Usage; u.Budgets[0].Used != 40*49 {
		t.Errorf("40 streams used %v tokens, want %d", u.Budgets[0].Used, 40*49)
	}
	if status, _, _ := h2.do(t, http.MethodPost, "/chat/completions", h2.bearer(), chatBody("gpt-5-mini", false), nil); status != http.StatusForbidden {
		t.Errorf("after the streams: %d, want 403", status)
	}
}

// A request the tenant answers with an error costs no premium request: its cost is given back.
func TestPremiumGivenBackOnError(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxPremiumRequests = 2; c.MaxRequests = 10 })
	ft.Set(func(b *faketenant.Behavior) { b.Status = map[string]int{"/chat/completions": 500} })
	for i := range 3 {
		if status, _, _ := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("claude-sonnet-4.5", false), nil); status != 500 {
			t.Fatalf("status %d, want the tenant's 500", status)
		}
		// The cost is given back when the request ends, a moment after the client has its reply.
		waitFor(t, "the error reply settled", func() bool { return h.p.Stats().Usage.Requests == int64(i+1) })
	}
	ft.Set(func(b *faketenant.Behavior) { b.Status = nil })
	for i := range 3 {
		status, _, _ := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("claude-sonnet-4.5", false), nil)
		if want := map[bool]int{true: 200, false: 403}[i < 2]; status != want {
			t.Errorf("request %d after the errors: %d, want %d", i, status, want)
		}
	}
	u := h.p.Stats().Usage
	if u.PremiumRequests != 2 || u.Requests != 5 {
		t.Errorf("usage: %v premium requests, %d requests; want 2 and 5 (errors forwarded, not billed)", u.PremiumRequests, u.Requests)
	}
}

// max-premium-requests prices with the tenant's own multipliers; when the proxy cannot read them
// it sends nothing (a request it cannot count must not pass).
func TestPremiumBudgetWithoutMultipliers(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	ft.Set(func(b *faketenant.Behavior) { b.ModelsStatus = http.StatusInternalServerError })
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxPremiumRequests = 10 })
	status, hdr, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("claude-sonnet-4.5", false), nil)
	if status != http.StatusBadGateway || hdr.Get("Retry-After") == "" {
		t.Fatalf("status %d %s, want 502 with Retry-After", status, b)
	}
	var m map[string]any
	decodeJSON(t, b, &m)
	if m["refused"] != "premium-unpriced" || m["input"] != budgetPremium || !strings.Contains(m["message"].(string), "GET /models") {
		t.Errorf("refusal %s", b)
	}
	if n := inferenceSeen(ft); n != 0 {
		t.Errorf("the tenant got %d inference requests", n)
	}
	// An agent turn costs nothing, so it needs no price.
	if status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("claude-sonnet-4.5", false), map[string]string{"X-Initiator": "agent"}); status != 200 {
		t.Errorf("agent turn: %d %s", status, b)
	}
	// Once /models works the proxy reads it (after its retry pause, on the clock it was given).
	ft.Set(func(b *faketenant.Behavior) { b.ModelsStatus = 0 })
	h.p.priceFetch.mu.Lock()
	h.p.priceFetch.last = h.p.priceFetch.last.Add(-priceRetry)
	h.p.priceFetch.mu.Unlock()
	if status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("claude-sonnet-4.5", false), nil); status != 200 {
		t.Errorf("after /models recovered: %d %s", status, b)
	}
	if u := h.p.Stats().Usage; u.PremiumRequests != 1 || u.Multipliers != "tenant" {
		t.Errorf("usage %v premium, multipliers from %q", u.PremiumRequests, u.Multipliers)
	}
}

// A line is logged at 80, 90, 95 and 99 % of a budget, and when it is spent, once each.
func TestBudgetWarnings(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxRequests = 20 })
	for range 22 {
		h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("gpt-5-mini", false), nil)
	}
	var got []string
	for _, l := range logLines(t, h.log.Bytes()) {
		if l["budget"] == budgetRequests {
			got = append(got, fmt.Sprintf("%s at %s", l["msg"], l["used"]))
		}
	}
	want := []string{"budget max-requests 80% used at 16", "budget max-requests 90% used at 18", "budget max-requests 95% used at 19",
		"budget max-requests 99% used at 20", "budget max-requests spent: further requests that would add to it get 403 at 20"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("budget lines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewRejectsBadGovernance(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	for _, set := range []func(*Config){
		func(c *Config) { c.MaxRequests = -1 },
		func(c *Config) { c.MaxPremiumRequests = 0.0001 },
		func(c *Config) { c.AllowedModels = []string{"gpt 5"} },
		func(c *Config) { c.BlockedModels = []string{""} },
	} {
		cfg := Config{Endpoints: mustDetect(t, ft), ExplicitTarget: true, Token: copilotToken(realToken), ClientToken: NewClientToken(),
			RootCAs: ft.CertPool(), DialContext: loopbackOnly}
		set(&cfg)
		if _, err := New(t.Context(), cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

func mustDetect(t *testing.T, ft *faketenant.Tenant) platform.Endpoints {
	t.Helper()
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com", APIURL: ft.URL(), CopilotAPITarget: ft.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestMilliText(t *testing.T) {
	t.Parallel()
	for v, want := range map[int64]string{0: "0", 1000: "1", 330: "0.33", 12330: "12.33", 1: "0.001", 10500: "10.5", -330: "-0.33"} {
		if got := milliText(v); got != want {
			t.Errorf("milliText(%d) = %q, want %q", v, got, want)
		}
	}
}
