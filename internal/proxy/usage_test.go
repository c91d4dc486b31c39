package proxy

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// governed sets a model policy and every budget, generous enough to refuse nothing.
func governed(c *Config) {
	c.AllowedModels, c.BlockedModels = []string{"*"}, []string{"o1-*"}
	c.MaxRequests, c.MaxPremiumRequests, c.MaxTokens = 10_000, 10_000, 10_000_000
}

func milli(v float64) int64 { return int64(math.Round(v * 1000)) }

// The usage report equals what the tenant sent and charged, per model, over every wire format
// (chat completions, responses, Anthropic messages), streamed and not, the usage chunk of its own,
// user and agent turns, cached tokens included; whether the proxy read the body whole (a policy or
// a premium budget) or only sniffed the model as it streamed.
func TestUsageMatchesTheTenant(t *testing.T) {
	t.Parallel()
	calls := []struct{ model, initiator string }{
		{"claude-sonnet-4.5", "user"}, {"o4-mini", ""}, {"claude-opus-4.1", "agent"}, {"gpt-5-mini", "user"}, {"claude-opus-4.1", "user"},
	}
	for _, mode := range []struct {
		name string
		set  func(*Config)
	}{{"governed", governed}, {"ungoverned", nil}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			h := setup(t, ft, platform.Input{}, mode.set)
			// As the CLI does first: the proxy learns the multipliers from the reply when it has
			// none of its own.
			if status, _, _ := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil); status != 200 {
				t.Fatalf("/models: %d", status)
			}
			n := 0
			send := func(path, model, initiator string, stream bool) {
				hdr := map[string]string{}
				if initiator != "" {
					hdr["X-Initiator"] = initiator
				}
				status, _, b := h.do(t, http.MethodPost, path, h.bearer(), chatBody(model, stream), hdr)
				if status != 200 {
					t.Fatalf("%s %s: %d %s", path, model, status, b)
				}
				n++
			}
			for _, path := range inferencePaths {
				for _, stream := range []bool{false, true} {
					for _, c := range calls {
						send(path, c.model, c.initiator, stream)
					}
				}
			}
			ft.Set(func(b *faketenant.Behavior) { b.SeparateUsageChunk = true })
			for _, c := range calls {
				send("/chat/completions", c.model, c.initiator, true)
			}
			waitFor(t, "every request settled", func() bool { return h.p.Stats().Usage.Requests == int64(n) })

			want := ft.Usage()
			u := h.p.Stats().Usage
			if len(u.Models) != len(want) {
				t.Fatalf("usage has %d models, the tenant %d: %+v", len(u.Models), len(want), u.Models)
			}
			var total faketenant.UsageTotals
			for _, m := range u.Models {
				w := want[m.Model]
				if m.Requests != w.Requests || milli(m.PremiumRequests) != milli(w.Premium) || m.InputTokens != w.InputTokens ||
					m.CachedTokens != w.CachedTokens || m.OutputTokens != w.OutputTokens {
					t.Errorf("%s: proxy %+v, tenant %+v", m.Model, m, w)
				}
				total.Requests += w.Requests
				total.Premium += w.Premium
				total.InputTokens += w.InputTokens
				total.CachedTokens += w.CachedTokens
				total.OutputTokens += w.OutputTokens
			}
			if u.Requests != total.Requests || milli(u.PremiumRequests) != milli(total.Premium) || u.InputTokens != total.InputTokens ||
				u.CachedTokens != total.CachedTokens || u.OutputTokens != total.OutputTokens || u.EstimatedReplies != 0 || u.UnpricedRequests != 0 {
				t.Errorf("totals %+v, tenant %+v", u, total)
			}
			if total.CachedTokens == 0 || total.Premium == 0 {
				t.Fatalf("the tenant reported no cached tokens or premium requests: %+v", total)
			}
		})
	}
}

// Without a price list (no GET /models seen, no premium budget) user-initiated requests are
// reported as unpriced, then priced once a /models reply passes.
func TestUsageUnpricedUntilModelsSeen(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	for range 2 {
		h.do(t, http.MethodPost, "/v1/messages", h.bearer(), chatBody("claude-opus-4.1", true), nil)
	}
	waitFor(t, "both settled", func() bool { return h.p.Stats().Usage.Requests == 2 })
	if u := h.p.Stats().Usage; u.UnpricedRequests != 2 || u.PremiumRequests != 0 || u.Multipliers != "" {
		t.Errorf("before /models: %+v", u)
	}
	h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
	if u := h.p.Stats().Usage; u.UnpricedRequests != 0 || u.PremiumRequests != 20 || u.Multipliers != "agent-models-reply" {
		t.Errorf("after /models: unpriced %d, premium %v, multipliers %q", u.UnpricedRequests, u.PremiumRequests, u.Multipliers)
	}
}

