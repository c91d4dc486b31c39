package summary_test

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/diagnose/diagnosetest"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/proxy"
	"github.com/copilot-route/copilot-route/internal/summary"
)

const clientToken = "ghs_CLIENTtokenOFtheTRAFFICtest0123456789"

// trafficCase drives real requests through the proxy to a fake tenant in one mode; the report is
// rendered from the proxy's own figures.
type trafficCase struct {
	name  string
	setup func(t testing.TB, w *diagnosetest.World)
	calls []call
	allow []string            // allow-routes
	gov   func(*proxy.Config) // a model policy and budgets
}

type call struct {
	method, path, body string
	noAuth             bool
	agent              bool // X-Initiator: agent
}

// infer is a streamed inference request for model on path.
func infer(path, model string, agent bool) call {
	return call{method: "POST", path: path, agent: agent,
		body: `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"hi"}],"input":"hi"}`}
}

var (
	chatStream = call{method: "POST", path: "/chat/completions", body: `{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"hi"}]}`}
	chatPlain  = call{method: "POST", path: "/chat/completions", body: `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`}
	models     = call{method: "GET", path: "/models"}
)

var trafficCases = []trafficCase{
	{name: "ghe-seed", calls: []call{models, models, chatStream, chatStream, chatPlain,
		{method: "GET", path: "/copilot_internal/v2/token"}, {method: "GET", path: "/models", noAuth: true}},
		setup: func(t testing.TB, w *diagnosetest.World) {
			ft := w.Tenant(t, "acme.ghe.com", diagnosetest.PATToken, "api.acme.ghe.com", "copilot-api.acme.ghe.com")
			ft.Set(func(b *faketenant.Behavior) {
				b.RequireScheme = "token"
				b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by personal access token"
			})
		}},
	{name: "ghe-healthy", calls: []call{models, chatStream, chatStream, chatStream},
		setup: func(t testing.TB, w *diagnosetest.World) {
			w.Tenant(t, "acme.ghe.com", diagnosetest.PATToken, "api.acme.ghe.com", "copilot-api.acme.ghe.com")
		}},
	{name: "ghe-unreachable", calls: []call{models, chatPlain},
		setup: func(t testing.TB, w *diagnosetest.World) {
			closed := diagnosetest.ClosedPort(t)
			w.Dial["api.acme.ghe.com"], w.Dial["copilot-api.acme.ghe.com"] = closed, closed
		}},
	// A prompt-injected agent tries the REST API, GraphQL and the full MCP server; the operator
	// allowed one extra route.
	{name: "ghe-policy", allow: []string{"GET /copilot_internal/content_exclusions", "POST /mcp/*"},
		calls: []call{models, chatStream,
			{method: "PUT", path: "/repos/acme/app/contents/x", body: `{"content":"eA=="}`},
			{method: "PUT", path: "/repos/acme/app/contents/x", body: `{"content":"eA=="}`},
			{method: "POST", path: "/graphql", body: `{"query":"mutation{deleteRepository}"}`},
			{method: "DELETE", path: "/repos/acme/app"},
			{method: "GET", path: "/copilot_internal/v2/token.json"},
			{method: "GET", path: "/copilot_internal/content_exclusions"}},
		setup: func(t testing.TB, w *diagnosetest.World) {
			w.Tenant(t, "acme.ghe.com", diagnosetest.PATToken, "api.acme.ghe.com", "copilot-api.acme.ghe.com")
		}},
	// A job with a model policy and every budget: the agent tries a blocked model, an unlisted
	// one, spends its premium requests, then its requests.
	{name: "ghe-governed", calls: []call{models,
		infer("/v1/messages", "claude-opus-4.1", false),
		infer("/chat/completions", "gpt-5", false),
		infer("/v1/messages", "claude-sonnet-4.5", false),
		infer("/responses", "claude-sonnet-4.5", true),
		infer("/chat/completions", "o4-mini", false),
		infer("/chat/completions", "claude-sonnet-4.5", false),
		infer("/responses", "gpt-5-mini", false),
		infer("/responses", "gpt-5-mini", false),
		infer("/responses", "gpt-5-mini", false)},
		gov: func(c *proxy.Config) {
			c.AllowedModels, c.BlockedModels = []string{"claude-*", "gpt-5-mini", "o4-*"}, []string{"claude-opus-*"}
			c.MaxRequests, c.MaxPremiumRequests, c.MaxTokens = 6, 1.5, 1_000_000
		},
		setup: func(t testing.TB, w *diagnosetest.World) {
			w.Tenant(t, "acme.ghe.com", diagnosetest.PATToken, "api.acme.ghe.com", "copilot-api.acme.ghe.com")
		}},
	{name: "ghe-reset-mid-stream", calls: []call{models, chatStream, chatStream},
		setup: func(t testing.TB, w *diagnosetest.World) {
			ft := w.Tenant(t, "acme.ghe.com", diagnosetest.PATToken, "api.acme.ghe.com", "copilot-api.acme.ghe.com")
			ft.Set(func(b *faketenant.Behavior) { b.ResetAfterChunks = 2 })
		}},
}

