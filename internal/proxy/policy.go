package proxy

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// The route policy: the proxy holds a credential that can do anything its owner can (write
// repositories, call GraphQL, drive the full GitHub MCP server), so it forwards only the METHOD +
// path pairs real Copilot clients send and refuses everything else with 403 before anything goes
// upstream. The default table is derived from recordings of the real Copilot CLI
// (internal/faketenant/CLI-TRAFFIC.md); an operator widens it explicitly with --allow-route /
// the action input allow-routes, and the widening is shown in the job summary.

// dest is where a route's requests go.
type dest uint8

const (
	destCopilot  dest = iota // the Copilot API
	destREST                 // the licensing host's REST API
	destExchange             // answered by the exchange shim, never forwarded
)

// rule is one allowed METHOD + path.
type rule struct {
	method string
	path   string // the exact path, or for a prefix rule the prefix, ending in '/'
	prefix bool
	// segments: path is a pattern whose "*" segments each match one non-empty segment (only
	// in the default table: the CLI names the repository it runs in, OWNER/REPO, in one route).
	segments bool
	dest     dest
	label    route
	widen    bool // from --allow-route
}

func (r rule) String() string {
	if r.prefix {
		return r.method + " " + r.path + "*"
	}
	return r.method + " " + r.path
}

// defaultRules are the routes the real Copilot CLI (1.0.102, 1.0.85, 1.0.83, 1.0.43) sends in the
// modes copilot-route supports: documented (COPILOT_API_URL + a ghs_-shaped client token), the
// REST look-ups a CLI sends to COPILOT_DEBUG_GITHUB_API_URL or with another token shape, and
// BYOK-offline (openai, responses and anthropic wire formats).
var defaultRules = []rule{
	{method: http.MethodPost, path: "/chat/completions", dest: destCopilot, label: routeChat},
	{method: http.MethodPost, path: "/responses", dest: destCopilot, label: routeResponses},
	{method: http.MethodPost, path: "/v1/messages", dest: destCopilot, label: routeMessages},
	{method: http.MethodGet, path: "/models", dest: destCopilot, label: routeModels},
	// The Copilot API's read-only MCP server: JSON-RPC over POST, its event stream over GET, the
	// session's end with DELETE. Not /mcp/ itself: on github.com that is the full GitHub MCP
	// server, with write tools.
	{method: http.MethodPost, path: "/mcp/readonly", dest: destCopilot, label: routeMCPReadonly},
	{method: http.MethodGet, path: "/mcp/readonly", dest: destCopilot, label: routeMCPReadonly},
	{method: http.MethodDelete, path: "/mcp/readonly", dest: destCopilot, label: routeMCPReadonly},
	{method: http.MethodGet, path: "/agents/swe/internal/memory/v0/enabled", dest: destCopilot, label: routeAgents},
	// Inside a repository checkout the CLI names the repository (OWNER/REPO): 1.0.43's memory
	// look-up, and every version's custom agents of the repository (recorded in a clone).
	{method: http.MethodGet, path: "/agents/swe/internal/memory/v0/*/*/enabled", segments: true, dest: destCopilot, label: routeAgents},
	{method: http.MethodGet, path: "/agents/swe/custom-agents/*/*", segments: true, dest: destCopilot, label: routeAgents},
	{method: http.MethodGet, path: "/copilot_internal/user", dest: destREST, label: routeUser},
	{method: http.MethodGet, path: "/copilot_internal/managed_settings", dest: destREST, label: routeInternal},
	{method: http.MethodGet, path: "/copilot_internal/team_customizations", dest: destREST, label: routeInternal},
	{method: http.MethodGet, path: "/copilot/mcp_registry", dest: destREST, label: routeInternal},
	// Older clients' token exchange: answered by the shim (serveExchange), so the platform's
	// Copilot token never reaches the agent.
	{method: http.MethodGet, path: exchangePath, dest: destExchange, label: routeExchange},
	{method: http.MethodPost, path: exchangePath, dest: destExchange, label: routeExchange},
}

const exchangePath = "/copilot_internal/v2/token"

// routeKey finds an exact rule without building a string per request.
type routeKey struct{ method, path string }

// policy is the route table in force: the defaults plus what the operator allowed.
type policy struct {
	exact    map[routeKey]*rule
	prefixes []rule   // longest prefix first
	patterns []rule   // default rules with "*" segments
	widened  []string // the operator's additions, as given (normalised)

	mu       sync.Mutex
	refused  map[string]*RefusedRoute // by "METHOD /path", bounded
	overflow int64                    // refused requests beyond the bound
}

