package proxy

import (
	"bytes"

	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

var inferencePaths = []string{"/chat/completions", "/responses", "/v1/messages"}

func chatBody(model string, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"stream":%t,"messages":[{"role":"user","content":"hi"}],"input":"hi","max_tokens":10}`, model, stream)
}

// inferenceSeen counts the requests the tenant got on the inference routes.
func inferenceSeen(ft *faketenant.Tenant) int {
	n := 0
	for _, p := range inferencePaths {
		n += len(requestsTo(ft, p))
	}
	return n
}

// refusal decodes a governance refusal and checks its shape: the message and the fields naming
// the rule and the input, the same message under "error" for OpenAI/Anthropic clients.
func refusal(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	decodeJSON(t, b, &m)
	msg, _ := m["message"].(string)
	e, _ := m["error"].(map[string]any)
	if msg == "" || e == nil || e["message"] != msg || e["code"] != m["refused"] || m["input"] == nil || m["rule"] == nil {
		t.Errorf("refusal %s: want message, refused, rule, input and error{message, code}", b)
	}
	return m
}

// A model the policy refuses gets 403 naming the model, the rule and the input that widens it,
// on every inference route, streamed or not; nothing reaches the tenant.
func TestModelPolicyRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		allowed, blocked []string
		model            string
		refused, input   string
		rule             string
	}{
		{"blocked exactly", nil, []string{"claude-opus-4.1"}, "claude-opus-4.1", "model-blocked", "blocked-models", "blocked-models: claude-opus-4.1"},
		{"blocked by a glob, other case", nil, []string{"Claude-Opus-*"}, "claude-opus-4.1", "model-blocked", "blocked-models", "blocked-models: Claude-Opus-*"},
		{"blocked, padded and upper-cased by the agent", nil, []string{"gpt-5"}, " GPT-5 ", "model-blocked", "blocked-models", "blocked-models: gpt-5"},
		{"not allowed", []string{"gpt-5-mini", "o4-*"}, nil, "claude-opus-4.1", "model-not-allowed", "allowed-models", "allowed-models: gpt-5-mini, o4-*"},
		{"allowed but blocked", []string{"claude-*"}, []string{"claude-opus-*"}, "claude-opus-4.1", "model-blocked", "blocked-models", "blocked-models: claude-opus-*"},
	}
	for _, tc := range cases {
		for _, path := range inferencePaths {
			for _, stream := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s %s stream=%t", tc.name, path, stream), func(t *testing.T) {
					t.Parallel()
					ft := startTenant(t, realToken)
					h := setup(t, ft, platform.Input{}, func(c *Config) { c.AllowedModels, c.BlockedModels = tc.allowed, tc.blocked })
					status, _, b := h.do(t, http.MethodPost, path, h.bearer(), chatBody(tc.model, stream), nil)
					if status != http.StatusForbidden {
						t.Fatalf("status %d %s, want 403", status, b)
					}
					m := refusal(t, b)
					if m["refused"] != tc.refused || m["input"] != tc.input || m["rule"] != tc.rule || m["model"] != tc.model {
						t.Errorf("refusal %s, want refused %s, input %s, rule %q, model %q", b, tc.refused, tc.input, tc.rule, tc.model)
					}
					if msg := m["message"].(string); !strings.Contains(msg, tc.model) || !strings.Contains(msg, tc.input) {
						t.Errorf("message %q does not name the model and the input", msg)
					}
					if n := inferenceSeen(ft); n != 0 {
						t.Errorf("the tenant got %d inference requests, want none", n)
					}
					u := h.p.Stats().Usage
					if u.RefusedByPolicy != 1 || u.Requests != 0 || len(u.Models) != 1 || u.Models[0].RefusedByPolicy != 1 {
						t.Errorf("usage %+v, want one policy refusal and no request", u)
					}
				})
			}
		}
	}
}

// A permitted model goes through; its body reaches the tenant byte for byte (the proxy reads the
// model, it never re-encodes), whatever the spacing, escapes and member order.
func TestModelPolicyForwardsTheBodyUnchanged(t *testing.T) {
	t.Parallel()
	bodies := []string{
		chatBody("gpt-5-mini", false),
		"{\n  \"messages\" : [ {\"role\":\"user\",\"content\":\"h\\u00e9 \\\"model\\\": \\\"gpt-5\\\"\"} ],\n\t\"model\":\"gpt\\u002d5-mini\" , \"n\": 1e0 }",
		`{"messages":[{"role":"user","content":"{\"model\":\"claude-opus-4.1\"}"}],"metadata":{"model":"claude-opus-4.1"},"model":"o4-mini"}`,
		`{"model":"gpt-5-mini","input":"` + strings.Repeat("x", 300<<10) + `"}`,
	}
	for i, body := range bodies {
		for _, path := range inferencePaths {
			t.Run(fmt.Sprintf("%d%s", i, path), func(t *testing.T) {
				t.Parallel()
				ft := startTenant(t, realToken)
				h := setup(t, ft, platform.Input{}, func(c *Config) {
					c.AllowedModels, c.BlockedModels = []string{"gpt-5-mini", "o4-*"}, []string{"claude-opus-*"}
				})
				status, _, b := h.do(t, http.MethodPost, path, h.bearer(), body, nil)
				if status != http.StatusOK {
					t.Fatalf("status %d %.300s, want 200", status, b)
				}
				got := requestsTo(ft, path)
				if len(got) != 1 || !bytes.Equal(got[0].Body, []byte(body)) {
					t.Fatalf("the tenant got %d requests; body equal: %t", len(got), len(got) == 1 && bytes.Equal(got[0].Body, []byte(body)))
				}
			})
		}
	}
}

// Under a policy, a body the proxy cannot judge is refused: the tenant would pick a model itself,
// or read another "model" than the proxy did.
func TestModelPolicyRefusesUnreadableBodies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		header     map[string]string
		refused    string
	}{
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, nil, bodyNoModel},
		{"model only nested", `{"metadata":{"model":"gpt-5-mini"},"messages":[]}`, nil, bodyNoModel},
		{"not JSON", `model=gpt-5-mini`, nil, bodyNotJSON},
		{"JSON with trailing bytes", `{"model":"gpt-5-mini"} {"model":"claude-opus-4.1"}`, nil, bodyNotJSON},
		{"empty body", ``, nil, bodyNotJSON},
		{"an array", `[{"model":"gpt-5-mini"}]`, nil, bodyNotObject},
		{"model null", `{"model":null}`, nil, bodyModelNotString},
		{"model a list", `{"model":["gpt-5-mini"]}`, nil, bodyModelNotString},
		{"model twice", `{"model":"gpt-5-mini","model":"claude-opus-4.1"}`, nil, bodyModelTwice},
		{"model twice, escaped", `{"model":"gpt-5-mini","mod\u0065l":"claude-opus-4.1"}`, nil, bodyModelCase},
		{"a case variant", `{"model":"gpt-5-mini","Model":"claude-opus-4.1"}`, nil, bodyModelCase},
		{"only a case variant", `{"MODEL":"gpt-5-mini"}`, nil, bodyModelCase},
		{"gzip", `{"model":"gpt-5-mini"}`, map[string]string{"Content-Encoding": "gzip"}, bodyEncoded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			h := setup(t, ft, platform.Input{}, func(c *Config) { c.AllowedModels = []string{"gpt-5-mini"} })
			status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), tc.body, tc.header)
			if status != http.StatusForbidden {
				t.Fatalf("status %d %s, want 403", status, b)
			}
			if m := refusal(t, b); m["refused"] != tc.refused || m["input"] != "allowed-models" {
				t.Errorf("refusal %s, want refused %s by allowed-models", b, tc.refused)
			}
			if n := inferenceSeen(ft); n != 0 {
				t.Errorf("the tenant got %d inference requests, want none", n)
			}
		})
	}
}

// GET /models shows only the permitted models; the other members of the reply stay.
func TestModelsFiltered(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) {
		c.AllowedModels, c.BlockedModels = []string{"claude-*", "GPT-5-MINI", "o4-*"}, []string{"claude-opus-*"}
	})
	for i := range 3 { // the second and third come from the memo
		status, hdr, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
		if status != 200 {
			t.Fatalf("status %d %s", status, b)
		}
		var reply struct {
			Object string `json:"object"`
			Data   []struct {
				ID      string         `json:"id"`
				Billing map[string]any `json:"billing"`
			} `json:"data"`
		}
		decodeJSON(t, b, &reply)
		var ids []string
		for _, m := range reply.Data {
			ids = append(ids, m.ID)
			if m.Billing == nil {
				t.Errorf("model %s lost its billing member", m.ID)
			}
		}
		sort.Strings(ids)
		if want := "claude-sonnet-4 claude-sonnet-4.5 gpt-5-mini o4-mini"; strings.Join(ids, " ") != want || reply.Object != "list" {
			t.Errorf("reply %d: object %q, models %v, want list of %s", i, reply.Object, ids, want)
		}
		if hdr.Get("Content-Length") != fmt.Sprint(len(b)) {
			t.Errorf("Content-Length %s for %d bytes", hdr.Get("Content-Length"), len(b))
		}
	}
	// Without a policy the reply is the tenant's, byte for byte.
	h2 := setup(t, ft, platform.Input{}, nil)
	_, _, b := h2.do(t, http.MethodGet, "/models", h2.bearer(), "", nil)
	direct := do(t, ft, "/models")
	if !bytes.Equal(b, direct) {
		t.Errorf("without a policy /models changed: %d bytes, the tenant sent %d", len(b), len(direct))
	}
}

// do asks the tenant directly with the real token.
func do(t *testing.T, ft *faketenant.Tenant, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ft.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+realToken)
	resp, err := ft.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return buf.Bytes()
}

// allow-routes cannot carry inference past the policy or the budgets: a widened route whose
// path ends like an inference route, or whose body names a model, messages, an input or a prompt,
// or cannot be read, is refused when a policy or a budget is set; other widened traffic passes.
func TestWidenedRoutesCannotBypassGovernance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, path, body string
		header           map[string]string
		refused          bool
	}{
		{"an inference path under /v1", "/v1/chat/completions", chatBody("claude-opus-4.1", false), nil, true},
		{"a trailing slash", "/chat/completions/", chatBody("claude-opus-4.1", false), nil, true},
		{"another case", "/Responses", chatBody("gpt-5-mini", false), nil, true},
		{"a model in the body", "/v1/engines/x/run", `{"model":"claude-opus-4.1"}`, nil, true},
		{"messages and no model", "/anything", `{"messages":[{"role":"user","content":"hi"}]}`, nil, true},
		{"a prompt", "/anything", `{"Prompt":"hi"}`, nil, true},
		{"a body that is not JSON", "/anything", `model=claude-opus-4.1`, nil, true},
		{"an encoded body", "/anything", `{"x":1}`, map[string]string{"Content-Encoding": "gzip"}, true},
		{"JSON-RPC passes", "/mcp/other", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"input":"x"}}`, nil, false},
		{"no body passes", "/anything", ``, nil, false},
	}
	for _, gov := range []struct {
		name string
		set  func(*Config)
	}{
		{"policy", func(c *Config) { c.BlockedModels = []string{"claude-opus-*"} }},
		{"max-requests", func(c *Config) { c.MaxRequests = 100 }},
	} {
		for _, tc := range cases {
			t.Run(gov.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ft := startTenant(t, realToken)
				h := setup(t, ft, platform.Input{}, func(c *Config) { gov.set(c); c.AllowRoutes = []string{"POST /*"} })
				ft.ResetRequests()
				status, _, b := h.do(t, http.MethodPost, tc.path, h.bearer(), tc.body, tc.header)
				seen := len(ft.Requests())
				if !tc.refused {
					if status == http.StatusForbidden || seen != 1 {
						t.Fatalf("status %d %s, tenant saw %d: want it forwarded", status, b, seen)
					}
					return
				}
				if status != http.StatusForbidden || seen != 0 {
					t.Fatalf("status %d %s, tenant saw %d: want 403 and nothing upstream", status, b, seen)
				}
				if m := refusal(t, b); m["refused"] != "inference-on-widened-route" || m["input"] != "allow-routes" || m["rule"] != "allow-routes: POST /*" {
					t.Errorf("refusal %s", b)
				}
			})
		}
	}
	// Without a policy or a budget the widening is the operator's business.
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.AllowRoutes = []string{"POST /*"} })
	if status, _, b := h.do(t, http.MethodPost, "/chat/completions/", h.bearer(), chatBody("claude-opus-4.1", false), nil); status == http.StatusForbidden {
		t.Errorf("ungoverned widened route refused: %s", b)
	}
}

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"gpt-5", "gpt-5", true},
		{"gpt-5", "gpt-5-mini", false},
		{"gpt-5*", "gpt-5-mini", true},
		{"gpt-5*", "gpt-5", true},
		{"*", "", true},
		{"*", "anything", true},
		{"*-mini", "gpt-5-mini", true},
		{"*-mini", "gpt-5-mini-2", false},
		{"claude-*-4.5", "claude-sonnet-4.5", true},
		{"claude-*-4.5", "claude-sonnet-4.51", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a**c", "ac", true},
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %t, want %t", c.pattern, c.s, got, c.want)
		}
	}
}

