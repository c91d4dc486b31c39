package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/platform"
)

type refusedCase struct {
	line           int
	method, target string
	status         int
}

func loadRefused(t *testing.T) []refusedCase {
	t.Helper()
	b, err := os.ReadFile("../../testdata/routes/refused.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []refusedCase
	for i, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		c := refusedCase{line: i + 1, method: f[0], target: f[1], status: http.StatusForbidden}
		if len(f) == 3 {
			if c.status, err = strconv.Atoi(f[2]); err != nil {
				t.Fatalf("refused.txt:%d: status %q", i+1, f[2])
			}
		}
		out = append(out, c)
	}
	return out
}

// rawDo sends one request written exactly as given (method case, percent-encoding) with the
// client token on a fresh connection, and reads the reply.
func rawDo(t *testing.T, h *harness, method, target string, hdr string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	body := ""
	if method != "GET" && method != "HEAD" {
		body = `{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}`
	}
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: proxy\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		method, target, hdr, len(body), body)
	req := &http.Request{Method: method}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("%s %s: read reply: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// A hostile agent with a valid client token: every request of the corpus is refused with the
// status the corpus names, the 403 names the method and path and how to allow it, and nothing
// reaches the upstream. The traffic report lists the refused routes.
func TestRoutePolicyRefuses(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	cases := loadRefused(t)
	if len(cases) < 100 {
		t.Fatalf("the corpus has %d cases, want the whole list", len(cases))
	}
	ft.ResetRequests()
	auth := "Authorization: " + h.bearer() + "\r\n"
	for _, c := range cases {
		resp, b := rawDo(t, h, c.method, c.target, auth)
		if resp.StatusCode != c.status {
			t.Errorf("refused.txt:%d: %s %s = %d %s, want %d", c.line, c.method, c.target, resp.StatusCode, b, c.status)
			continue
		}
		if c.status == http.StatusForbidden && c.method != "HEAD" {
			var m map[string]string
			decodeJSON(t, b, &m)
			if m["method"] != c.method || m["refused"] == "" || !strings.Contains(m["message"], c.method+" ") {
				t.Errorf("refused.txt:%d: %s %s: the 403 does not name the request: %s", c.line, c.method, c.target, b)
			}
			if m["refused"] == "route-not-allowed" && !strings.Contains(m["message"], "allow-routes") {
				t.Errorf("refused.txt:%d: the 403 does not say how to allow the route: %s", c.line, b)
			}
		}
		if got := ft.Requests(); len(got) > 0 {
			t.Fatalf("refused.txt:%d: %s %s reached the upstream: %v", c.line, c.method, c.target, paths(ft))
		}
	}
	st := h.p.Stats()
	if st.Policy.Refused == 0 || len(st.Policy.TopRefused) != 10 || st.Policy.OtherRefused == 0 {
		t.Errorf("policy stats %+v, want 10 top refused routes and the rest counted", st.Policy)
	}
	if top := st.Policy.TopRefused; top[0].Method != "POST" || top[0].Path != "/graphql" || top[0].Count != 2 || top[1].Count != 1 {
		t.Errorf("top refused %+v, want POST /graphql (sent twice) first", top[:2])
	}
}

// Every default route reaches its upstream with the real credential at exactly its path; routes
// an operator allows do too, prefix ones below their prefix only, and the refusals in between
// stay refused.
func TestRoutePolicyAllows(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) {
		c.Endpoints.CopilotRESTAPIURL = ft.URL() + "/api/v3"
		c.Endpoints.CopilotAPIURL = ft.URL() + "/copilot"
		c.AllowRoutes = []string{"GET /copilot_internal/content_exclusions", "POST /mcp/*", "GET /copilot_internal/extra/*", "get /models"}
	})
	type want struct {
		method, target, upstream string
	}
	var cases []want
	for _, r := range defaultRules {
		if r.segments {
			r.path = strings.ReplaceAll(r.path, "*", "octo-app") // one segment each
		}
		switch r.dest {
		case destCopilot:
			cases = append(cases, want{r.method, r.path + "?x=1", "/copilot" + r.path})
		case destREST:
			cases = append(cases, want{r.method, r.path, "/api/v3" + r.path})
		}
	}
	cases = append(cases,
		want{"GET", "/copilot_internal/content_exclusions", "/api/v3/copilot_internal/content_exclusions"},
		want{"POST", "/mcp/", "/copilot/mcp/"},
		want{"POST", "/mcp/x/y", "/copilot/mcp/x/y"},
		want{"POST", "/mcp/%78", "/copilot/mcp/x"}, // judged and forwarded decoded
		want{"GET", "/copilot_internal/extra/a", "/api/v3/copilot_internal/extra/a"},
		want{"get", "/models", "/copilot/models"},
	)
	auth := "Authorization: " + h.bearer() + "\r\n"
	for _, c := range cases {
		ft.ResetRequests()
		resp, b := rawDo(t, h, c.method, c.target, auth)
		got := ft.Requests()
		if len(got) != 1 {
			t.Errorf("%s %s = %d %s: reached the upstream %d times, want once", c.method, c.target, resp.StatusCode, b, len(got))
			continue
		}
		if got[0].Path != c.upstream || got[0].Method != c.method || got[0].Auth != "real" {
			t.Errorf("%s %s reached the upstream as %s %s (%s credential), want %s %s with the real one",
				c.method, c.target, got[0].Method, got[0].Path, got[0].Auth, c.method, c.upstream)
		}
	}
	for _, c := range []struct{ method, target string }{
		{"GET", "/mcp/x"}, {"POST", "/mcp"}, {"GET", "/copilot_internal/extra"}, {"POST", "/copilot_internal/content_exclusions"},
		{"GET", "/copilot_internal/v2/token/"}, {"POST", "/mcp/%2525252e"},
	} {
		ft.ResetRequests()
		if resp, b := rawDo(t, h, c.method, c.target, auth); resp.StatusCode != http.StatusForbidden || len(ft.Requests()) != 0 {
			t.Errorf("%s %s = %d %s (upstream saw %v), want 403 and nothing upstream", c.method, c.target, resp.StatusCode, b, paths(ft))
		}
	}
	st := h.p.Stats()
	if len(st.Policy.Widened) != 4 || st.Policy.Widened[1] != "POST /mcp/*" {
		t.Errorf("widened routes in the stats: %q", st.Policy.Widened)
	}
}

