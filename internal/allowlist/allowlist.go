// Package allowlist derives the egress domain set a Copilot agent needs for one job's Endpoints,
// validates the domains a user adds, and renders the set in the formats egress tools take
// (awf/gh-aw, step-security/harden-runner, bullfrogsec/bullfrog). It is pure: no I/O.
package allowlist

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// TelemetryUserContentHost is the github.com Copilot telemetry host outside githubcopilot.com.
const TelemetryUserContentHost = "copilot-telemetry.githubusercontent.com"

// Options are the user's additions, as raw input text. Both are validated by For.
type Options struct {
	// ProxyHost is how the agent reaches the proxy (input proxy-host), e.g. host.docker.internal.
	ProxyHost string
	// ExtraDomains is input extra-domains: domains or URLs separated by commas, spaces or newlines.
	ExtraDomains string
}

// List is the egress set for one job.
type List struct {
	// Domains are exact host names and the user's "*.example.com" patterns: lower case, no
	// scheme, port or path, sorted and unique.
	Domains []string
	// Tenants are data-residency tenants (acme.ghe.com). GitHub documents SUBDOMAIN.ghe.com and
	// *.SUBDOMAIN.ghe.com as their allowlist, so formats whose bare names do not cover subdomains
	// (bullfrog, harden-runner) also get "*.acme.ghe.com".
	Tenants []string
	// endpoints are host:port pairs for harden-runner, which filters by port too: a GHES on
	// :8443 must be admitted on :8443, not :443.
	endpoints []string
}

// For derives the list for ep plus the user's additions. A bad addition is a
// *platform.InputError naming the input.
func For(ep platform.Endpoints, opt Options) (List, error) {
	b := builder{ports: map[string]map[int]bool{}}
	for _, u := range []string{ep.ServerURL, ep.APIURL, ep.GraphQLURL, ep.CopilotRESTAPIURL, ep.CopilotAPIURL, ep.TelemetryURL} {
		b.addURL(u)
	}
	if ep.CopilotHost != "" {
		b.add(strings.ToLower(ep.CopilotHost), 443)
	}
	if ep.CopilotPlatform == platform.GitHubCom {
		// /copilot_internal/user may hand the client any plan's hosts; a firewall must admit all.
		// (github.com and api.github.com come in above as the licensing host and its REST API.)
		for _, h := range []string{"api.githubcopilot.com", TelemetryUserContentHost} {
			b.add(h, 443)
		}
		for _, h := range platform.PublicPlanCopilotHosts {
			b.add(h, 443)
		}
		for _, h := range platform.PublicPlanTelemetryHosts {
			b.add(h, 443)
		}
	}
	var tenants []string
	if ep.Platform == platform.GHECom && ep.GHHost != "" {
		tenants = append(tenants, strings.ToLower(ep.GHHost))
	}
	if ep.CopilotPlatform == platform.GHECom && ep.CopilotHost != "" {
		tenants = append(tenants, strings.ToLower(ep.CopilotHost))
	}

	if v := strings.TrimSpace(opt.ProxyHost); v != "" {
		h, err := ProxyHost(v)
		if err != nil {
			return List{}, err
		}
		b.add(h, 443)
	}
	extra, err := ParseDomains("extra-domains", opt.ExtraDomains)
	if err != nil {
		return List{}, err
	}
	for _, d := range extra {
		b.add(d, 443)
	}

	l := List{Domains: sortedKeys(b.ports), Tenants: uniqueSorted(tenants)}
	for _, h := range l.Domains {
		for p := range b.ports[h] {
			l.endpoints = append(l.endpoints, hostPort(h, p))
		}
	}
	for _, t := range l.Tenants {
		l.endpoints = append(l.endpoints, hostPort("*."+t, 443))
	}
	l.endpoints = uniqueSorted(l.endpoints)
	return l, nil
}

type builder struct{ ports map[string]map[int]bool }

func (b *builder) add(host string, port int) {
	if host == "" {
		return
	}
	if b.ports[host] == nil {
		b.ports[host] = map[int]bool{}
	}
	b.ports[host][port] = true
}

func (b *builder) addURL(raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if p, err := strconv.Atoi(u.Port()); err == nil && p > 0 && p < 65536 {
		port = p
	}
	b.add(strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), port)
}

func hostPort(h string, p int) string {
	if strings.Contains(h, ":") { // an IPv6 literal derived from a URL the user gave
		return "[" + h + "]:" + strconv.Itoa(p)
	}
	return h + ":" + strconv.Itoa(p)
}

