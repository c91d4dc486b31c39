package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Governance: what a request holding a valid client token may spend. An inference request —
// POST /chat/completions, /responses or /v1/messages, the routes of the default policy — is
// checked against the model policy and the budgets before anything goes upstream, then counted;
// its reply's usage is read as it passes (usage.go). A route the operator added with allow-routes
// is never counted as inference: with a policy or a budget set, a request on such a route that
// looks like inference (its path ends like an inference route, or its body names a model,
// messages, an input or a prompt, or cannot be read) is refused, so that no widening such as
// "POST /*" becomes a way around them.

// governance is the model policy and the budgets in force.
type governance struct {
	policy *modelPolicy // nil: every model
	budget *budgets
	// readBody: an inference body is read whole before it is forwarded (a model policy, or a
	// premium budget, which prices by model).
	readBody bool
	on       bool     // a policy or a budget is set
	inputs   []string // the inputs that set them, for messages
}

func newGovernance(cfg Config) (governance, error) {
	mp, err := newModelPolicy(cfg.AllowedModels, cfg.BlockedModels)
	if err != nil {
		return governance{}, err
	}
	b, err := newBudgets(cfg.MaxRequests, cfg.MaxPremiumRequests, cfg.MaxTokens, cfg.Logger)
	if err != nil {
		return governance{}, err
	}
	g := governance{policy: mp, budget: b, readBody: mp != nil || b.limit[1] > 0}
	g.on = mp != nil || b.any()
	if mp != nil && len(mp.allowed) > 0 {
		g.inputs = append(g.inputs, "allowed-models")
	}
	if mp != nil && len(mp.blocked) > 0 {
		g.inputs = append(g.inputs, "blocked-models")
	}
	for i, n := range budgetNames {
		if b.limit[i] > 0 {
			g.inputs = append(g.inputs, n)
		}
	}
	return g, nil
}

// policyInput names the model-policy input a request without a readable model is refused by.
func (g *governance) policyInput() string {
	if len(g.policy.allowed) > 0 {
		return "allowed-models"
	}
	return "blocked-models"
}

// isInference says whether a rule is one of the default inference routes.
func isInference(rl *rule) bool { return !rl.widen && streamed(rl.label) }

// agentInitiated reads X-Initiator as Copilot bills it: exactly "agent" (once) costs no premium
// request; anything else, or nothing, counts as the user's.
func agentInitiated(h http.Header) bool {
	vs := h["X-Initiator"]
	return len(vs) == 1 && vs[0] == "agent"
}

// contentEncoding is a request body's encoding other than identity, or "".
func contentEncoding(h http.Header) string {
	for _, v := range h["Content-Encoding"] {
		if v = strings.TrimSpace(v); v != "" && !strings.EqualFold(v, "identity") {
			return v
		}
	}
	return ""
}

// admitInference checks an inference request against the model policy and the budgets and counts
// it; false means it was refused (the reply is written).
func (p *Proxy) admitInference(st *reqState, r *http.Request) bool {
	g := &p.gov
	inf := &inference{wire: st.route, agent: agentInitiated(r.Header)}
	if g.readBody {
		body, ok := p.readWhole(st, r)
		if !ok {
			return false
		}
		var problem string
		if enc := contentEncoding(r.Header); enc != "" {
			problem = bodyEncoded
		} else {
			inf.model, problem = modelOf(body)
		}
		if g.policy != nil {
			if problem != "" {
				return p.refuseModel(st, r, inf.model, problem, "")
			}
			if why, pattern := g.policy.judge(inf.model); why != "" {
				return p.refuseModel(st, r, inf.model, why, pattern)
			}
		}
	} else if cb, ok := r.Body.(*countingBody); ok {
		inf.sniff = &modelSniffer{}
		cb.sniff = inf.sniff
	}
	switch {
	case inf.agent:
		inf.priced = true
	case g.budget.limit[1] > 0:
		pl, err := p.ownPrices(r.Context())
		if err != nil {
			return p.refuseUnpriced(st, inf.model, err)
		}
		inf.cost, inf.priced, inf.budgeted = pl.cost(inf.model), true, true
	case inf.sniff == nil:
		if pl := p.prices.Load(); pl != nil {
			inf.cost, inf.priced = pl.cost(inf.model), true
		}
	}
	var budgetCost int64
	if inf.budgeted {
		budgetCost = inf.cost
	}
	if refused := g.budget.admit(budgetCost); refused != "" {
		return p.refuseBudget(st, inf, refused)
	}
	st.inf, st.uc = inf, p.usage
	return true
}

