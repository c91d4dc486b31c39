package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Usage accounting: what each inference reply says it used, read as its bytes pass to the client.
// Nothing is held back or delayed: a streamed reply is scanned for complete lines as each piece is
// written, and only a data line that names "usage" is kept, to be decoded after its piece has been
// flushed. A reply of known length (not a stream) is copied aside as it passes, up to
// maxUsageBody, and decoded at its end.
//
// The wire formats:
//   - chat completions: usage.prompt_tokens (every prompt token, cached ones included, which
//     prompt_tokens_details.cached_tokens also gives) and completion_tokens; streamed, on the last
//     chunk (or a chunk of its own with no choices).
//   - responses: usage.input_tokens (cached included; input_tokens_details.cached_tokens) and
//     output_tokens; streamed, in response.completed.
//   - Anthropic messages: usage.input_tokens leaves out cache_read_input_tokens and
//     cache_creation_input_tokens, which are added; streamed, message_start has the input side and
//     message_delta's output_tokens is a running total, so the last value counts, not the sum.

// maxUsageBody bounds the copy of a non-streamed reply kept to read its usage.
const maxUsageBody = 8 << 20

// maxUsageLine bounds a streamed line kept across writes (response.completed repeats the whole
// answer).
const maxUsageLine = 8 << 20

// bytesPerToken estimates the tokens of a reply that carried no usage: 4 bytes a token over the
// request and reply bytes, an over-estimate for a streamed reply (its framing counts too), which
// is the safe side for max-tokens.
const bytesPerToken = 4

// inference is one forwarded inference request's accounting.
type inference struct {
	wire  route         // routeChat, routeResponses or routeMessages: which usage fields mean what
	model string        // from the body read whole, or "" (then sniff has it)
	sniff *modelSniffer // the model as the body streamed, when it was not read whole
	agent bool          // X-Initiator: agent (costs no premium request)
	cost  int64         // premium cost counted at admission (thousandths); 0 when agent or unpriced
	// priced: cost is the model's known multiplier (or 0 for an agent turn); otherwise the report
	// prices the request when it can.
	priced   bool
	budgeted bool // cost was counted against max-premium-requests (given back on an error reply)

	tapping  bool // a 2xx reply whose usage is being read
	sse      bool
	part     []byte   // a streamed line split across writes
	skipLine bool     // the current line is over maxUsageLine: dropped
	pending  [][]byte // data lines naming "usage", decoded after the flush
	body     []byte   // a reply of known length, kept to read its usage at the end
	tooLong  bool
	u        usageFields
	seen     bool // a usage object was read
}

func (inf *inference) modelName() string {
	if inf.sniff != nil {
		return inf.sniff.Model()
	}
	return inf.model
}

// usageFields are the latest value seen of every usage field of any wire format.
type usageFields struct {
	prompt, completion, promptCached  int64 // chat completions
	input, output, inputCached        int64 // responses; Anthropic's input and output
	cacheRead, cacheCreation          int64 // Anthropic
	hasPrompt, hasInput, hasCacheRead bool
}

