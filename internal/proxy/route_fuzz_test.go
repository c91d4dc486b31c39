package proxy

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// FuzzRoute: any request target the HTTP server accepts is either refused before routing, or
// refused by the route policy, or matched by a rule and routed to the rule's configured upstream
// without leaving its base path: the outbound URL has the upstream's scheme and host, its path is
// the base plus the rule's own path (an exact rule) or stays under the rule's prefix (a widened
// prefix rule; also after the upstream percent-decodes it up to three times and resolves dot
// segments), and it carries no client token.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{
		"/models", "/chat/completions?x=1", "/copilot_internal/user", "/copilot_internal/v2/token", "/agents/swe/x",
		"/_copilot-route/stats", "//evil.example/x", "/..%2f", "/%2e%2e/x", "/%252e%252e/x", "/a/%2E./b", "/a\\b",
		"/a%00", "http://evil/x", "*", "/;/../x", "/a/..;/b", "/%2f%2f", "/mcp/%2e", "/x?%zz", "/x#f", "/.%2E",
		"/%25252e%25252e", "/a/.%252e/b", "/copilot_internal/%2e%2e/models", "/" + strings.Repeat("a/", 50),
	} {
		f.Add(s)
	}
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com",
		APIURL: "https://api.acme.ghe.com/api/v3", CopilotAPITarget: "https://copilot-api.acme.ghe.com/base"})
	if err != nil {
		f.Fatal(err)
	}
	client := NewClientToken()
	p, err := New(context.Background(), Config{Endpoints: ep, ExplicitTarget: true,
		Token: copilot.NewToken("ghs_FuzzRealTokenNeverSent000000000000001"), ClientToken: client,
		AllowRoutes: []string{"GET /agents/*", "GET /copilot_internal/content/*"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			return // the server answers 400 itself
		}
		if refuseReason(r) != "" || p.tokenInURI(r) {
			return
		}
		if hasPrefix(r.URL.Path, "/_copilot-route/") {
			return // answered locally
		}
		path, bad := canonicalPath(r)
		if bad != "" {
			return // refused by the policy
		}
		for _, m := range []string{"GET", "POST", "DELETE", "PUT", "get"} {
			rl := p.policy.match(m, path)
			if rl == nil {
				continue
			}
			if int(rl.label) >= len(routeNames) {
				t.Fatalf("%s %q: label %d out of range", m, path, rl.label)
			}
			if rl.dest == destExchange {
				if path != exchangePath {
					t.Fatalf("%s %q reached the exchange shim, only %s may", m, path, exchangePath)
				}
				continue
			}
			if strings.HasPrefix(path, exchangePath) {
				t.Fatalf("%s %q: an exchange-path variant matched %s", m, path, rl)
			}
			if !rl.prefix && path != rl.path || rl.prefix && !strings.HasPrefix(path, rl.path) {
				t.Fatalf("%s %q matched %s", m, path, rl)
			}
			checkOutbound(t, p, r, target, path, rl, client)
		}
	})
}

func checkOutbound(t *testing.T, p *Proxy, r *http.Request, target, canon string, rl *rule, client copilot.Token) {
	up := p.copilot
	if rl.dest == destREST {
		up = p.rest
	}
	st := &reqState{up: up, path: canon}
	in := r.WithContext(context.WithValue(context.Background(), stateKey{}, st))
	out := in.Clone(in.Context())
	out.RequestURI = ""
	pr := &httputil.ProxyRequest{In: in, Out: out}
	p.rewrite(up)(pr)
	u := pr.Out.URL
	if u.Scheme != up.target.Scheme || u.Host != up.target.Host || pr.Out.Host != "" {
		t.Fatalf("%q went to %s://%s (Host %q), want %s", target, u.Scheme, u.Host, pr.Out.Host, up.target)
	}
	if !rl.prefix && u.EscapedPath() != up.target.Path+rl.path {
		t.Fatalf("%q (rule %s) went upstream as %q, want exactly %q", target, rl, u.EscapedPath(), up.target.Path+rl.path)
	}
	base := up.target.Path + rl.path
	if !rl.prefix {
		base = up.target.Path + "/"
	}
	// What an upstream may make of the path: decoded up to three times, dot segments resolved.
	s := u.EscapedPath()
	for i := 0; i < 4; i++ {
		if !strings.HasPrefix(s, base) || strings.Contains(s, "//") {
			t.Fatalf("%q became %q (decoded %d times: %q), outside %s", target, u.EscapedPath(), i, s, base)
		}
		if c := path.Clean(s); !strings.HasPrefix(c+"/", base) {
			t.Fatalf("%q became %q, which resolves to %q, outside %s", target, u.EscapedPath(), c, base)
		}
		d, err := url.PathUnescape(s)
		if err != nil || d == s {
			break
		}
		s = d
	}
	if strings.Contains(u.String(), client.Reveal()) {
		t.Fatalf("%q: the client token would go upstream", target)
	}
}
