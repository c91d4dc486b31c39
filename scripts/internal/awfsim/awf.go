package main

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The addresses of awf's network (awf-net) in its iptables mode: src/host-iptables-shared.ts.
const (
	gatewayIP = "172.30.0.1"
	squidIP   = "172.30.0.10"
	agentIP   = "172.30.0.20"
	subnet    = "172.30.0.0/24"
	squidPort = 3128
)

// Options are the awf flags the simulator understands. Anything else is refused, so a flag that
// awf-args starts to emit cannot pass the test unnoticed.
type Options struct {
	AllowDomains   []string // --allow-domains, split on commas
	BlockDomains   []string // --block-domains
	HostAccess     bool     // --enable-host-access
	AllowHostPorts []string // --allow-host-ports, split on commas
	EnvAll         bool     // --env-all
	ExcludeEnv     []string // --exclude-env (repeatable)
	Env            []string // -e/--env KEY=VALUE (repeatable)
	Command        []string // after --
}

// Parse reads awf's command line as its commander-based parser does: `--flag value` or
// `--flag=value`, the command after `--`.
func Parse(args []string) (Options, error) {
	var o Options
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.Command = args[i+1:]
			break
		}
		name, val, hasVal := strings.Cut(a, "=")
		value := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return "", fmt.Errorf("error: option '%s' argument missing", name)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch name {
		case "--enable-host-access":
			o.HostAccess = true
		case "--env-all":
			o.EnvAll = true
		case "--allow-domains", "--block-domains", "--allow-host-ports", "--exclude-env", "-e", "--env":
			if v, err = value(); err != nil {
				return o, err
			}
			switch name {
			case "--allow-domains":
				o.AllowDomains = splitList(v)
			case "--block-domains":
				o.BlockDomains = splitList(v)
			case "--allow-host-ports":
				o.AllowHostPorts = splitList(v)
			case "--exclude-env":
				o.ExcludeEnv = append(o.ExcludeEnv, v)
			default:
				o.Env = append(o.Env, v)
			}
		default:
			return o, fmt.Errorf("awf (simulated): unknown or unsupported option %q", a)
		}
	}
	if len(o.Command) == 0 {
		return o, errors.New("awf (simulated): no command after --")
	}
	if len(o.AllowHostPorts) > 0 && !o.HostAccess {
		return o, errors.New("--allow-host-ports requires --enable-host-access")
	}
	for _, p := range o.AllowHostPorts {
		if !validPortSpec(p) {
			return o, fmt.Errorf("invalid port spec in --allow-host-ports: %s", p)
		}
	}
	for _, d := range append(slices.Clone(o.AllowDomains), o.BlockDomains...) {
		if err := validateDomain(d); err != nil {
			return o, err
		}
	}
	return o, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// validPortSpec is awf's isValidPortSpec: a port or a range N-M, no leading zeros.
func validPortSpec(s string) bool {
	lo, hi, isRange := strings.Cut(s, "-")
	ok := func(p string) (int, bool) {
		n, err := strconv.Atoi(p)
		return n, err == nil && strconv.Itoa(n) == p && n >= 1 && n <= 65535
	}
	a, okA := ok(lo)
	if !isRange {
		return okA
	}
	b, okB := ok(hi)
	return okA && okB && a <= b
}

// validateDomain is awf's validateDomainOrPattern (src/domain-validation.ts), its messages lower-cased.
func validateDomain(in string) error {
	d, _ := splitProtocol(in)
	switch {
	case d == "":
		return errors.New("awf: domain cannot be empty")
	case strings.ContainsAny(d, " \t\r\n\x00\"'`;#\\"):
		return fmt.Errorf("awf: invalid domain %q: contains invalid character", d)
	case d == "*" || d == "*.*" || strings.Trim(d, "*.") == "" && strings.Contains(d, "*"):
		return fmt.Errorf("awf: pattern '%s' is too broad and is not allowed", d)
	case strings.Contains(d, ".."):
		return fmt.Errorf("awf: invalid domain '%s': contains double dots", d)
	case d == ".":
		return errors.New("awf: invalid domain: cannot be just a dot")
	}
	segs := strings.Split(d, ".")
	wild := 0
	for _, s := range segs {
		if s == "*" {
			wild++
		}
	}
	if wild > 1 && wild >= len(segs)-1 {
		return fmt.Errorf("awf: pattern '%s' has too many wildcard segments and is not allowed", d)
	}
	return nil
}