// wireUsage decodes a usage object of any wire format; a field absent stays nil.
type wireUsage struct {
	PromptTokens     *int64 `json:"prompt_tokens"`
	CompletionTokens *int64 `json:"completion_tokens"`
	PromptDetails    *struct {
		Cached *int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	InputTokens  *int64 `json:"input_tokens"`
	OutputTokens *int64 `json:"output_tokens"`
	InputDetails *struct {
		Cached *int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	CacheRead     *int64 `json:"cache_read_input_tokens"`
	CacheCreation *int64 `json:"cache_creation_input_tokens"`
}

// usageEvent is a reply body or a streamed event that may carry usage: at the top (chat
// completions, a non-streamed reply of any format, Anthropic's message_delta), under "message"
// (message_start) or under "response" (response.completed).
type usageEvent struct {
	Usage    *wireUsage   `json:"usage"`
	Message  *usageHolder `json:"message"`
	Response *usageHolder `json:"response"`
}

type usageHolder struct {
	Usage *wireUsage `json:"usage"`
}

func (h *usageHolder) usage() *wireUsage {
	if h == nil {
		return nil
	}
	return h.Usage
}

func (f *usageFields) merge(w *wireUsage) {
	set := func(dst *int64, v *int64) bool {
		if v != nil && *v >= 0 {
			*dst = *v
			return true
		}
		return false
	}
	if set(&f.prompt, w.PromptTokens) {
		f.hasPrompt = true
	}
	set(&f.completion, w.CompletionTokens)
	if w.PromptDetails != nil {
		set(&f.promptCached, w.PromptDetails.Cached)
	}
	if set(&f.input, w.InputTokens) {
		f.hasInput = true
	}
	set(&f.output, w.OutputTokens)
	if w.InputDetails != nil {
		set(&f.inputCached, w.InputDetails.Cached)
	}
	if set(&f.cacheRead, w.CacheRead) {
		f.hasCacheRead = true
	}
	set(&f.cacheCreation, w.CacheCreation)
}

// tokens are the request's input (every prompt token processed), cached (of them, read from a
// cache) and output tokens in the wire format of its route.
func (f *usageFields) tokens(wire route) (in, cached, out int64) {
	switch wire {
	case routeChat:
		if !f.hasPrompt && f.hasInput { // an Anthropic-shaped reply on the chat route
			return f.input + f.cacheRead + f.cacheCreation, f.cacheRead, f.output
		}
		return f.prompt, f.promptCached, f.completion
	case routeResponses:
		return f.input, f.inputCached, f.output
	}
	return f.input + f.cacheRead + f.cacheCreation, f.cacheRead, f.output
}

func (inf *inference) decode(b []byte) {
	var ev usageEvent
	if json.Unmarshal(b, &ev) != nil {
		return
	}
	for _, w := range [...]*wireUsage{ev.Usage, ev.Message.usage(), ev.Response.usage()} {
		if w != nil {
			inf.u.merge(w)
			inf.seen = true
		}
	}
}

// onHeader starts reading a 2xx reply, and keeps the tenant's quota snapshot.
func (inf *inference) onHeader(code int, h http.Header, uc *usageCollector) {
	if code < 200 || code > 299 {
		return
	}
	inf.tapping = true
	inf.sse = strings.HasPrefix(strings.ToLower(h.Get("Content-Type")), "text/event-stream")
	for k, vs := range h {
		if len(vs) > 0 && len(k) > len(quotaHeaderPrefix) && strings.EqualFold(k[:len(quotaHeaderPrefix)], quotaHeaderPrefix) {
			uc.quota(strings.ToLower(k[len(quotaHeaderPrefix):]), vs[0])
		}
	}
}

const quotaHeaderPrefix = "X-Quota-Snapshot-"

var usageKey = []byte(`"usage"`)

// feed looks at reply bytes just written to the client.
func (inf *inference) feed(b []byte) {
	if !inf.tapping {
		return
	}
	if !inf.sse {
		if inf.tooLong {
			return
		}
		if len(inf.body)+len(b) > maxUsageBody {
			inf.tooLong, inf.body = true, nil
			return
		}
		inf.body = append(inf.body, b...)
		return
	}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			inf.keepPart(b)
			return
		}
		line := b[:nl]
		if len(inf.part) > 0 || inf.skipLine {
			inf.keepPart(line)
			line = inf.part
		}
		if !inf.skipLine {
			inf.line(line)
		}
		inf.part, inf.skipLine = inf.part[:0], false
		b = b[nl+1:]
	}
}

func (inf *inference) keepPart(b []byte) {
	if inf.skipLine {
		return
	}
	if len(inf.part)+len(b) > maxUsageLine {
		inf.part, inf.skipLine = inf.part[:0], true
		return
	}
	inf.part = append(inf.part, b...)
}

// line keeps a complete SSE data line that may carry usage.
func (inf *inference) line(l []byte) {
	l = bytes.TrimSuffix(l, []byte{'\r'})
	if !bytes.HasPrefix(l, []byte("data:")) || !bytes.Contains(l, usageKey) {
		return
	}
	inf.pending = append(inf.pending, append([]byte(nil), bytes.TrimSpace(l[5:])...))
}

