// Package platform classifies a GitHub server URL (github.com, a GHE.com data-residency tenant, or
// GitHub Enterprise Server) and derives every endpoint a Copilot agent needs. It is pure: no I/O,
// no environment, so every rule is table-tested.
package platform

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Kind is the GitHub platform a job runs on.
type Kind string

const (
	GitHubCom Kind = "github.com"
	GHECom    Kind = "ghe.com"
	GHES      Kind = "ghes"
)

const (
	gitHubHost     = "github.com"
	tenancySuffix  = ".ghe.com"
	publicCopilot  = "https://api.githubcopilot.com"
	publicTelemety = "https://copilot-telemetry.githubusercontent.com"
)

// PublicPlanCopilotHosts are the per-plan Copilot API hosts on github.com; /copilot_internal/user
// picks one of them for a user, so a firewall must admit all three.
var PublicPlanCopilotHosts = []string{
	"api.individual.githubcopilot.com",
	"api.business.githubcopilot.com",
	"api.enterprise.githubcopilot.com",
}

// PublicPlanTelemetryHosts are the per-plan telemetry hosts on github.com.
var PublicPlanTelemetryHosts = []string{
	"telemetry.individual.githubcopilot.com",
	"telemetry.business.githubcopilot.com",
	"telemetry.enterprise.githubcopilot.com",
}

// Input holds the raw, untrusted values from the runner context, action inputs or flags.
// Empty means "not given".
type Input struct {
	ServerURL        string // GITHUB_SERVER_URL, input server-url; empty means https://github.com
	APIURL           string // GITHUB_API_URL, input api-url
	GraphQLURL       string // GITHUB_GRAPHQL_URL (informational)
	CopilotHost      string // input copilot-host: where Copilot is licensed (host or URL)
	CopilotAPITarget string // input copilot-api-target: host or https URL of the Copilot API
	Platform         string // input platform: auto|github.com|ghe.com|ghes
}

// Endpoints is everything derived for one job. URLs carry no trailing slash.
type Endpoints struct {
	Platform   Kind   // classification of the server
	Tenant     string // GHE.com subdomain ("acme"), empty elsewhere
	ServerURL  string // web URL of the server, e.g. https://acme.ghe.com
	GHHost     string // GH_HOST for gh/copilot CLIs; empty on github.com
	APIURL     string // REST API of the server
	GraphQLURL string // GraphQL API of the server, when known

	// Where Copilot is licensed: the server itself on github.com and GHE.com, github.com or a
	// GHE.com tenant for GHES.
	CopilotHost     string // host name, e.g. github.com or acme.ghe.com
	CopilotPlatform Kind
	CopilotTenant   string
	// CopilotRESTAPIURL is the REST API of the licensing host: /copilot_internal/* (user look-up,
	// token exchange) goes here, never to api.github.com for a tenant.
	CopilotRESTAPIURL string
	CopilotAPIURL     string // the Copilot API (models, chat, responses, messages, mcp)
	TelemetryURL      string

	// Decisions says how each value was reached, for the summary ("from GITHUB_API_URL", …).
	Decisions []Decision
	// Warnings are things the user should fix or know, each a sentence with the fix.
	Warnings []string
}

// Decision records where one derived value came from.
type Decision struct {
	What string // e.g. "api_url"
	How  string // e.g. "from GITHUB_API_URL"
}

// InputError is a bad input value. Its fields let the caller write an annotation that names the
// input, says what is wrong and shows a good value.
type InputError struct {
	Input   string // name of the input, e.g. "server-url"
	Value   string // the offending value, quoted safely for display
	Problem string
	Example string
}

func (e *InputError) Error() string {
	msg := fmt.Sprintf("input %s: %s", e.Input, e.Problem)
	if e.Value != "" {
		msg = fmt.Sprintf("input %s = %s: %s", e.Input, e.Value, e.Problem)
	}
	if e.Example != "" {
		msg += "; for example " + e.Example
	}
	return msg
}

// Quote renders an untrusted value for an error message: quoted, control characters escaped, and
// long values cut, so a message never carries a newline or a workflow command.
func Quote(v string) string {
	const max = 120
	if len(v) > max {
		// Cut on a rune boundary so the quoted form does not end in a broken escape.
		cut := max
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut] + "…"
	}
	return fmt.Sprintf("%q", v)
}