// admitWidened refuses a request on a route allowed by allow-routes that looks like inference,
// when a policy or a budget is set.
func (p *Proxy) admitWidened(st *reqState, r *http.Request, rl *rule, path string) bool {
	why := ""
	if looksLikeInferencePath(path) {
		why = "its path ends like an inference route"
	} else if r.Body != nil && r.Body != http.NoBody {
		if enc := contentEncoding(r.Header); enc != "" {
			why = "its body is encoded (" + cutString(enc, 20) + "), so the proxy cannot read it"
		} else {
			body, ok := p.readWhole(st, r)
			if !ok {
				return false
			}
			switch k, found := topLevelKeys(body, "model", "messages", "input", "prompt"); {
			case len(body) == 0:
			case !json.Valid(body):
				why = "its body is not JSON, so the proxy cannot tell"
			case found:
				why = fmt.Sprintf("its body has %q", k)
			}
		}
	}
	if why == "" {
		return true
	}
	method, shown := cutString(r.Method, 16), cutString(path, 200)
	msg := fmt.Sprintf("copilot-route refuses %s %s: with %s set, inference goes only through POST /chat/completions, /responses and /v1/messages, "+
		"where the proxy checks the model and counts the request, and this request looks like inference (%s) on a route that allow-routes added (%s). "+
		"Send inference to those routes; nothing was sent upstream", method, shown, strings.Join(p.gov.inputs, ", "), why, rl.String())
	return p.refuse(st, false, "inference-on-widened-route", "", msg, map[string]string{
		"method": method, "path": shown, "rule": "allow-routes: " + rl.String(), "input": "allow-routes"})
}

// looksLikeInferencePath: the last segment of the path is what an inference endpoint is called
// (chat/completions, completions, responses, messages), in any case.
func looksLikeInferencePath(path string) bool {
	seg := strings.ToLower(strings.TrimRight(path, "/"))
	seg = seg[strings.LastIndexByte(seg, '/')+1:]
	switch seg {
	case "completions", "responses", "messages":
		return true
	}
	return strings.Contains(seg, "completion")
}

