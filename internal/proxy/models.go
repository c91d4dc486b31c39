package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
)

// The model policy: which models an inference request may name (allowed-models, blocked-models:
// case-insensitive globs, '*' any run of characters), and what the tenant's GET /models says each
// costs (billing.multiplier), which the premium-request budget and the usage report price with.

// modelPolicy is the allow and block lists in force; nil when neither is set.
type modelPolicy struct {
	allowed, blocked []string // lowercased patterns
	shownAllowed     []string // as given, for messages and the report
	shownBlocked     []string
}

// SplitModelList reads an allowed-models / blocked-models value: patterns one per line or
// comma-separated; blank entries and '#' comments are dropped.
func SplitModelList(v string) []string {
	var out []string
	for _, line := range strings.Split(v, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// ValidateModelPattern checks one model glob (for the CLI, before serve starts).
func ValidateModelPattern(p string) error {
	switch {
	case p == "":
		return errors.New("an empty pattern")
	case len(p) > 200:
		return errors.New("a pattern over 200 characters")
	case strings.Trim(p, "*") == "" && p != "*":
		return errors.New("only '*'s: write '*' for every model")
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || r == ',' || r == '#' {
			return fmt.Errorf("the character %q: a model pattern is a model id with '*' wildcards, e.g. 'claude-*' or 'gpt-5-mini'", r)
		}
	}
	return nil
}

func newModelPolicy(allowed, blocked []string) (*modelPolicy, error) {
	if len(allowed) == 0 && len(blocked) == 0 {
		return nil, nil
	}
	mp := &modelPolicy{}
	for _, l := range [...]struct {
		name  string
		in    []string
		lower *[]string
		shown *[]string
	}{{"allowed-models", allowed, &mp.allowed, &mp.shownAllowed}, {"blocked-models", blocked, &mp.blocked, &mp.shownBlocked}} {
		for _, p := range l.in {
			p = strings.TrimSpace(p)
			if err := ValidateModelPattern(p); err != nil {
				return nil, fmt.Errorf("%s %q: %v", l.name, p, err)
			}
			*l.lower = append(*l.lower, strings.ToLower(p))
			*l.shown = append(*l.shown, p)
		}
	}
	return mp, nil
}

// judge says why a model is refused ("model-blocked" with the pattern it matched, or
// "model-not-allowed"), or "". The model is compared trimmed and case-insensitively: a tenant that
// reads " GPT-5" as gpt-5 must not get it past a block on gpt-5.
func (mp *modelPolicy) judge(model string) (refusal, pattern string) {
	m := strings.ToLower(strings.TrimSpace(model))
	for i, p := range mp.blocked {
		if globMatch(p, m) {
			return "model-blocked", mp.shownBlocked[i]
		}
	}
	if len(mp.allowed) == 0 {
		return "", ""
	}
	for _, p := range mp.allowed {
		if globMatch(p, m) {
			return "", ""
		}
	}
	return "model-not-allowed", ""
}

func (mp *modelPolicy) permits(model string) bool {
	r, _ := mp.judge(model)
	return r == ""
}

// globMatch matches s against a pattern where '*' stands for any run of characters (bytes).
// Linear-time: on a mismatch it retries from the last '*' only.
func globMatch(pattern, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pattern) && pattern[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// priceList is what the tenant's GET /models says each model costs a user-initiated request, in
// thousandths of a premium request (multipliers such as 0.33 exist).
type priceList struct {
	milli map[string]int64 // by lowercased model id
	max   int64            // the highest multiplier seen: what a model missing from the list costs
	own   bool             // fetched by the proxy itself (rather than read from a reply to an agent)
	at    time.Time
}

// cost is what a user-initiated request for model costs.
func (pl *priceList) cost(model string) int64 {
	if v, ok := pl.milli[strings.ToLower(strings.TrimSpace(model))]; ok {
		return v
	}
	return pl.max
}

// modelsEntry is the part of a GET /models entry the proxy reads.
type modelsEntry struct {
	ID      *string `json:"id"`
	Billing *struct {
		Multiplier *float64 `json:"multiplier"`
	} `json:"billing"`
}

// maxModelsReply bounds a /models reply the proxy reads (the real one is tens of KiB).
const maxModelsReply = 8 << 20

// readModels decodes a /models reply: its price list and, when mp is set, the reply with only the
// permitted models (other top-level members kept). Entries without billing (embeddings) are not
// priced.
func readModels(raw []byte, mp *modelPolicy) (*priceList, []byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, nil, fmt.Errorf("the /models reply is not a JSON object: %w", err)
	}
	var data []json.RawMessage
	if err := json.Unmarshal(top["data"], &data); err != nil || data == nil {
		return nil, nil, errors.New("the /models reply has no data list")
	}
	pl := &priceList{milli: make(map[string]int64, len(data))}
	kept := data[:0:0]
	for _, raw := range data {
		var e modelsEntry
		if json.Unmarshal(raw, &e) != nil || e.ID == nil {
			continue // not a model the policy can judge: not shown under a policy
		}
		if e.Billing != nil && e.Billing.Multiplier != nil && *e.Billing.Multiplier >= 0 && !math.IsInf(*e.Billing.Multiplier, 0) {
			m := int64(math.Round(*e.Billing.Multiplier * 1000))
			pl.milli[strings.ToLower(*e.ID)] = m
			pl.max = max(pl.max, m)
		}
		if mp != nil && mp.permits(*e.ID) {
			kept = append(kept, raw)
		}
	}
	if mp == nil {
		return pl, raw, nil
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, nil, err
	}
	top["data"] = b
	out, err := json.Marshal(top)
	if err != nil {
		return nil, nil, err
	}
	return pl, out, nil
}

// modelsMemo is the last /models reply and what the proxy made of it: the same reply (the usual
// case: a catalogue changes rarely) costs a comparison, not a decode.
type modelsMemo struct {
	raw, out []byte
	prices   *priceList
	length   []string // Content-Length of out, shared by the replies that send it (never modified)
}

// memoBody serves a memo's bytes as a reply body: one allocation.
type memoBody struct{ r bytes.Reader }

func (m *memoBody) Read(p []byte) (int, error)         { return m.r.Read(p) }
func (m *memoBody) WriteTo(w io.Writer) (int64, error) { return m.r.WriteTo(w) }
func (m *memoBody) Close() error                       { return nil }

var modelsBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// filterModels reads a 200 reply to GET /models: it learns the prices from it (unless the proxy
// fetched its own) and, under a model policy, replaces it with the permitted models only. Without
// a policy the bytes go on unchanged. Under a policy a reply it cannot read is replaced by a 502:
// the agent must not see models it may not use.
func (p *Proxy) filterModels(resp *http.Response) error {
	mp := p.gov.policy
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		if mp != nil {
			p.modelsUnreadable(resp, "it is encoded ("+ce+")")
		}
		return nil
	}
	buf := modelsBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer modelsBuffers.Put(buf)
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, maxModelsReply+1))
	if err != nil {
		return err // the upstream broke off: ReverseProxy's error handler answers 502
	}
	raw := buf.Bytes()
	if len(raw) > maxModelsReply {
		if mp != nil {
			resp.Body.Close()
			p.modelsUnreadable(resp, "it is over 8 MiB")
			return nil
		}
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(append([]byte(nil), raw...)), resp.Body), resp.Body}
		return nil
	}
	resp.Body.Close()
	memo := p.modelsMemo.Load()
	if memo == nil || !bytes.Equal(memo.raw, raw) {
		own := append([]byte(nil), raw...)
		prices, out, err := readModels(own, mp)
		if err != nil {
			if mp != nil {
				p.modelsUnreadable(resp, err.Error())
				return nil
			}
			prices, out = nil, own
		}
		memo = &modelsMemo{raw: own, out: out, prices: prices, length: []string{strconv.Itoa(len(out))}}
		p.modelsMemo.Store(memo)
		if prices != nil {
			p.learnPrices(prices)
		}
	}
	body := &memoBody{}
	body.r.Reset(memo.out)
	resp.Body = body
	resp.ContentLength = int64(len(memo.out))
	resp.Header["Content-Length"] = memo.length
	return nil
}