func TestAllowRouteValidation(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"GET /x", "POST /mcp/*", "  DELETE   /a/b  ", "PROPFIND /dav", "get /models", "GET /copilot_internal/*"} {
		if err := ValidateAllowRoute(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "GET", "/x", "GET x", "GET //x", "GET /a/../b", "GET /a/./b", "GET /a%2Fb", "GET /a*",
		"GET /a/*/b", "GET /a?x", "GET /a#x", "GE(T /x", "CONNECT /x", "TRACE /x", "GET /x extra",
		"GET /copilot_internal/v2/token", "POST /copilot_internal/v2/token/*", "GET /copilot_internal/v2/token.json",
		"GET /_copilot-route/stats", "GET /a\\b"} {
		err := ValidateAllowRoute(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "METHOD /path") {
			t.Errorf("%q: the error does not show the form: %v", bad, err)
		}
	}
	if _, err := New(t.Context(), Config{Token: copilotToken(realToken), ClientToken: NewClientToken(),
		AllowRoutes: []string{"GET nope"}}); err == nil || !strings.Contains(err.Error(), "allow-route") {
		t.Errorf("New with a bad allow-route: %v", err)
	}
}

// The client token is accepted where clients send a key (Authorization, x-api-key, api-key), and
// no client credential header — nor any header holding the client token — goes upstream.
func TestClientCredentialHeaders(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	for _, c := range []struct {
		name, hdr string
		status    int
	}{
		{"bearer", "Authorization: Bearer " + h.client + "\r\n", 200},
		{"token scheme", "Authorization: token " + h.client + "\r\n", 200},
		{"x-api-key (anthropic)", "x-api-key: " + h.client + "\r\n", 200},
		{"api-key", "api-key: " + h.client + "\r\n", 200},
		{"everything at once", "Authorization: Bearer " + h.client + "\r\nX-Api-Key: " + h.client + "\r\nApi-Key: " + h.client +
			"\r\nX-GitHub-Token: " + h.client + "\r\nX-Custom: prefix " + h.client + "\r\nCookie: s=" + h.client + "\r\n", 200},
		{"wrong x-api-key", "x-api-key: ghs_wrong\r\n", 401},
		{"authorization wins over x-api-key", "Authorization: Bearer ghs_wrong\r\nx-api-key: " + h.client + "\r\n", 401},
		{"x-api-key twice", "x-api-key: " + h.client + "\r\nx-api-key: " + h.client + "\r\n", 401},
		{"basic scheme", "Authorization: Basic " + h.client + "\r\n", 401},
	} {
		ft.ResetRequests()
		resp, b := rawDo(t, h, "GET", "/models", c.hdr)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.status)
			continue
		}
		for _, r := range ft.Requests() {
			if r.Auth != "real" {
				t.Errorf("%s: upstream saw a %s credential", c.name, r.Auth)
			}
			for k, vs := range r.Header {
				switch k {
				case "X-Api-Key", "Api-Key", "X-Github-Token", "X-Custom", "Cookie":
					t.Errorf("%s: header %s went upstream", c.name, k)
				}
				if strings.Contains(strings.Join(vs, " "), h.client) {
					t.Errorf("%s: the client token reached the upstream in %s", c.name, k)
				}
			}
		}
	}
}