// maxRefusedRoutes bounds the distinct refused routes remembered for the report: an agent
// probing random paths must not grow the proxy's memory.
const maxRefusedRoutes = 100

// newPolicy builds the table from the defaults and --allow-route values: "METHOD /path" or
// "METHOD /prefix/*".
func newPolicy(allow []string) (*policy, error) {
	p := &policy{exact: map[routeKey]*rule{}, refused: map[string]*RefusedRoute{}}
	for i := range defaultRules {
		r := &defaultRules[i]
		if r.segments {
			p.patterns = append(p.patterns, *r)
			continue
		}
		p.exact[routeKey{r.method, r.path}] = r
	}
	for _, a := range allow {
		r, err := parseAllowRoute(a)
		if err != nil {
			return nil, err
		}
		p.widened = append(p.widened, r.String())
		if r.prefix {
			p.prefixes = append(p.prefixes, r)
			continue
		}
		if _, ok := p.exact[routeKey{r.method, r.path}]; !ok {
			rr := r
			p.exact[routeKey{r.method, r.path}] = &rr
		}
	}
	sort.SliceStable(p.prefixes, func(i, j int) bool { return len(p.prefixes[i].path) > len(p.prefixes[j].path) })
	return p, nil
}

// ValidateAllowRoute checks one --allow-route value (for the CLI, before serve starts).
func ValidateAllowRoute(v string) error {
	_, err := parseAllowRoute(v)
	return err
}

// parseAllowRoute reads one --allow-route value: METHOD (an HTTP token, compared
// case-sensitively, as HTTP methods are) and an absolute path, exact or ending in "/*" for every
// path below it. Paths under /copilot_internal/ and /copilot/ go to the REST API, every other one
// to the Copilot API. The token-exchange path stays the shim's: no rule can forward it.
func parseAllowRoute(v string) (rule, error) {
	f := strings.Fields(v)
	bad := func(why string) (rule, error) {
		return rule{}, fmt.Errorf("allow-route %q: %s; write METHOD /path or METHOD /prefix/*, e.g. 'GET /copilot_internal/content_exclusions' or 'POST /mcp/*'", v, why)
	}
	if len(f) != 2 {
		return bad("want a method and a path separated by a space")
	}
	method, path := f[0], f[1]
	if !isToken(method) {
		return bad("the method is not an HTTP method token")
	}
	if method == http.MethodConnect || method == "TRACE" || method == "TRACK" {
		return bad(method + " is never forwarded")
	}
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		return bad("the path must start with a single '/'")
	}
	r := rule{method: method, widen: true, label: routeWidened, dest: destCopilot}
	if strings.HasSuffix(path, "/*") {
		r.prefix, path = true, strings.TrimSuffix(path, "*")
	}
	if strings.ContainsAny(path, "*?#%\\") || strings.Contains(path, "//") {
		return bad("the path may hold no '*' (except a final '/*'), '?', '#', '%', '\\' or '//'")
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return bad("the path may hold no '.' or '..' segment")
		}
	}
	if strings.HasPrefix(path, exchangePath) {
		return bad("the token exchange (" + exchangePath + ") is answered by the proxy itself and cannot be forwarded")
	}
	if strings.HasPrefix(path, "/_copilot-route/") {
		return bad("/_copilot-route/ is the proxy's own")
	}
	if strings.HasPrefix(path, "/copilot_internal/") || strings.HasPrefix(path, "/copilot/") {
		r.dest = destREST
	}
	r.path = path
	return r, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// match finds the rule for a request's method and canonical path, or nil.
func (p *policy) match(method, path string) *rule {
	if r := p.exact[routeKey{method, path}]; r != nil {
		return r
	}
	if strings.HasPrefix(path, exchangePath) {
		return nil // every variant of the exchange path but the exact one (…/token/, …;x=1, .json)
	}
	for i := range p.patterns {
		r := &p.patterns[i]
		if r.method == method && segmentsMatch(r.path, path) {
			return r
		}
	}
	for i := range p.prefixes {
		r := &p.prefixes[i]
		if r.method == method && strings.HasPrefix(path, r.path) {
			return r
		}
	}
	return nil
}

// segmentsMatch says whether path has pattern's segments, each "*" standing for one non-empty
// segment that is not "." or "..".
func segmentsMatch(pattern, path string) bool {
	for pattern != "" || path != "" {
		var ps, s string
		ps, pattern, _ = strings.Cut(pattern, "/")
		s, path, _ = strings.Cut(path, "/")
		switch {
		case ps == "*":
			if s == "" || s == "." || s == ".." {
				return false
			}
		case ps != s:
			return false
		}
	}
	return true
}