func sortedKeys(m map[string]map[int]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func uniqueSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Comma is the form awf --allow-domains takes. awf admits a bare domain's subdomains too, so
// tenants need no wildcard here.
func (l List) Comma() string { return strings.Join(l.Domains, ",") }

// Lines is one entry per line, for bullfrog's allowed-domains and YAML lists: the exact hosts
// plus "*.TENANT" for each data-residency tenant (bullfrog's "*." does not cover the apex, which
// is listed on its own).
func (l List) Lines() string { return strings.Join(l.withTenantWildcards(), "\n") }

// HardenRunner is step-security/harden-runner's allowed-endpoints: space-separated host:port.
func (l List) HardenRunner() string { return strings.Join(l.endpoints, " ") }

// GHAW is a gh-aw workflow front-matter snippet (network.allowed). gh-aw passes these to awf,
// where a bare domain covers its subdomains; "defaults" is gh-aw's basic infrastructure set.
func (l List) GHAW() string {
	var sb strings.Builder
	sb.WriteString("network:\n  allowed:\n    - defaults\n")
	for _, d := range l.Domains {
		// Quoted: a YAML scalar starting with "*" would be an alias.
		fmt.Fprintf(&sb, "    - %q\n", d)
	}
	return sb.String()
}

func (l List) withTenantWildcards() []string {
	out := slices.Clone(l.Domains)
	for _, t := range l.Tenants {
		out = append(out, "*."+t)
	}
	return uniqueSorted(out)
}

// ParseDomains splits a user's list (commas, spaces, tabs or newlines) and validates each entry
// with Domain. The first bad entry is returned as a *platform.InputError naming input.
func ParseDomains(input, raw string) ([]string, error) {
	fields := strings.FieldsFunc(raw, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		d, err := Domain(f)
		if err != nil {
			return nil, &platform.InputError{Input: input, Value: platform.Quote(f), Problem: err.Error(),
				Example: "api.example.com, *.example.com or https://api.example.com/v1"}
		}
		out = append(out, d)
	}
	return uniqueSorted(out), nil
}

// ProxyHost validates input proxy-host: a host name (or a URL, reduced to its host), no wildcard.
func ProxyHost(raw string) (string, error) {
	bad := func(problem string) error {
		return &platform.InputError{Input: "proxy-host", Value: platform.Quote(raw), Problem: problem,
			Example: "host.docker.internal"}
	}
	d, err := Domain(raw)
	if err != nil {
		return "", bad(err.Error())
	}
	if strings.HasPrefix(d, "*.") {
		return "", bad("the proxy is one host, not a wildcard")
	}
	return d, nil
}

// Domain validates and normalises one user-given domain. It accepts a host name, a
// "*.example.com" wildcard, "host:port" (the port is dropped: these lists filter by name), or an
// http(s) URL (reduced to its host). It refuses IP literals: every format here is a list of
// names (awf matches names in TLS SNI and Host headers), so an address would silently admit
// nothing or, for bullfrog, be mistaken for a name; reach the proxy by name instead
// (host.docker.internal). It refuses wildcards and bare names that cover a public suffix
// (*.com, co.uk, ghe.com), since awf admits every subdomain of a bare name.
func Domain(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", fmt.Errorf("empty domain")
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return "", fmt.Errorf("a domain may not contain spaces, line breaks or control characters")
		}
		if strings.ContainsRune("\"'`;<>\\|&$(){}#,!", r) {
			return "", fmt.Errorf("a domain may not contain quotes or any of ; < > \\ | & $ ( ) { } # ,")
		}
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("not a URL")
		}
		if sc := strings.ToLower(u.Scheme); sc != "https" && sc != "http" {
			return "", fmt.Errorf("a URL here must be https (or http)")
		}
		if u.User != nil {
			return "", fmt.Errorf("a URL here must not carry a user name or password")
		}
		if u.Hostname() == "" {
			return "", fmt.Errorf("no host in the URL")
		}
		if err := checkPort(u.Port()); err != nil {
			return "", err
		}
		s = u.Hostname()
	} else {
		if strings.ContainsAny(s, "/?") {
			return "", fmt.Errorf("give a host name or a full URL (https://…), not a path")
		}
		if strings.HasPrefix(s, "[") || strings.Count(s, ":") > 1 {
			return "", errIP
		}
		if h, p, ok := strings.Cut(s, ":"); ok {
			if err := checkPort(p); err != nil {
				return "", err
			}
			s = h
		}
	}
	if strings.ContainsAny(s, "[]:%") {
		return "", errIP
	}
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if net.ParseIP(s) != nil {
		return "", errIP
	}
	base, wildcard := strings.CutPrefix(s, "*.")
	if strings.Contains(base, "*") {
		return "", fmt.Errorf("a wildcard is allowed only as a whole first label, as in *.example.com")
	}
	if strings.HasPrefix(base, ".") {
		return "", fmt.Errorf("write *.example.com for subdomains, not .example.com")
	}
	if err := checkName(base); err != nil {
		return "", err
	}
	labels := strings.Split(base, ".")
	if len(labels) == 1 && (wildcard || base != "localhost") {
		return "", fmt.Errorf("%s is a single label (a top-level domain, or a name only your machine resolves); give a full name", base)
	}
	if publicSuffixLike(labels) {
		if wildcard {
			return "", fmt.Errorf("*.%s would admit every site under the public suffix %s", base, base)
		}
		return "", fmt.Errorf("%s is a public suffix: awf admits every subdomain of a bare name, so this would admit every site under it", base)
	}
	if wildcard {
		return "*." + base, nil
	}
	return base, nil
}