// protocol is awf's DomainProtocol: a scheme prefix restricts an entry to HTTP or HTTPS.
type protocol string

const (
	protoBoth  protocol = "both"
	protoHTTP  protocol = "http"
	protoHTTPS protocol = "https"
)

func splitProtocol(in string) (string, protocol) {
	in = strings.TrimSpace(in)
	switch {
	case strings.HasPrefix(in, "http://"):
		return strings.TrimSuffix(in[len("http://"):], "/"), protoHTTP
	case strings.HasPrefix(in, "https://"):
		return strings.TrimSuffix(in[len("https://"):], "/"), protoHTTPS
	}
	return strings.TrimSuffix(in, "/"), protoBoth
}

type entry struct {
	domain string
	proto  protocol
}

type pattern struct {
	regex string
	re    *regexp.Regexp
	proto protocol
}

// wildcardToRegex is awf's: '*' becomes [a-zA-Z0-9.-]*, the rest is literal, anchored.
func wildcardToRegex(p string) string {
	var b strings.Builder
	b.WriteByte('^')
	for _, r := range p {
		switch {
		case r == '*':
			b.WriteString("[a-zA-Z0-9.-]*")
		case strings.ContainsRune(`.^$+?{}[]|()\`, r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('$')
	return b.String()
}

// parseDomains is awf's parseDomainList plus parseDomainConfig (src/squid/domain-acl.ts): plain
// entries and wildcard patterns; a plain entry covered by another plain entry of a compatible
// protocol (a bare name admits its subdomains) or by a pattern is dropped, because Squid warns
// about (newer releases refuse) a dstdomain ACL holding both .x and .a.x.
func parseDomains(list []string) (plain []entry, patterns []pattern) {
	for _, in := range list {
		d, proto := splitProtocol(in)
		if strings.Contains(d, "*") {
			rx := wildcardToRegex(d)
			patterns = append(patterns, pattern{regex: rx, re: regexp.MustCompile("(?i)" + rx), proto: proto})
			continue
		}
		plain = append(plain, entry{domain: d, proto: proto})
	}
	var kept []entry
	for i, e := range plain {
		covered := slices.ContainsFunc(plain, func(o entry) bool {
			return o != plain[i] && e.domain != o.domain && strings.HasSuffix(e.domain, "."+o.domain) &&
				(o.proto == protoBoth || o.proto == e.proto)
		}) || slices.ContainsFunc(patterns, func(p pattern) bool {
			return p.re.MatchString(e.domain) && (p.proto == protoBoth || e.proto != protoBoth && p.proto == e.proto)
		})
		if !covered {
			kept = append(kept, e)
		}
	}
	return kept, patterns
}

// ghecDomains is awf's extractGhecDomainsFromServerUrl (src/api-proxy-config-domains.ts), which
// it applies to every run since v0.24.2: on a GHE.com runner the tenant's four hosts join the
// allowlist whatever --allow-domains says.
func ghecDomains(serverURL, apiURL string) []string {
	var out []string
	if u, err := url.Parse(serverURL); err == nil && u.Hostname() != "github.com" && strings.HasSuffix(u.Hostname(), ".ghe.com") {
		h := u.Hostname()
		out = append(out, h, "api."+h, "copilot-api."+h, "copilot-telemetry-service."+h)
	}
	if u, err := url.Parse(apiURL); err == nil && u.Hostname() != "api.github.com" && strings.HasSuffix(u.Hostname(), ".ghe.com") &&
		!slices.Contains(out, u.Hostname()) {
		out = append(out, u.Hostname())
	}
	return out
}

// AllowedDomains is the final allowlist awf hands to Squid: the flag's entries, then the GHE.com
// tenant's hosts from the runner's environment, without duplicates.
func AllowedDomains(o Options, getenv func(string) string) []string {
	out := slices.Clone(o.AllowDomains)
	for _, d := range ghecDomains(getenv("GITHUB_SERVER_URL"), getenv("GITHUB_API_URL")) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	var uniq []string
	for _, d := range out {
		if !slices.Contains(uniq, d) {
			uniq = append(uniq, d)
		}
	}
	return uniq
}