func (tc trafficCase) run(t *testing.T) proxy.Stats {
	t.Helper()
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com"})
	if err != nil {
		t.Fatal(err)
	}
	w := &diagnosetest.World{Tenants: map[string]*faketenant.Tenant{}, Dial: map[string]string{}}
	tc.setup(t, w)
	roots := x509.NewCertPool()
	for _, pem := range w.CAs {
		roots.AppendCertsFromPEM(pem)
	}
	cfg := proxy.Config{
		Endpoints: ep, Token: copilot.NewToken(diagnosetest.PATToken), ClientToken: copilot.NewToken(clientToken),
		RootCAs: roots, DialContext: diagnose.StaticDialer(w.Dial), AllowRoutes: tc.allow,
		// Generous: no case here is about timeouts, and a loaded CI machine must not make one.
		DialTimeout: 20 * time.Second, TLSHandshakeTimeout: 20 * time.Second,
	}
	if tc.gov != nil {
		tc.gov(&cfg)
	}
	p, err := proxy.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	for _, c := range tc.calls {
		req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if !c.noAuth {
			req.Header.Set("Authorization", "Bearer "+clientToken)
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.agent {
			req.Header.Set("X-Initiator", "agent")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // a reset stream ends in an error here: expected
		resp.Body.Close()
	}
	// A request's figures are recorded when its handler returns, a moment after the client read
	// the reply.
	for i := 0; p.Stats().Requests < int64(len(tc.calls)); i++ {
		if i == 2000 {
			t.Fatalf("the proxy counted %d of %d requests", p.Stats().Requests, len(tc.calls))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p.Stats()
}

var loopbackPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// normalizeStats replaces what differs between runs or with the fake's catalogue: times,
// measured latencies and the bytes of the replies.
func normalizeStats(s proxy.Stats) proxy.Stats {
	s.StartedAt = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s.UptimeSeconds = 754
	if s.BytesOut > 0 {
		s.BytesOut = 14_000 // the fake's reply sizes are the fake's business
	}
	fix := func(p proxy.Percentiles, scale float64) proxy.Percentiles {
		if p.Count == 0 {
			return p
		}
		return proxy.Percentiles{Count: p.Count, P50: 84.2 * scale, P95: 640 * scale, P99: 961 * scale, Max: 1210 * scale}
	}
	s.LatencyMS, s.DurationMS = fix(s.LatencyMS, 1), fix(s.DurationMS, 3)
	for i := range s.SchemeSwitches {
		s.SchemeSwitches[i].At = s.StartedAt.Add(3 * time.Second)
	}
	for i := range s.Usage.Quota {
		s.Usage.Quota[i].At = s.StartedAt.Add(time.Minute)
	}
	s.Discovery.Reason = loopbackPort.ReplaceAllString(s.Discovery.Reason, "127.0.0.1:PORT")
	s.Exchange.Message = loopbackPort.ReplaceAllString(s.Exchange.Message, "127.0.0.1:PORT")
	return s
}

func TestTrafficGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range trafficCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stats := normalizeStats(tc.run(t))
			md := summary.Traffic(stats)
			var ann strings.Builder
			for _, a := range summary.TrafficAnnotations(stats) {
				ann.WriteString("::" + a.Level + " title=" + a.Title + "::" + a.Message + "\n")
			}
			for _, s := range []string{md, ann.String()} {
				assertNoToken(t, s)
				if strings.Contains(s, clientToken) {
					t.Fatal("the client token leaked into the traffic report")
				}
			}
			golden(t, "traffic-"+tc.name+".md", md)
			golden(t, "traffic-"+tc.name+".annotations", ann.String())
		})
	}
}

// An empty run (the proxy never got a request) still renders, without percentiles.
func TestTrafficEmpty(t *testing.T) {
	t.Parallel()
	md := summary.Traffic(proxy.Stats{Discovery: proxy.DiscoveryStats{State: "skipped"}, Exchange: proxy.ExchangeStats{State: "not-requested"}})
	if !strings.Contains(md, "0 requests") || strings.Contains(md, "| to the first byte") {
		t.Errorf("empty report:\n%s", md)
	}
}