// Detect classifies the server and derives every endpoint.
func Detect(in Input) (Endpoints, error) {
	var ep Endpoints
	serverURL := strings.TrimSpace(in.ServerURL)
	if serverURL == "" {
		serverURL = "https://" + gitHubHost
		ep.decide("server_url", "default (no GITHUB_SERVER_URL)")
	} else {
		ep.decide("server_url", "from GITHUB_SERVER_URL / server-url")
	}
	srv, err := ParseServerURL("server-url", serverURL)
	if err != nil {
		return Endpoints{}, err
	}
	kind, tenant, err := Classify(srv.Hostname())
	if err != nil {
		return Endpoints{}, &InputError{Input: "server-url", Value: Quote(serverURL), Problem: err.Error(),
			Example: "https://acme.ghe.com"}
	}
	ep.decide("platform", "from the server URL's host")
	switch p := strings.ToLower(strings.TrimSpace(in.Platform)); p {
	case "", "auto":
	case string(GitHubCom), string(GHECom), string(GHES):
		if Kind(p) != kind && kind != GHES {
			// Only a host that does not name its platform (a custom name, classified GHES) may be
			// overridden: re-labelling github.com or a data-residency tenant would route the job
			// to the wrong hosts (a tenant's traffic to public ones), so fail closed.
			return Endpoints{}, &InputError{Input: "platform", Value: Quote(in.Platform),
				Problem: fmt.Sprintf("the server %s is %s by its name and cannot be treated as %s; leave platform at auto", srv.Hostname(), kind, p),
				Example: "auto"}
		}
		if Kind(p) != kind {
			kind = Kind(p)
			tenant = ""
			if kind == GHECom {
				tenant = firstLabel(srv.Hostname())
			}
			ep.decide("platform", "from input platform (overrides the server URL)")
		}
	default:
		return Endpoints{}, &InputError{Input: "platform", Value: Quote(in.Platform),
			Problem: "unknown platform; use auto, github.com, ghe.com or ghes", Example: "auto"}
	}

	ep.Platform, ep.Tenant = kind, tenant
	ep.ServerURL = originOf(srv)
	host := srv.Hostname()
	if kind == GitHubCom && (host == gitHubHost || host == "www."+gitHubHost) {
		// http://, www. and :443 spellings of github.com all mean the one public server.
		host = gitHubHost
		ep.ServerURL = "https://" + gitHubHost
	}
	switch kind {
	case GitHubCom:
		ep.APIURL = "https://api.github.com"
	case GHECom:
		ep.GHHost = host
		ep.APIURL = "https://api." + host
	case GHES:
		ep.GHHost = host
		ep.APIURL = ep.ServerURL + "/api/v3"
	}
	ep.decide("api_url", "derived from the platform")
	if v := strings.TrimSpace(in.APIURL); v != "" {
		u, err := parseURL("api-url", v, false, "https://github.example.com/api/v3")
		if err != nil {
			return Endpoints{}, err
		}
		ep.APIURL = strings.TrimRight(u.String(), "/")
		ep.decide("api_url", "from GITHUB_API_URL / api-url")
		if kind == GHECom {
			if h := u.Hostname(); h != host && !strings.HasSuffix(h, "."+host) {
				ep.Warnings = append(ep.Warnings, fmt.Sprintf("The API URL %s is not on the tenant %s: "+
					"a data-residency tenant's REST API is https://api.%s. Unset api-url unless you mean it.", ep.APIURL, host, host))
			}
		}
	}
	if v := strings.TrimSpace(in.GraphQLURL); v != "" {
		u, err := parseURL("graphql-url", v, false, "https://api.github.com/graphql")
		if err != nil {
			return Endpoints{}, err
		}
		ep.GraphQLURL = strings.TrimRight(u.String(), "/")
	}

	if err := ep.deriveCopilot(in, host); err != nil {
		return Endpoints{}, err
	}
	return ep, nil
}