// modelsUnreadable replaces a /models reply the policy cannot filter with a 502 saying so.
func (p *Proxy) modelsUnreadable(resp *http.Response, why string) {
	msg := "copilot-route could not filter the tenant's model list by allowed-models/blocked-models (" + why + "), so it does not pass it on"
	b, _ := json.Marshal(map[string]string{"message": msg})
	b = append(b, '\n')
	resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
	resp.Header = http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Content-Length": {strconv.Itoa(len(b))},
		"Cache-Control": {"no-store"}}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	p.log.Warn("could not filter a /models reply by the model policy; answered 502", slog.String("why", why))
}

// learnPrices keeps a price list read from a reply to an agent, unless the proxy has its own.
func (p *Proxy) learnPrices(pl *priceList) {
	for {
		cur := p.prices.Load()
		if cur != nil && cur.own {
			return
		}
		pl.at = p.now()
		if p.prices.CompareAndSwap(cur, pl) {
			return
		}
	}
}

// priceFetch rate-limits the proxy's own GET /models after a failure.
type priceFetch struct {
	mu   sync.Mutex
	last time.Time
	err  error
}

// priceRetry is how long after a failed GET /models the proxy asks again.
const priceRetry = 5 * time.Second

// ownPrices returns the price list the proxy fetched itself with the real credential (the
// premium-request budget trusts no other), fetching it when it has none. One fetch at a time;
// after a failure, callers within priceRetry get the same error.
func (p *Proxy) ownPrices(ctx context.Context) (*priceList, error) {
	if pl := p.prices.Load(); pl != nil && pl.own {
		return pl, nil
	}
	f := &p.priceFetch
	f.mu.Lock()
	defer f.mu.Unlock()
	if pl := p.prices.Load(); pl != nil && pl.own {
		return pl, nil
	}
	if f.err != nil && p.now().Sub(f.last) < priceRetry {
		return nil, f.err
	}
	pl, err := p.fetchPrices(ctx)
	f.last, f.err = p.now(), err
	if err != nil {
		p.log.Warn("could not read the model multipliers (GET /models) for max-premium-requests",
			slog.String("upstream", p.copilot.host), slog.String("error", err.Error()))
		return nil, err
	}
	p.prices.Store(pl)
	p.log.Info("model multipliers read for max-premium-requests", slog.Int("models", len(pl.milli)),
		slog.Float64("highest", float64(pl.max)/1000))
	return pl, nil
}

