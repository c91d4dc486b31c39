package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Every path goes to the upstream configuration names for it, on each platform shape, with the
// real credential as Bearer and the path prefix of the REST API kept.
func TestRouting(t *testing.T) {
	t.Parallel()
	type want struct{ path, upstreamPath, host string }
	cases := []struct {
		name   string
		in     func(ft *faketenant.Tenant) platform.Input
		fake   string // the fake's Host option
		token  string
		mapped []string // host:443 names resolved to the fake
		want   []want
	}{
		{
			name:   "ghe.com tenant, derived hosts",
			in:     func(*faketenant.Tenant) platform.Input { return platform.Input{ServerURL: "https://acme.ghe.com"} },
			mapped: []string{"api.acme.ghe.com:443", "copilot-api.acme.ghe.com:443"},
			token:  "ghs_installationTokenSkipsDiscovery000001",
			want: []want{
				{"/models", "/models", "copilot-api.acme.ghe.com"},
				{"/chat/completions", "/chat/completions", "copilot-api.acme.ghe.com"},
				{"/responses", "/responses", "copilot-api.acme.ghe.com"},
				{"/v1/messages", "/v1/messages", "copilot-api.acme.ghe.com"},
				{"/mcp/readonly", "/mcp/readonly", "copilot-api.acme.ghe.com"},
				{"/agents/swe/internal/memory/v0/enabled", "/agents/swe/internal/memory/v0/enabled", "copilot-api.acme.ghe.com"},
				{"/copilot_internal/user", "/copilot_internal/user", "api.acme.ghe.com"},
				{"/copilot_internal/managed_settings", "/copilot_internal/managed_settings", "api.acme.ghe.com"},
			},
		},
		{
			name: "REST API with an /api/v3 prefix",
			in: func(ft *faketenant.Tenant) platform.Input {
				return platform.Input{ServerURL: "https://acme.ghe.com", APIURL: ft.URL() + "/api/v3", CopilotAPITarget: ft.URL()}
			},
			token: realToken,
			want: []want{
				{"/copilot_internal/user", "/api/v3/copilot_internal/user", hostPortOf},
				{"/copilot_internal/team_customizations", "/api/v3/copilot_internal/team_customizations", hostPortOf},
				{"/models", "/models", hostPortOf},
			},
		},
		{
			name: "GHES licensed on a GHE.com tenant",
			in: func(*faketenant.Tenant) platform.Input {
				return platform.Input{ServerURL: "https://github.example.com", CopilotHost: "acme.ghe.com"}
			},
			mapped: []string{"api.acme.ghe.com:443", "copilot-api.acme.ghe.com:443"},
			token:  "ghs_installationTokenSkipsDiscovery000001",
			want: []want{
				{"/copilot_internal/user", "/copilot_internal/user", "api.acme.ghe.com"},
				{"/models", "/models", "copilot-api.acme.ghe.com"},
			},
		},
		{
			name:   "github.com",
			fake:   "githubcopilot.com",
			in:     func(*faketenant.Tenant) platform.Input { return platform.Input{ServerURL: "https://github.com"} },
			mapped: []string{"api.githubcopilot.com:443"},
			token:  "ghs_installationTokenSkipsDiscovery000001",
			want: []want{
				{"/models", "/models", "api.githubcopilot.com"},
				{"/chat/completions", "/chat/completions", "api.githubcopilot.com"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft, err := faketenant.Start(faketenant.Options{Host: tc.fake})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ft.Close)
			h := setup(t, ft, tc.in(ft), func(c *Config) {
				c.Token = copilotToken(tc.token)
				c.Resolve = map[string]string{}
				for _, m := range tc.mapped {
					c.Resolve[m] = hostPort(ft)
				}
			})
			ft.ResetRequests()
			for _, w := range tc.want {
				method, body := http.MethodGet, ""
				switch w.path {
				case "/chat/completions", "/responses", "/v1/messages", "/embeddings", "/mcp/readonly":
					method, body = http.MethodPost, `{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}`
				}
				status, _, b := h.do(t, method, w.path, h.bearer(), body, nil)
				if status/100 != 2 {
					t.Errorf("%s %s = %d %s, want 2xx", method, w.path, status, b)
					continue
				}
				got := requestsTo(ft, w.upstreamPath)
				if len(got) != 1 {
					t.Errorf("%s reached the fake as %s %d times, want once (saw %v)", w.path, w.upstreamPath, len(got), paths(ft))
					continue
				}
				wantHost := w.host
				if wantHost == hostPortOf {
					wantHost = hostPort(ft)
				}
				if got[0].Host != wantHost {
					t.Errorf("%s went to host %s, want %s", w.path, got[0].Host, wantHost)
				}
				if got[0].Auth != "real" || got[0].AuthScheme != "Bearer" {
					t.Errorf("%s carried %s/%s credential, want the real token as Bearer", w.path, got[0].Auth, got[0].AuthScheme)
				}
				ft.ResetRequests()
			}
		})
	}
}