// deriveCopilot fills the Copilot endpoints from the licensing host.
func (ep *Endpoints) deriveCopilot(in Input, serverHost string) error {
	switch v := strings.TrimSpace(in.CopilotHost); {
	case v != "":
		h, err := parseHostOrURL("copilot-host", v, "github.com or acme.ghe.com")
		if err != nil {
			return err
		}
		k, t, err := Classify(h)
		if err != nil || k == GHES {
			return &InputError{Input: "copilot-host", Value: Quote(v),
				Problem: "Copilot is licensed on github.com or a GHE.com tenant (NAME.ghe.com); for another Copilot API set copilot-api-target",
				Example: "github.com"}
		}
		ep.CopilotHost, ep.CopilotPlatform, ep.CopilotTenant = h, k, t
		ep.decide("copilot_host", "from input copilot-host")
	case ep.Platform == GHES:
		ep.CopilotHost, ep.CopilotPlatform = gitHubHost, GitHubCom
		ep.decide("copilot_host", "default for GHES (github.com)")
		ep.Warnings = append(ep.Warnings, "GitHub Enterprise Server has no Copilot API of its own: assuming Copilot is licensed on github.com. "+
			"If your Copilot seat is on a GHE.com tenant, set the input copilot-host (e.g. copilot-host: acme.ghe.com).")
	default:
		ep.CopilotHost, ep.CopilotPlatform, ep.CopilotTenant = serverHost, ep.Platform, ep.Tenant
		if ep.Platform == GitHubCom {
			ep.CopilotHost = gitHubHost
		}
		ep.decide("copilot_host", "the server itself")
	}

	switch {
	case ep.CopilotHost == serverHost && ep.Platform != GHES:
		// The server is the licensing host: an explicit API URL (GITHUB_API_URL) is trusted for
		// /copilot_internal too.
		ep.CopilotRESTAPIURL = ep.APIURL
	case ep.CopilotPlatform == GHECom:
		ep.CopilotRESTAPIURL = "https://api." + ep.CopilotHost
	default:
		ep.CopilotRESTAPIURL = "https://api.github.com"
	}

	if ep.CopilotPlatform == GHECom {
		ep.CopilotAPIURL = "https://copilot-api." + ep.CopilotHost
		ep.TelemetryURL = "https://copilot-telemetry-service." + ep.CopilotHost
	} else {
		ep.CopilotAPIURL = publicCopilot
		ep.TelemetryURL = publicTelemety
	}
	ep.decide("copilot_api_url", "derived from the Copilot host")
	if v := strings.TrimSpace(in.CopilotAPITarget); v != "" {
		u, err := parseTarget(v)
		if err != nil {
			return err
		}
		ep.CopilotAPIURL = u
		ep.decide("copilot_api_url", "from input copilot-api-target")
	}
	return nil
}

func (ep *Endpoints) decide(what, how string) {
	for i := range ep.Decisions {
		if ep.Decisions[i].What == what {
			ep.Decisions[i].How = how
			return
		}
	}
	ep.Decisions = append(ep.Decisions, Decision{What: what, How: how})
}

// How returns how a value was decided, or "".
func (ep Endpoints) How(what string) string {
	for _, d := range ep.Decisions {
		if d.What == what {
			return d.How
		}
	}
	return ""
}

// Classify tells the platform of a host name (lower case, no port). It refuses the bare ghe.com
// and hosts under a tenant (api.acme.ghe.com): treating those as GHES would route a
// data-residency tenant to public hosts, so it fails closed instead.
func Classify(host string) (kind Kind, tenant string, err error) {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	switch {
	case h == "":
		return "", "", fmt.Errorf("no host")
	case h == gitHubHost || h == "www.github.com":
		return GitHubCom, "", nil
	case h == "ghe.com" || h == "www.ghe.com":
		return "", "", fmt.Errorf("ghe.com alone is not a tenant: use your tenant's URL, NAME.ghe.com")
	case strings.HasSuffix(h, tenancySuffix):
		t := strings.TrimSuffix(h, tenancySuffix)
		if t == "" || strings.HasSuffix(t, ".") {
			return "", "", fmt.Errorf("%s has an empty tenant name: use your tenant's URL, NAME.ghe.com", h)
		}
		if strings.Contains(t, ".") {
			return "", "", fmt.Errorf("%s is a host inside a GHE.com tenant, not the tenant itself: use https://%s",
				h, t[strings.LastIndexByte(t, '.')+1:]+tenancySuffix)
		}
		return GHECom, t, nil
	case h == "api.github.com" || h == "githubcopilot.com" || strings.HasSuffix(h, ".githubcopilot.com"):
		return "", "", fmt.Errorf("%s is an API host, not a server URL: use https://github.com", h)
	case strings.HasSuffix(h, "."+gitHubHost) || h == "githubusercontent.com" || strings.HasSuffix(h, ".githubusercontent.com"):
		// gist.github.com, uploads.github.com, raw.githubusercontent.com: services of github.com.
		// Classifying them as GHES would send Copilot traffic to a made-up /api/v3.
		return "", "", fmt.Errorf("%s is a github.com service host, not a server URL: use https://github.com", h)
	}
	return GHES, "", nil
}