// fetchPrices asks the Copilot API for its models with the real credential, on a connection of
// the proxy's own.
func (p *Proxy) fetchPrices(ctx context.Context) (*priceList, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.copilot.target.String()+"/models", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(copilot.HeaderIntegrationID, p.cfg.IntegrationID)
	req.Header.Set(copilot.HeaderAPIVersion, p.cfg.APIVersion)
	req.Header.Set(copilot.HeaderInteractionID, p.cfg.InteractionID)
	resp, err := p.credClient(p.copilot).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /models on %s: %s", p.copilot.host, netErrText(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxModelsReply+1))
	if err != nil {
		return nil, fmt.Errorf("GET /models on %s: %s", p.copilot.host, netErrText(err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /models on %s answered %d", p.copilot.host, resp.StatusCode)
	}
	if len(raw) > maxModelsReply {
		return nil, fmt.Errorf("GET /models on %s: the reply is over 8 MiB", p.copilot.host)
	}
	pl, _, err := readModels(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("GET /models on %s: %w", p.copilot.host, err)
	}
	if len(pl.milli) == 0 {
		return nil, fmt.Errorf("GET /models on %s: no model has billing.multiplier", p.copilot.host)
	}
	pl.own, pl.at = true, p.now()
	return pl, nil
}

// priceSource says where the multipliers in use came from, for the report.
func (p *Proxy) priceSource() string {
	switch pl := p.prices.Load(); {
	case pl == nil:
		return ""
	case pl.own:
		return "tenant"
	default:
		return "agent-models-reply"
	}
}