// drain decodes the lines kept so far (after the client has its bytes).
func (inf *inference) drain() {
	for _, l := range inf.pending {
		inf.decode(l)
	}
	inf.pending = inf.pending[:0]
}

// end reads what is left once the reply is over.
func (inf *inference) end() {
	if inf.sse {
		if len(inf.part) > 0 && !inf.skipLine {
			inf.line(inf.part)
		}
		inf.drain()
		return
	}
	if inf.tapping && len(inf.body) > 0 {
		inf.decode(inf.body)
		inf.body = nil
	}
}

// ModelUsage is what the agent spent on one model, and what was refused.
type ModelUsage struct {
	Model           string  `json:"model"`            // as the requests named it; "(no model)" when they named none
	Requests        int64   `json:"requests"`         // inference requests forwarded upstream
	PremiumRequests float64 `json:"premium_requests"` // Copilot's accounting: user-initiated requests × the model's multiplier
	InputTokens     int64   `json:"input_tokens"`     // every prompt token processed, cached ones included
	CachedTokens    int64   `json:"cached_tokens"`    // of the input tokens, read from a prompt cache
	OutputTokens    int64   `json:"output_tokens"`
	RefusedByPolicy int64   `json:"refused_by_policy"` // refused by allowed-models/blocked-models (nothing sent upstream)
	RefusedByBudget int64   `json:"refused_by_budget"` // refused by a budget (nothing sent upstream)
}

// QuotaSnapshot is the latest X-Quota-Snapshot-<type> header the tenant sent with a completion.
type QuotaSnapshot struct {
	Type             string    `json:"type"`        // e.g. premium_interactions, chat
	Entitlement      float64   `json:"entitlement"` // -1: unlimited
	Overage          float64   `json:"overage"`
	OveragePermitted bool      `json:"overage_permitted"`
	RemainingPercent float64   `json:"remaining_percent"`
	Reset            string    `json:"reset,omitempty"` // as sent, e.g. 2025-12-15T23:59:59Z
	At               time.Time `json:"at"`              // when the proxy saw it
}

// UsageStats is the usage report: what was spent through the proxy and what the model policy and
// the budgets refused. Stats field names: add, never rename.
type UsageStats struct {
	Requests        int64   `json:"requests"` // inference requests forwarded upstream (POST /chat/completions, /responses, /v1/messages)
	PremiumRequests float64 `json:"premium_requests"`
	InputTokens     int64   `json:"input_tokens"`
	CachedTokens    int64   `json:"cached_tokens"`
	OutputTokens    int64   `json:"output_tokens"`
	RefusedByPolicy int64   `json:"refused_by_policy"`
	RefusedByBudget int64   `json:"refused_by_budget"`
	// EstimatedReplies counts successful replies that carried no usage: their tokens are estimated
	// from bytes (4 a token) and included above.
	EstimatedReplies int64 `json:"estimated_replies"`
	// UnpricedRequests counts user-initiated requests whose model's multiplier the proxy never
	// learned (it saw no GET /models): they are not in PremiumRequests.
	UnpricedRequests int64 `json:"unpriced_requests"`
	// Multipliers says where the premium multipliers came from: "tenant" (the proxy's own
	// GET /models), "agent-models-reply" (a /models reply to the agent), or "" (none seen).
	Multipliers   string          `json:"multipliers"`
	Models        []ModelUsage    `json:"models"` // by model name
	Quota         []QuotaSnapshot `json:"quota"`  // by type
	Budgets       []BudgetStats   `json:"budgets"`
	AllowedModels []string        `json:"allowed_models"`
	BlockedModels []string        `json:"blocked_models"`
}

// maxUsageModels bounds the models the report keeps apart: an agent naming random models must not
// grow the proxy's memory.
const (
	maxUsageModels = 64
	otherModels    = "(other models)"
	noModel        = "(no model)"
	maxQuotaTypes  = 8
)