func TestModelOf(t *testing.T) {
	t.Parallel()
	cases := []struct{ body, model, problem string }{
		{`{"model":"gpt-5"}`, "gpt-5", ""},
		{` { "a" : {"model":"x"}, "model" : "gpt\u002d5" } `, "gpt-5", ""},
		{`{"s":"\"model\":\"x\"","model":"m"}`, "m", ""},
		{`{"model":"a\\"}`, `a\`, ""},
		{`{"model":""}`, "", ""},
		{`{}`, "", bodyNoModel},
		{`{"model":1}`, "", bodyModelNotString},
		{`{"models":"x"}`, "", bodyNoModel},
		{`{"modeL":"x"}`, "", bodyModelCase},
		{`{"m\u006fdel":"x"}`, "", bodyModelCase},
		{`"model"`, "", bodyNotObject},
		{`{"model":"x",}`, "", bodyNotJSON},
	}
	for _, c := range cases {
		m, p := modelOf([]byte(c.body))
		if m != c.model || p != c.problem {
			t.Errorf("modelOf(%s) = %q, %q; want %q, %q", c.body, m, p, c.model, c.problem)
		}
	}
}

// The sniffer that reports the model of a streamed body finds what modelOf finds, however the
// body is cut into pieces.
func TestModelSnifferAgreesWithModelOf(t *testing.T) {
	t.Parallel()
	bodies := []string{
		chatBody("gpt-5-mini", true),
		`{"messages":[{"role":"user","content":"a \"model\": \"x\" \\\\"}],"stream":true,"model":"claude-sonnet-4.5"}`,
		`{"a":[1,2,{"model":"nested"}],"b":null,"model":"top"}`,
		`{"n":-1.5e3,"t":true,"model":"m"}`,
		`{"input":"` + strings.Repeat(`\\\"x`, 2000) + `","model":"after-escapes"}`,
		`{"messages":[]}`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, body := range bodies {
		want, _ := modelOf([]byte(body))
		for range 200 {
			s := &modelSniffer{}
			b := []byte(body)
			for len(b) > 0 {
				n := 1 + rng.IntN(min(len(b), 40))
				s.feed(b[:n])
				b = b[n:]
			}
			if got := s.Model(); got != want {
				t.Fatalf("sniffer found %q in %.80s…, modelOf %q", got, body, want)
			}
		}
	}
}

// The sniffer caps what it keeps.
func TestModelSnifferCap(t *testing.T) {
	t.Parallel()
	s := &modelSniffer{}
	s.feed([]byte(`{"model":"` + strings.Repeat("m", 1000) + `"}`))
	if got := s.Model(); len(got) > sniffCap+4 || !strings.HasPrefix(got, "mmm") {
		t.Errorf("sniffed %d bytes", len(got))
	}
}