// The default policy is exactly what the real Copilot CLI was recorded sending
// (testdata/cli-traffic.tsv, scripts/record-cli-traffic.sh): every route it sent to a base URL
// the proxy stands behind is forwarded to the upstream that base URL names, every default rule
// (but the older clients' token exchange, answered by the shim) was recorded, and what it sent
// only to other hosts (telemetry, GitHub's releases) is refused.
func TestPolicyMatchesRecordings(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../testdata/cli-traffic.tsv")
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[routeKey]bool{}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		f := strings.Split(l, "\t")
		if len(f) < 5 {
			t.Fatalf("cli-traffic.tsv:%d: %q", i+2, l)
		}
		base, method, path := f[2], f[3], f[4]
		rl := p.match(method, path)
		var want dest
		switch base {
		case "COPILOT_API_URL", "COPILOT_PROVIDER_BASE_URL":
			want = destCopilot
		case "COPILOT_DEBUG_GITHUB_API_URL":
			want = destREST
		default:
			if rl == nil {
				continue // sent straight to a host; the proxy never sees it
			}
			if strings.HasPrefix(base, "api.") && rl.dest == destREST || strings.HasPrefix(base, "copilot-api.") && rl.dest == destCopilot {
				continue // the same route a base URL sends (the CLI without the DEBUG variable)
			}
			t.Errorf("cli-traffic.tsv:%d: %s %s, which the CLI sent only to %s, is forwarded by %s", i+2, method, path, base, rl)
			continue
		}
		if rl == nil || rl.dest != want || rl.widen {
			t.Errorf("cli-traffic.tsv:%d: %s %s sent through %s: the default policy gives %v, want a rule to %v", i+2, method, path, base, rl, want)
			continue
		}
		recorded[routeKey{rl.method, rl.path}] = true
	}
	for _, r := range defaultRules {
		if r.dest != destExchange && !recorded[routeKey{r.method, r.path}] {
			t.Errorf("default rule %s was never recorded: derive the table from recordings", r)
		}
	}
}