// hostPortOf in a want means "the fake's own 127.0.0.1:PORT".
const hostPortOf = "<fake>"

func paths(ft *faketenant.Tenant) []string {
	var out []string
	for _, r := range ft.Requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

// Requests without the client token get 401 JSON and nothing goes upstream; the client token in
// either scheme is accepted.
func TestClientTokenEnforced(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	ft.ResetRequests()
	changed := "Z" // one byte other than the token's last (1 in 62 tokens end in Z: the test passed by chance then)
	if strings.HasSuffix(h.client, changed) {
		changed = "Y"
	}
	bad := []struct {
		name string
		auth string
	}{
		{"none", ""},
		{"wrong token", "Bearer ghs_" + strings.Repeat("x", 36)},
		{"real token instead of the client token", "Bearer " + realToken},
		{"client token with a one-byte change", "Bearer " + h.client[:len(h.client)-1] + changed},
		{"client token prefix", "Bearer " + h.client[:10]},
		{"basic scheme", "Basic " + h.client},
		{"bare token", h.client},
	}
	for _, tc := range bad {
		for _, path := range []string{"/models", "/copilot_internal/user", "/copilot_internal/v2/token", StatsPath} {
			status, hdr, b := h.do(t, http.MethodGet, path, tc.auth, "", nil)
			if status != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("%s: GET %s = %d (%s), want 401 JSON", tc.name, path, status, hdr.Get("Content-Type"))
			}
			var m map[string]string
			decodeJSON(t, b, &m)
			if m["message"] == "" {
				t.Errorf("%s: 401 reply has no message: %s", tc.name, b)
			}
		}
	}
	if n := len(ft.Requests()); n != 0 {
		t.Fatalf("the fake received %d requests from unauthenticated clients: %v", n, paths(ft))
	}
	for _, auth := range []string{"Bearer " + h.client, "token " + h.client, "bearer  " + h.client} {
		if status, _, b := h.do(t, http.MethodGet, "/models", auth, "", nil); status != http.StatusOK {
			t.Errorf("Authorization %.12s…: /models = %d %s, want 200", auth, status, b)
		}
	}
	if st := h.p.Stats(); st.ClientAuthFailures != int64(len(bad)*4) {
		t.Errorf("client_auth_failures = %d, want %d", st.ClientAuthFailures, len(bad)*4)
	}
}

// Hostile requests: see hostile_test.go and the corpus under testdata/hostile.