var errIP = fmt.Errorf("an IP address is not allowed: egress lists here are by name; use a host name (for the proxy on the runner, host.docker.internal)")

func checkPort(p string) error {
	if p == "" {
		return nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || len(p) > 5 {
		return fmt.Errorf("the port must be a number from 1 to 65535")
	}
	return nil
}

// checkName enforces RFC 1123 host names: letters, digits and hyphens in labels of 1 to 63
// characters, 253 in all, and a last label that is not all digits (that is an IP address).
func checkName(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("a domain is at most 253 characters")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%s has an empty or over-long label", platform.Quote(h))
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%s has a character not allowed in a host name (letters, digits, '-' and '.'; write international names in punycode, xn--…)", platform.Quote(h))
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%s has a label starting or ending with '-'", platform.Quote(h))
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return errIP
	}
	return nil
}

// publicSuffixLike is a small, deliberate stand-in for the Public Suffix List (which would add a
// module and a data file to a fast path): GitHub's own shared suffixes, and the common
// second-level registries under two-letter country codes (co.uk, com.au, ne.jp …).
func publicSuffixLike(labels []string) bool {
	name := strings.Join(labels, ".")
	switch name {
	case "ghe.com", "github.io", "githubusercontent.com", "githubpreview.dev", "github.dev",
		"amazonaws.com", "cloudfront.net", "azurewebsites.net", "blob.core.windows.net",
		"herokuapp.com", "vercel.app", "netlify.app", "pages.dev", "workers.dev", "appspot.com":
		return true
	}
	if len(labels) == 2 && len(labels[1]) == 2 {
		switch labels[0] {
		case "co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "mil", "ltd", "plc", "gen", "nom", "sch":
			return true
		}
	}
	return false
}

// Agent is the egress set of an agent inside a sandbox (awf's container) while copilot-route's
// proxy runs on the runner. The runner's List must admit the proxy's upstreams, but the agent must
// reach them only through the proxy, so its set is different: the proxy host and what the user
// adds, and an explicit block of the hosts the proxy serves. The block matters because awf adds a
// GHE.com tenant's hosts to its allowlist by itself (from GITHUB_SERVER_URL), and its blocklist
// wins over its allowlist.
type Agent struct {
	// Allow is the proxy host (when it is a name) and the user's extra-domains, sorted.
	Allow []string
	// Block are the hosts the proxy sends Copilot traffic to (REST API of the licensing host, the
	// Copilot API, on github.com every plan's Copilot API host), less any the user listed in
	// extra-domains on purpose. Sorted.
	Block []string
	// Exposed are proxied hosts the user listed in extra-domains: the agent may reach them
	// directly, past the proxy. A warning, not an error: the agent may need the REST API for
	// other tools with a token of its own.
	Exposed []string
}

// ForAgent derives the sandboxed agent's set for ep while the proxy runs.
func ForAgent(ep platform.Endpoints, opt Options) (Agent, error) {
	var a Agent
	if v := strings.TrimSpace(opt.ProxyHost); v != "" {
		h, err := ProxyHost(v)
		if err != nil {
			return Agent{}, err
		}
		a.Allow = append(a.Allow, h)
	}
	extra, err := ParseDomains("extra-domains", opt.ExtraDomains)
	if err != nil {
		return Agent{}, err
	}
	a.Allow = uniqueSorted(append(a.Allow, extra...))

	proxied := []string{hostOf(ep.CopilotRESTAPIURL), hostOf(ep.CopilotAPIURL)}
	if ep.CopilotPlatform == platform.GitHubCom {
		proxied = append(append(proxied, "api.githubcopilot.com"), platform.PublicPlanCopilotHosts...)
	}
	for _, h := range uniqueSorted(proxied) {
		switch {
		case h == "" || net.ParseIP(h) != nil: // an address (a test target): awf filters names
		case slices.Contains(extra, h):
			a.Exposed = append(a.Exposed, h)
		default:
			a.Block = append(a.Block, h)
		}
	}
	return a, nil
}

// AWFArgs are the awf flags for this agent: host access on the proxy's port (0: none), the
// allowlist and the blocklist, each comma-separated, words separated by single spaces so the
// value can be expanded unquoted (`sudo -E awf $AWF_ARGS --env-all -- …`). Empty when there is
// nothing to pass.
func (a Agent) AWFArgs(hostPort int) string {
	var args []string
	if hostPort > 0 {
		args = append(args, "--enable-host-access", "--allow-host-ports", strconv.Itoa(hostPort))
	}
	if len(a.Allow) > 0 {
		args = append(args, "--allow-domains", strings.Join(a.Allow, ","))
	}
	if len(a.Block) > 0 {
		args = append(args, "--block-domains", strings.Join(a.Block, ","))
	}
	return strings.Join(args, " ")
}

// AWFArgs are the awf flags for an agent that talks to the tenant itself (no proxy): the whole list.
func (l List) AWFArgs() string {
	if len(l.Domains) == 0 {
		return ""
	}
	return "--allow-domains " + l.Comma()
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
}