// ParseServerURL validates a server URL: http(s), a host, no userinfo, no query or fragment.
// A bare host ("acme.ghe.com") is taken as https.
func ParseServerURL(input, raw string) (*url.URL, error) {
	return parseURL(input, raw, true, "https://acme.ghe.com")
}

func parseURL(input, raw string, allowBare bool, example string) (*url.URL, error) {
	bad := func(problem string) error {
		return &InputError{Input: input, Value: Quote(raw), Problem: problem, Example: example}
	}
	if strings.ContainsAny(raw, " \t\r\n\"'`;<>\\") {
		return nil, bad("a URL may not contain spaces, quotes, ';', '<', '>', '\\' or line breaks")
	}
	if allowBare && !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, bad("the scheme must be https (or http)")
	}
	if u.User != nil {
		return nil, bad("a URL must not carry a user name or password; pass the token through github-token")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, bad("no host in the URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, bad("a URL must not carry a query or fragment")
	}
	// A percent-encoded control byte (%00, %0a) decodes into a URL that no longer parses.
	if strings.IndexFunc(u.Path, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return nil, bad("the path holds a control character")
	}
	if err := checkHost(u.Hostname()); err != nil {
		return nil, bad(err.Error())
	}
	if p := u.Port(); p != "" {
		if n, err := parsePort(p); err != nil || n == 0 {
			return nil, bad("the port must be a number from 1 to 65535")
		}
	}
	// One spelling per host: lower case, no trailing root dot (acme.ghe.com. is acme.ghe.com).
	u.Host = strings.ToLower(u.Host)
	if h, port := u.Hostname(), u.Port(); strings.HasSuffix(h, ".") && !strings.Contains(h, ":") {
		u.Host = strings.TrimSuffix(h, ".")
		if port != "" {
			u.Host += ":" + port
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// originOf is scheme://host[:port] with the default port dropped.
func originOf(u *url.URL) string {
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443") && !(u.Scheme == "http" && p == "80") {
		host += ":" + p
	}
	return u.Scheme + "://" + host
}

func parseHostOrURL(input, raw, example string) (string, error) {
	u, err := parseURL(input, raw, true, example)
	if err != nil {
		return "", err
	}
	if u.Path != "" {
		return "", &InputError{Input: input, Value: Quote(raw), Problem: "give a host name (or its URL without a path)", Example: example}
	}
	return strings.TrimSuffix(u.Hostname(), "."), nil
}

// parseTarget takes copilot-api-target: a host, or an https URL (a port is kept, so tests and
// TLS-inspecting proxies can point it at https://127.0.0.1:PORT).
func parseTarget(raw string) (string, error) {
	const example = "copilot-api.acme.ghe.com or https://copilot-api.acme.ghe.com"
	u, err := parseURL("copilot-api-target", raw, true, example)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" {
		return "", &InputError{Input: "copilot-api-target", Value: Quote(raw), Problem: "the Copilot API must be reached over https", Example: example}
	}
	// Escaped: a decoded %3F or %23 would turn part of the path into a query or fragment.
	return strings.TrimRight(originOf(u)+u.EscapedPath(), "/"), nil
}

// checkHost refuses host names that cannot be real: bad characters, empty labels.
func checkHost(h string) error {
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
		return nil
	}
	h = strings.TrimSuffix(h, ".")
	if len(h) > 253 {
		return fmt.Errorf("host name too long")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host name %q has an empty or over-long label", h)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host name %q has a character that is not allowed in a host name", h)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host name %q has a label starting or ending with '-'", h)
		}
	}
	return nil
}

func parsePort(p string) (int, error) {
	n := 0
	if p == "" || len(p) > 5 {
		return 0, fmt.Errorf("bad port")
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad port")
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("bad port")
	}
	return n, nil
}

func firstLabel(h string) string {
	if i := strings.IndexByte(h, '.'); i > 0 {
		return h[:i]
	}
	return h
}

// HostOf returns the lower-case host name (no port) of an http(s) URL, or "".
func HostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
}