// Bodies over the limit get 413: at once when Content-Length says so (nothing upstream), and
// while streaming when a chunked body grows past it.
func TestOversizedBody(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	const limit = 64 << 10
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxBodyBytes = limit })
	ft.ResetRequests()
	addr := strings.TrimPrefix(h.url, "http://")
	status, body := rawRequest(t, addr, fmt.Sprintf("POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", h.client, limit+1))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"message"`) {
		t.Errorf("declared oversize: %d %s, want 413 JSON", status, body)
	}
	if n := len(ft.Requests()); n != 0 {
		t.Errorf("a declared-oversize body reached the fake: %v", paths(ft))
	}
	// Chunked, so the proxy only finds out while streaming it upstream.
	big := strings.Repeat("a", 2*limit)
	req, _ := http.NewRequest(http.MethodPost, h.url+"/chat/completions", struct{ *strings.Reader }{strings.NewReader(big)})
	req.Header.Set("Authorization", h.bearer())
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversize: %d, want 413", resp.StatusCode)
	}
	for _, r := range ft.Requests() {
		if r.BodyBytes > limit {
			t.Errorf("the fake received %d body bytes, over the %d limit", r.BodyBytes, limit)
		}
	}
}

// The client's credentials and forwarding headers never go upstream; the Copilot headers are
// added when missing and kept when sent.
func TestHeaders(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.IntegrationID = "test-integration" })
	ft.ResetRequests()
	sent := map[string]string{
		"Cookie": "session=abc", "Proxy-Authorization": "Basic eHg6eXk=", "Forwarded": "for=1.2.3.4",
		"Via": "1.1 evil", "X-Forwarded-For": "1.2.3.4", "X-Forwarded-Host": "evil", "X-Forwarded-Proto": "http",
		"X-Forwarded-Port": "80", "X-Real-Ip": "1.2.3.4",
	}
	if status, _, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", sent); status != 200 {
		t.Fatalf("/models = %d %s", status, b)
	}
	kept := map[string]string{"Copilot-Integration-Id": "vscode-chat", "X-GitHub-Api-Version": "2023-07-07", "X-Interaction-Id": "client-chosen"}
	if status, _, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", kept); status != 200 {
		t.Fatalf("/models = %d %s", status, b)
	}
	if status, _, b := h.do(t, http.MethodGet, "/copilot_internal/user", h.bearer(), "", nil); status != 200 {
		t.Fatalf("/copilot_internal/user = %d %s", status, b)
	}
	got := ft.Requests()
	if len(got) != 3 {
		t.Fatalf("fake saw %v, want 3 requests", paths(ft))
	}
	for k := range sent {
		if v := got[0].Header.Values(k); len(v) > 0 {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}
	if v := got[0].Header.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+realToken {
		t.Errorf("upstream Authorization is not exactly the real token as Bearer (%d values)", len(v))
	}
	for k, want := range map[string]string{"Copilot-Integration-Id": "test-integration", "X-GitHub-Api-Version": copilot.DefaultAPIVersion, "X-Interaction-Id": "4242-1"} {
		if v := got[0].Header.Get(k); v != want {
			t.Errorf("added %s = %q, want %q", k, v, want)
		}
	}
	for k, want := range kept {
		if v := got[1].Header.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("client's %s became %q, want %q", k, v, want)
		}
	}
	if v := got[2].Header.Get("X-GitHub-Api-Version"); v != "" {
		t.Errorf("REST API request got X-GitHub-Api-Version %q: the Copilot API version is not a REST API version", v)
	}
}

// Health answers without a token and without an upstream call; stats need the token and count
// what happened.
func TestHealthAndStats(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	ft.ResetRequests()
	if status, _, b := h.do(t, http.MethodGet, HealthPath, "", "", nil); status != 200 || !strings.Contains(string(b), `"ok"`) {
		t.Errorf("health = %d %s", status, b)
	}
	if n := len(ft.Requests()); n != 0 {
		t.Errorf("health reached the fake: %v", paths(ft))
	}
	h.do(t, http.MethodPost, "/chat/completions", h.bearer(), `{"model":"gpt-4.1","messages":[]}`, nil)
	h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
	h.do(t, http.MethodGet, "/models", "", "", nil)
	h.do(t, http.MethodGet, "/_copilot-route/nope", "", "", nil)
	// The figures of a request are recorded just after its reply is sent: wait for all five.
	waitFor(t, "five requests counted", func() bool { return h.p.Stats().Requests >= 5 })
	status, _, b := h.do(t, http.MethodGet, StatsPath, h.bearer(), "", nil)
	if status != 200 {
		t.Fatalf("stats = %d %s", status, b)
	}
	var st Stats
	decodeJSON(t, b, &st)
	count := func(route string, status int) int64 {
		for _, rc := range st.Routes {
			if rc.Route == route && rc.Status == status {
				return rc.Count
			}
		}
		return 0
	}
	for _, c := range []struct {
		route  string
		status int
		want   int64
	}{{"/chat/completions", 200, 1}, {"/models", 200, 1}, {"/models", 401, 1}, {"local:health", 200, 1}, {"local:not-found", 404, 1}} {
		if got := count(c.route, c.status); got != c.want {
			t.Errorf("routes[%s %d] = %d, want %d (routes %+v)", c.route, c.status, got, c.want, st.Routes)
		}
	}
	if st.Requests != 5 || st.BytesIn == 0 || st.BytesOut == 0 || st.LatencyMS.Count != 2 || st.DurationMS.Count != 2 || st.ClientAuthFailures != 1 {
		t.Errorf("stats = %+v", st)
	}
	if len(st.Upstreams) != 2 || st.Upstreams[0].Source != "copilot-api-target" || st.Exchange.State != "not-requested" {
		t.Errorf("upstreams/exchange = %+v / %+v", st.Upstreams, st.Exchange)
	}
	// One log line per request, with the agreed fields and no header values.
	var reqLines int
	for _, l := range logLines(t, h.log.Bytes()) {
		if l["msg"] != "request" || l["route"] == "local:stats" {
			continue
		}
		reqLines++
		for _, k := range []string{"time", "route", "method", "path", "status", "upstream", "duration_ms", "bytes_in", "bytes_out", "scheme", "retry"} {
			if _, ok := l[k]; !ok {
				t.Errorf("log line lacks %q: %v", k, l)
			}
		}
	}
	if reqLines != 5 {
		t.Errorf("%d request log lines, want 5", reqLines)
	}
}