// readWhole reads the request body once (within MaxBodyBytes) and puts the same bytes back for
// the upstream. false means the reply is written (413, 400) or the client is gone.
func (p *Proxy) readWhole(st *reqState, r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(r.Body)
	if err != nil {
		switch {
		case st.tooLarge.Load():
			st.refusal = "too-large"
			p.stats.refusal(st.refusal)
			st.up = nil
			st.rw.Header().Set("Connection", "close")
			writeError(st, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d MiB: copilot-route refuses it", p.cfg.MaxBodyBytes>>20), nil)
		case r.Context().Err() != nil:
			st.errKind, st.up = "client-gone", nil
		default:
			st.refusal = "bad-body"
			p.stats.refusal(st.refusal)
			st.up = nil
			st.rw.Header().Set("Connection", "close")
			writeError(st, http.StatusBadRequest, "copilot-route refuses this request (bad-body): its body ended early or its chunked encoding is malformed", nil)
		}
		return nil, false
	}
	body := buf.Bytes()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	return body, true
}

// bodyProblems say why a body names no model the policy can judge.
var bodyProblems = map[string]string{
	bodyNotJSON:        "its body is not valid JSON",
	bodyNotObject:      "its body is not a JSON object",
	bodyNoModel:        "its body names no \"model\", so the tenant would pick one",
	bodyModelNotString: "its \"model\" is not a string",
	bodyModelTwice:     "its body names \"model\" twice, and parsers differ on which one counts",
	bodyModelCase:      "its body has a key that reads as \"model\" only case-insensitively or once unescaped, which some parsers take for the model",
	bodyEncoded:        "its body has a Content-Encoding, so the proxy cannot read the model",
}

// refuseModel answers 403 for a model the policy refuses, or a body it cannot judge.
func (p *Proxy) refuseModel(st *reqState, r *http.Request, model, why, pattern string) bool {
	mp := p.gov.policy
	shown := cutString(model, 100)
	var msg string
	fields := map[string]string{"model": shown}
	switch why {
	case "model-blocked":
		msg = fmt.Sprintf("copilot-route refuses model %q: it matches %q in blocked-models, so nothing was sent to the tenant. "+
			"If the job needs this model, take that pattern out of the action input blocked-models (serve --blocked-models)", shown, pattern)
		fields["rule"], fields["input"] = "blocked-models: "+pattern, "blocked-models"
	case "model-not-allowed":
		msg = fmt.Sprintf("copilot-route refuses model %q: it is not in allowed-models (%s), so nothing was sent to the tenant. "+
			"If the job needs this model, add it to the action input allowed-models (serve --allowed-models)", shown, strings.Join(mp.shownAllowed, ", "))
		fields["rule"], fields["input"] = "allowed-models: "+strings.Join(mp.shownAllowed, ", "), "allowed-models"
	default:
		msg = fmt.Sprintf("copilot-route refuses this %s request: %s. With %s set, an inference request must be a JSON object "+
			"that names its model once, as \"model\", so the proxy can check it; nothing was sent to the tenant",
			cutString(r.URL.Path, 40), bodyProblems[why], p.gov.policyInput())
		fields["rule"], fields["input"] = "model policy: "+why, p.gov.policyInput()
	}
	return p.refuse(st, false, why, model, msg, fields)
}

// refuseBudget answers 403 for a request that would overrun a budget.
func (p *Proxy) refuseBudget(st *reqState, inf *inference, name string) bool {
	used, limit := p.gov.budget.figures(name)
	var what string
	switch name {
	case budgetRequests:
		what = fmt.Sprintf("%s of %s inference requests forwarded", used, limit)
	case budgetTokens:
		what = fmt.Sprintf("%s tokens used, the limit is %s", used, limit)
	default:
		what = fmt.Sprintf("%s of %s premium requests used, and this %s request to %s costs %s",
			used, limit, map[bool]string{true: "agent-initiated", false: "user-initiated"}[inf.agent], cutString(orNone(inf.model), 100), milliText(inf.cost))
	}
	msg := fmt.Sprintf("copilot-route refuses this request: the budget %s is spent (%s), so nothing was sent to the tenant. "+
		"This does not recover during the job; if the job needs more, raise the action input %s (serve --%s)", name, what, name, name)
	return p.refuse(st, true, "budget-"+name, inf.modelName(), msg, map[string]string{
		"budget": name, "used": used, "limit": limit, "input": name, "rule": name + ": " + limit})
}

func orNone(s string) string {
	if s == "" {
		return noModel
	}
	return s
}

// refuseUnpriced answers a request max-premium-requests cannot price: the proxy could not read the
// tenant's multipliers.
func (p *Proxy) refuseUnpriced(st *reqState, model string, err error) bool {
	msg := fmt.Sprintf("copilot-route cannot count this request against max-premium-requests: it could not read the model multipliers "+
		"from the tenant (%s), so nothing was sent. Retry; if it persists, check that GET /models works with the proxy's token", err)
	st.rw.Header().Set("Retry-After", "5")
	return p.refuseStatus(st, http.StatusBadGateway, true, "premium-unpriced", model, msg, map[string]string{
		"budget": budgetPremium, "input": budgetPremium})
}

// refusalStatus answers a request the model policy or a budget refuses: 403, as awf's api-proxy
// does, never 429, which SDK clients retry (a spent budget does not recover during the job). The
// Copilot CLI 1.0.102 shows its own text for a 403 ("Authorization error. Your credentials may be
// expired or invalid." in the documented mode, "Authentication failed with provider … (HTTP 403)"
// with BYOK), not the reply's message; it prints the message of a 400 or 422, which it does not
// retry either (scripts/e2e-copilot-cli.sh records what it shows).
const refusalStatus = http.StatusForbidden

func (p *Proxy) refuse(st *reqState, budget bool, reason, model, msg string, fields map[string]string) bool {
	return p.refuseStatus(st, refusalStatus, budget, reason, model, msg, fields)
}

// refuseStatus writes a governance refusal: 403, never 429 (clients retry a 429, and a spent
// budget does not recover), as JSON with the message, the fields naming the rule and the input to
// change, and the same message under "error" for OpenAI- and Anthropic-style clients.
func (p *Proxy) refuseStatus(st *reqState, status int, budget bool, reason, model, msg string, fields map[string]string) bool {
	st.up = nil // not proxied: no latency sample
	st.refusal, st.model = reason, model
	p.stats.refusal(reason)
	p.usage.refused(model, budget)
	kind := "copilot_route_model_policy"
	if budget {
		kind = "copilot_route_budget"
	}
	body := make(map[string]any, len(fields)+3)
	for k, v := range fields {
		body[k] = v
	}
	body["message"], body["refused"] = msg, reason
	body["error"] = map[string]string{"type": kind, "code": reason, "message": msg}
	writeJSON(st, status, body)
	return false
}

// settle records a finished inference request: its usage, its premium cost (given back to the
// budget when the tenant answered an error), its tokens.
func (p *Proxy) settle(st *reqState) {
	inf := st.inf
	inf.end()
	ok := st.status >= 200 && st.status <= 299
	var in, cached, out int64
	estimated := false
	switch {
	case inf.seen:
		in, cached, out = inf.u.tokens(inf.wire)
	case ok:
		in, out, estimated = st.bytesIn.Load()/bytesPerToken, st.bytesOut/bytesPerToken, true
	}
	if !ok && inf.budgeted {
		p.gov.budget.refund(inf.cost)
	}
	p.gov.budget.addTokens(in + out)
	p.usage.settled(inf, ok, in, cached, out, estimated)
}

// UsageStats is the usage report now.
func (p *Proxy) usageStats() UsageStats {
	u := p.usage.snapshot(p.prices.Load())
	u.Multipliers = p.priceSource()
	u.Budgets = p.gov.budget.stats()
	u.AllowedModels, u.BlockedModels = []string{}, []string{}
	if mp := p.gov.policy; mp != nil {
		u.AllowedModels = append(u.AllowedModels, mp.shownAllowed...)
		u.BlockedModels = append(u.BlockedModels, mp.shownBlocked...)
	}
	return u
}