type modelCount struct {
	ModelUsage
	premium  int64 // thousandths, priced at admission
	unpriced int64 // user-initiated 2xx requests not priced at admission
}

// usageCollector keeps the per-model figures and the quota snapshots; one lock, taken once per
// inference request (when it ends) and per refusal.
type usageCollector struct {
	mu        sync.Mutex
	models    map[string]*modelCount
	quotas    map[string]QuotaSnapshot
	estimated int64
	now       func() time.Time
}

func newUsageCollector(now func() time.Time) *usageCollector {
	return &usageCollector{models: map[string]*modelCount{}, quotas: map[string]QuotaSnapshot{}, now: now}
}

func (uc *usageCollector) rowLocked(model string) *modelCount {
	model = cutString(strings.TrimSpace(model), 100)
	if model == "" {
		model = noModel
	}
	if m := uc.models[model]; m != nil {
		return m
	}
	if len(uc.models) >= maxUsageModels {
		model = otherModels
		if m := uc.models[model]; m != nil {
			return m
		}
	}
	m := &modelCount{ModelUsage: ModelUsage{Model: model}}
	uc.models[model] = m
	return m
}

func (uc *usageCollector) refused(model string, budget bool) {
	uc.mu.Lock()
	m := uc.rowLocked(model)
	if budget {
		m.RefusedByBudget++
	} else {
		m.RefusedByPolicy++
	}
	uc.mu.Unlock()
}

// settled records a finished inference request: ok when the tenant answered 2xx.
func (uc *usageCollector) settled(inf *inference, ok bool, in, cached, out int64, estimated bool) {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	m := uc.rowLocked(inf.modelName())
	m.Requests++
	if ok && !inf.agent {
		if inf.priced {
			m.premium += inf.cost
		} else {
			m.unpriced++
		}
	}
	m.InputTokens += in
	m.CachedTokens += cached
	m.OutputTokens += out
	if estimated {
		uc.estimated++
	}
}

func (uc *usageCollector) quota(typ, v string) {
	if len(typ) > 40 {
		return
	}
	q, err := url.ParseQuery(v)
	if err != nil {
		return
	}
	num := func(k string) float64 {
		f, _ := strconv.ParseFloat(q.Get(k), 64)
		return f
	}
	s := QuotaSnapshot{Type: typ, Entitlement: num("ent"), Overage: num("ov"), RemainingPercent: num("rem"),
		OveragePermitted: q.Get("ovPerm") == "true", Reset: cutString(q.Get("rst"), 40), At: uc.now().UTC()}
	uc.mu.Lock()
	if _, ok := uc.quotas[typ]; ok || len(uc.quotas) < maxQuotaTypes {
		uc.quotas[typ] = s
	}
	uc.mu.Unlock()
}

// snapshot is the report; unpriced requests are priced with pl when there is one now.
func (uc *usageCollector) snapshot(pl *priceList) UsageStats {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	s := UsageStats{Models: []ModelUsage{}, Quota: []QuotaSnapshot{}, EstimatedReplies: uc.estimated}
	var premium int64
	for _, m := range uc.models {
		row := m.ModelUsage
		p := m.premium
		if m.unpriced > 0 {
			if pl != nil {
				p += m.unpriced * pl.cost(m.Model)
			} else {
				s.UnpricedRequests += m.unpriced
			}
		}
		row.PremiumRequests = float64(p) / 1000
		premium += p
		s.Requests += row.Requests
		s.InputTokens += row.InputTokens
		s.CachedTokens += row.CachedTokens
		s.OutputTokens += row.OutputTokens
		s.RefusedByPolicy += row.RefusedByPolicy
		s.RefusedByBudget += row.RefusedByBudget
		s.Models = append(s.Models, row)
	}
	s.PremiumRequests = float64(premium) / 1000
	sort.Slice(s.Models, func(i, j int) bool { return s.Models[i].Model < s.Models[j].Model })
	for _, q := range uc.quotas {
		s.Quota = append(s.Quota, q)
	}
	sort.Slice(s.Quota, func(i, j int) bool { return s.Quota[i].Type < s.Quota[j].Type })
	return s
}