// canonicalPath is the request path the policy judges and the upstream receives: the target
// decoded once (as net/http already did). It refuses a path that decoding would change
// structurally — an encoded '/' or '\' — or that is still percent-encoded after the decode
// (double encoding), so no upstream can read a path other than the one judged.
func canonicalPath(r *http.Request) (string, string) {
	raw := r.URL.EscapedPath()
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' {
			switch strings.ToUpper(raw[i+1 : i+3]) {
			case "2F", "5C":
				return "", "encoded-slash"
			}
		}
	}
	if strings.IndexByte(r.URL.Path, '%') >= 0 {
		return "", "double-encoded"
	}
	return r.URL.Path, ""
}

// noteRefused counts a refused route for the traffic report.
func (p *policy) noteRefused(method, path, reason string) {
	method, path = cutString(method, 16), cutString(path, 120)
	k := method + " " + path
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.refused[k]; r != nil {
		r.Count++
		return
	}
	if len(p.refused) < maxRefusedRoutes {
		p.refused[k] = &RefusedRoute{Method: method, Path: path, Reason: reason, Count: 1}
		return
	}
	p.overflow++
}

// refusedRoutes are the most refused routes first (at most n), and the count of refused requests
// not listed.
func (p *policy) refusedRoutes(n int) ([]RefusedRoute, int64) {
	p.mu.Lock()
	out := make([]RefusedRoute, 0, len(p.refused))
	rest := p.overflow
	for _, r := range p.refused {
		out = append(out, *r)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	if len(out) > n {
		for _, r := range out[n:] {
			rest += r.Count
		}
		out = out[:n]
	}
	return out, rest
}

// refuseRoute answers a request outside the policy: 403 JSON naming the route and how to allow
// it. Nothing was sent upstream.
func (p *Proxy) refuseRoute(st *reqState, r *http.Request, path, why string) {
	st.refusal = "route-not-allowed"
	switch {
	case why != "":
		st.refusal = why
	case strings.HasPrefix(path, exchangePath):
		st.refusal = "exchange-variant"
	}
	p.policy.noteRefused(r.Method, path, st.refusal)
	p.stats.refusal(st.refusal)
	shown := cutString(path, 200)
	var msg string
	switch {
	case why != "":
		msg = fmt.Sprintf("copilot-route refuses %s %s (%s): send the path without percent-encoded '/', '\\' or '%%'", cutString(r.Method, 16), cutString(r.URL.EscapedPath(), 200), why)
	case strings.HasPrefix(path, exchangePath):
		msg = fmt.Sprintf("copilot-route refuses %s %s: only %s itself is answered (by the proxy); no variant of it is forwarded", cutString(r.Method, 16), shown, exchangePath)
	default:
		msg = fmt.Sprintf("copilot-route refuses %s %s: it is not a route Copilot clients use, so the proxy does not send its credential there. "+
			"If the agent needs it, allow it explicitly: the action input allow-routes (a line '%s %s', or a prefix '%s /PREFIX/*'), or serve --allow-route",
			cutString(r.Method, 16), shown, cutString(r.Method, 16), shown, cutString(r.Method, 16))
	}
	writeError(st, http.StatusForbidden, msg, map[string]string{
		"method": cutString(r.Method, 16), "path": shown, "refused": st.refusal})
}

// RefusedRoute counts requests refused by the route policy for one METHOD + path.
type RefusedRoute struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Reason is "route-not-allowed" (allow-routes can allow it), or why it can never be
	// forwarded: "exchange-variant", "encoded-slash", "double-encoded".
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// PolicyStats says what the route policy allowed and refused.
type PolicyStats struct {
	// Widened lists the routes allowed beyond the defaults (--allow-route, input allow-routes).
	Widened []string `json:"widened"`
	// Refused counts requests refused because their METHOD + path is not allowed.
	Refused int64 `json:"refused"`
	// TopRefused are the most refused routes, most first; OtherRefused the rest.
	TopRefused   []RefusedRoute `json:"top_refused"`
	OtherRefused int64          `json:"other_refused"`
}

func (p *policy) stats() PolicyStats {
	top, rest := p.refusedRoutes(10)
	var n int64 = rest
	for _, r := range top {
		n += r.Count
	}
	return PolicyStats{Widened: append([]string{}, p.widened...), Refused: n, TopRefused: top, OtherRefused: rest}
}

// DefaultRoutes lists the routes forwarded without any allow-route, as "METHOD /path".
func DefaultRoutes() []string {
	out := make([]string, 0, len(defaultRules))
	for _, r := range defaultRules {
		out = append(out, r.String())
	}
	return out
}