// The latest X-Quota-Snapshot-* headers are kept, decoded.
func TestQuotaSnapshot(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	for range 2 {
		h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("claude-sonnet-4.5", false), nil)
	}
	waitFor(t, "both settled", func() bool { return h.p.Stats().Usage.Requests == 2 })
	q := h.p.Stats().Usage.Quota
	// The second reply's snapshot was taken after the first request's premium request.
	if len(q) != 2 || q[0].Type != "chat" || q[0].Entitlement != -1 || q[1].Type != "premium_interactions" ||
		q[1].Entitlement != faketenant.QuotaEntitlement || q[1].RemainingPercent != 99.7 || q[1].Reset != faketenant.QuotaReset ||
		q[1].OveragePermitted || q[1].At.IsZero() {
		t.Errorf("quota %+v", q)
	}
}

// An SSE reply reaches the client byte for byte while its usage is read, however the upstream
// cuts it: an event split mid-key across writes, CRLF line ends, a usage event far longer than a
// copy buffer. A reply without usage is counted with tokens estimated from its bytes.
func TestUsageReadFromAStreamCutAnywhere(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("y", 40<<10)
	pieces := []string{
		"data: {\"choices\":[{\"delta\":{\"content\":\"a \\\"usage\\\" b\"}}]}\r\n\r\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"" + long + "\"}}]}\n\n",
		"data: {\"choices\":[],\"usa",
		"ge\":{\"prompt_tokens\":1000,\"completion_tokens\":7,\"prompt_toke",
		"ns_details\":{\"cached_tokens\":900},\"pad\":\"" + long + "\"}}\r",
		"\n\r\ndata: [DONE]\n\n",
	}
	want := strings.Join(pieces, "")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/chat/completions":
			w.Header().Set("Content-Type", "text/event-stream")
			for _, p := range pieces {
				_, _ = io.WriteString(w, p)
				w.(http.Flusher).Flush()
			}
		case "/responses": // a JSON reply with no usage
			body := `{"id":"resp_1","output":[]}`
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = io.WriteString(w, body)
		}
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	h := frontOf(t, up, func(c *Config) { c.MaxTokens = 1 << 40 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url+"/chat/completions", strings.NewReader(chatBody("m", true)))
	req.Header.Set("Authorization", h.bearer())
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, []byte(want)) {
		t.Fatalf("the stream changed on the way (%v): %d bytes, want %d", err, len(got), len(want))
	}
	status, _, _ := h.do(t, http.MethodPost, "/responses", h.bearer(), chatBody("m", false), nil)
	if status != 200 {
		t.Fatalf("/responses: %d", status)
	}
	waitFor(t, "both settled", func() bool { return h.p.Stats().Usage.Requests == 2 })
	u := h.p.Stats().Usage
	inBody := int64(len(chatBody("m", false)))
	if u.InputTokens != 1000+inBody/4 || u.CachedTokens != 900 || u.OutputTokens != 7+int64(len(`{"id":"resp_1","output":[]}`))/4 || u.EstimatedReplies != 1 {
		t.Errorf("usage: in %d, cached %d, out %d, estimated %d", u.InputTokens, u.CachedTokens, u.OutputTokens, u.EstimatedReplies)
	}
	if b := u.Budgets; len(b) != 1 || b[0].Used != float64(u.InputTokens+u.OutputTokens) {
		t.Errorf("max-tokens counted %+v, usage %d", b, u.InputTokens+u.OutputTokens)
	}
}

// A client asking for a compressed reply gets the usage counted all the same: the proxy asks the
// tenant for an unencoded one.
func TestUsageReadWhateverTheClientAccepts(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	h.do(t, http.MethodPost, "/chat/completions", h.bearer(), chatBody("gpt-5-mini", true), map[string]string{"Accept-Encoding": "br, gzip"})
	waitFor(t, "settled", func() bool { return h.p.Stats().Usage.Requests == 1 })
	if got := requestsTo(ft, "/chat/completions")[0].Header.Get("Accept-Encoding"); got != "identity" {
		t.Errorf("Accept-Encoding upstream %q, want identity", got)
	}
	if u := h.p.Stats().Usage; u.InputTokens != 42 || u.EstimatedReplies != 0 {
		t.Errorf("usage %+v", u)
	}
}
