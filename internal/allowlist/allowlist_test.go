package allowlist

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/platform"
)

func detect(t *testing.T, in platform.Input) platform.Endpoints {
	t.Helper()
	ep, err := platform.Detect(in)
	if err != nil {
		t.Fatalf("Detect(%+v): %v", in, err)
	}
	return ep
}

var publicCopilot = []string{
	"api.business.githubcopilot.com", "api.enterprise.githubcopilot.com", "api.githubcopilot.com",
	"api.individual.githubcopilot.com", "copilot-telemetry.githubusercontent.com",
	"telemetry.business.githubcopilot.com", "telemetry.enterprise.githubcopilot.com", "telemetry.individual.githubcopilot.com",
}

func TestFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		in        platform.Input
		opt       Options
		domains   []string
		tenants   []string
		endpoints string
	}{
		{
			name:    "github.com",
			in:      platform.Input{ServerURL: "https://github.com"},
			domains: append([]string{"api.github.com", "github.com"}, publicCopilot...),
		},
		{
			name:      "tenant holds nothing public",
			in:        platform.Input{ServerURL: "https://acme.ghe.com"},
			domains:   []string{"acme.ghe.com", "api.acme.ghe.com", "copilot-api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com"},
			tenants:   []string{"acme.ghe.com"},
			endpoints: "*.acme.ghe.com:443 acme.ghe.com:443 api.acme.ghe.com:443 copilot-api.acme.ghe.com:443 copilot-telemetry-service.acme.ghe.com:443",
		},
		{
			name:    "tenant plus user additions",
			in:      platform.Input{ServerURL: "https://acme.ghe.com"},
			opt:     Options{ProxyHost: "host.docker.internal", ExtraDomains: "registry.npmjs.org, https://Proxy.Golang.org/x\n*.pythonhosted.org  github.com"},
			domains: []string{"*.pythonhosted.org", "acme.ghe.com", "api.acme.ghe.com", "copilot-api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com", "github.com", "host.docker.internal", "proxy.golang.org", "registry.npmjs.org"},
			tenants: []string{"acme.ghe.com"},
		},
		{
			name:      "ghes on a port, Copilot on github.com",
			in:        platform.Input{ServerURL: "https://github.internal:8443"},
			domains:   append([]string{"api.github.com", "github.com", "github.internal"}, publicCopilot...),
			endpoints: "github.internal:8443",
		},
		{
			name:    "ghes over http, Copilot on a tenant",
			in:      platform.Input{ServerURL: "http://ghes.corp", CopilotHost: "acme.ghe.com"},
			domains: []string{"acme.ghe.com", "api.acme.ghe.com", "copilot-api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com", "ghes.corp"},
			tenants: []string{"acme.ghe.com"},
		},
		{
			name:    "github.com with Copilot on a tenant has no public Copilot host",
			in:      platform.Input{ServerURL: "https://github.com", CopilotHost: "acme.ghe.com"},
			domains: []string{"acme.ghe.com", "api.acme.ghe.com", "api.github.com", "copilot-api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com", "github.com"},
			tenants: []string{"acme.ghe.com"},
		},
		{
			name:    "runner API and GraphQL URLs",
			in:      platform.Input{ServerURL: "https://github.example.com", APIURL: "https://api.github.example.com", GraphQLURL: "https://graphql.github.example.com/graphql", CopilotHost: "acme.ghe.com"},
			domains: []string{"acme.ghe.com", "api.acme.ghe.com", "api.github.example.com", "copilot-api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com", "github.example.com", "graphql.github.example.com"},
			tenants: []string{"acme.ghe.com"},
		},
		{
			name:    "copilot-api-target on loopback",
			in:      platform.Input{ServerURL: "https://acme.ghe.com", CopilotAPITarget: "https://127.0.0.1:9443"},
			domains: []string{"127.0.0.1", "acme.ghe.com", "api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com"},
			tenants: []string{"acme.ghe.com"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep := detect(t, tc.in)
			l, err := For(ep, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tc.domains)
			slices.Sort(want)
			if !slices.Equal(l.Domains, want) {
				t.Errorf("Domains\n got %q\nwant %q", l.Domains, want)
			}
			if !slices.Equal(l.Tenants, tc.tenants) {
				t.Errorf("Tenants = %q, want %q", l.Tenants, tc.tenants)
			}
			if tc.endpoints != "" && !strings.Contains(l.HardenRunner(), tc.endpoints) {
				t.Errorf("HardenRunner() = %q, want it to contain %q", l.HardenRunner(), tc.endpoints)
			}
			if ep.Platform == platform.GHECom && tc.opt.ExtraDomains == "" {
				for _, d := range l.Domains {
					if strings.HasSuffix(d, "github.com") || strings.HasSuffix(d, "githubcopilot.com") || strings.HasSuffix(d, "githubusercontent.com") {
						t.Errorf("a tenant's list holds the public host %s", d)
					}
				}
			}
			for _, d := range l.Domains {
				if d != strings.ToLower(d) || strings.ContainsAny(d, ":/ ,") {
					t.Errorf("domain %q is not a bare lower-case name", d)
				}
			}
		})
	}
}

func TestFormats(t *testing.T) {
	t.Parallel()
	l, err := For(detect(t, platform.Input{ServerURL: "https://acme.ghe.com"}), Options{ExtraDomains: "*.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Comma(), "*.example.com,acme.ghe.com,api.acme.ghe.com,copilot-api.acme.ghe.com,copilot-telemetry-service.acme.ghe.com"; got != want {
		t.Errorf("Comma() = %q, want %q", got, want)
	}
	if got, want := l.Lines(), "*.acme.ghe.com\n*.example.com\nacme.ghe.com\napi.acme.ghe.com\ncopilot-api.acme.ghe.com\ncopilot-telemetry-service.acme.ghe.com"; got != want {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
	if got, want := l.HardenRunner(), "*.acme.ghe.com:443 *.example.com:443 acme.ghe.com:443 api.acme.ghe.com:443 copilot-api.acme.ghe.com:443 copilot-telemetry-service.acme.ghe.com:443"; got != want {
		t.Errorf("HardenRunner() = %q, want %q", got, want)
	}
	want := "network:\n  allowed:\n    - defaults\n    - \"*.example.com\"\n    - \"acme.ghe.com\"\n    - \"api.acme.ghe.com\"\n    - \"copilot-api.acme.ghe.com\"\n    - \"copilot-telemetry-service.acme.ghe.com\"\n"
	if got := l.GHAW(); got != want {
		t.Errorf("GHAW() =\n%s\nwant\n%s", got, want)
	}
	var empty List
	if empty.Comma() != "" || empty.Lines() != "" || empty.HardenRunner() != "" {
		t.Errorf("empty list renders non-empty")
	}
}

func TestDomain(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"example.com":                    "example.com",
		"  API.Example.COM.  ":           "api.example.com",
		"*.example.com":                  "*.example.com",
		"*.Sub.Example.com":              "*.sub.example.com",
		"https://api.example.com/v1/x":   "api.example.com",
		"http://Example.com:8080":        "example.com",
		"example.com:443":                "example.com",
		"localhost":                      "localhost",
		"host.docker.internal":           "host.docker.internal",
		"xn--bcher-kva.example":          "xn--bcher-kva.example",
		"a-b.c-d.example":                "a-b.c-d.example",
		"example.co.uk":                  "example.co.uk",
		"*.githubcopilot.com":            "*.githubcopilot.com",
		"acme.ghe.com":                   "acme.ghe.com",
		"*.acme.ghe.com":                 "*.acme.ghe.com",
		"1password.com":                  "1password.com",
		strings.Repeat("a", 63) + ".com": strings.Repeat("a", 63) + ".com",
	}
	for in, want := range good {
		got, err := Domain(in)
		if err != nil || got != want {
			t.Errorf("Domain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                                "empty",
		"   ":                             "empty",
		"exa mple.com":                    "spaces",
		"example.com;rm -rf":              "any of ;",
		"example.com;x":                   "quotes or any of ;",
		`"example.com"`:                   "quotes",
		"'example.com'":                   "quotes",
		"example.com\n::set-output":       "line breaks",
		"exam\rple.com":                   "line breaks",
		"*":                               "wildcard",
		"*.com":                           "single label",
		"*.co.uk":                         "public suffix",
		"co.uk":                           "public suffix",
		"ghe.com":                         "public suffix",
		"*.ghe.com":                       "public suffix",
		"*.github.io":                     "public suffix",
		"com":                             "single label",
		"intranet":                        "single label",
		"a.*.example.com":                 "wildcard",
		"*example.com":                    "wildcard",
		"**.example.com":                  "wildcard",
		".example.com":                    "*.example.com",
		"10.0.0.1":                        "IP address",
		"10.0.0.1:443":                    "IP address",
		"https://10.0.0.1/":               "IP address",
		"::1":                             "IP address",
		"[::1]:443":                       "IP address",
		"https://[2001:db8::1]:8443":      "IP address",
		"1.2.3":                           "IP address",
		"example.com/path":                "not a path",
		"example.com:0":                   "port",
		"example.com:99999":               "port",
		"example.com:http":                "port",
		"ftp://example.com":               "https",
		"https://user:pw@example.com":     "user name",
		"https://":                        "no host",
		"ex_ample.com":                    "character",
		"exämple.com":                     "punycode",
		"-example.com":                    "'-'",
		"example-.com":                    "'-'",
		"a..example.com":                  "empty",
		strings.Repeat("a", 64) + ".com":  "over-long",
		strings.Repeat("a.", 130) + "com": "253",
		"example.com#frag":                "#",
		"$(curl evil)":                    "$",
		"example.com,evil.com":            ",",
	}
	for in, problem := range bad {
		got, err := Domain(in)
		if err == nil {
			t.Errorf("Domain(%q) = %q, want an error about %q", in, got, problem)
			continue
		}
		if !strings.Contains(err.Error(), problem) {
			t.Errorf("Domain(%q) error %q does not mention %q", in, err, problem)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("Domain(%q) error has a line break", in)
		}
	}
}

func TestParseDomainsAndProxyHost(t *testing.T) {
	t.Parallel()
	got, err := ParseDomains("extra-domains", " b.example.com,a.example.com\n\tb.example.com  ,,https://c.example.com/x\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.example.com", "b.example.com", "c.example.com"}; !slices.Equal(got, want) {
		t.Errorf("ParseDomains = %q, want %q", got, want)
	}
	if got, err := ParseDomains("extra-domains", ""); err != nil || len(got) != 0 {
		t.Errorf("ParseDomains(\"\") = %q, %v", got, err)
	}
	for input, raw := range map[string]string{"extra-domains": "ok.example.com, *.com", "proxy-host": "*.example.com"} {
		var err error
		if input == "proxy-host" {
			_, err = For(platform.Endpoints{}, Options{ProxyHost: raw})
		} else {
			_, err = For(platform.Endpoints{}, Options{ExtraDomains: raw})
		}
		var ie *platform.InputError
		if !errors.As(err, &ie) || ie.Input != input || ie.Example == "" || ie.Value == "" {
			t.Errorf("%s = %q: error %#v, want an *InputError naming %s with a value and an example", input, raw, err, input)
		}
	}
	for _, bad := range []string{"10.0.0.1", "host docker", "a;b.example.com"} {
		if _, err := ProxyHost(bad); err == nil {
			t.Errorf("ProxyHost(%q) accepted", bad)
		}
	}
	if h, err := ProxyHost("http://host.docker.internal:8080"); err != nil || h != "host.docker.internal" {
		t.Errorf("ProxyHost(URL) = %q, %v", h, err)
	}
}

func TestForAgent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                  string
		in                    platform.Input
		opt                   Options
		allow, block, exposed []string
		awf                   string // AWFArgs(8790)
	}{
		{
			name:  "tenant in awf: the proxy host only, the tenant's API hosts blocked",
			in:    platform.Input{ServerURL: "https://acme.ghe.com"},
			opt:   Options{ProxyHost: "host.docker.internal"},
			allow: []string{"host.docker.internal"},
			block: []string{"api.acme.ghe.com", "copilot-api.acme.ghe.com"},
			awf:   "--enable-host-access --allow-host-ports 8790 --allow-domains host.docker.internal --block-domains api.acme.ghe.com,copilot-api.acme.ghe.com",
		},
		{
			name:  "github.com: every plan's Copilot API and the REST API blocked",
			in:    platform.Input{ServerURL: "https://github.com"},
			opt:   Options{ProxyHost: "host.docker.internal", ExtraDomains: "registry.npmjs.org"},
			allow: []string{"host.docker.internal", "registry.npmjs.org"},
			block: []string{"api.business.githubcopilot.com", "api.enterprise.githubcopilot.com", "api.github.com", "api.githubcopilot.com", "api.individual.githubcopilot.com"},
			awf: "--enable-host-access --allow-host-ports 8790 --allow-domains host.docker.internal,registry.npmjs.org " +
				"--block-domains api.business.githubcopilot.com,api.enterprise.githubcopilot.com,api.github.com,api.githubcopilot.com,api.individual.githubcopilot.com",
		},
		{
			name:  "ghes licensed on a tenant: the tenant's hosts blocked, the GHES host untouched",
			in:    platform.Input{ServerURL: "https://github.internal", CopilotHost: "acme.ghe.com"},
			opt:   Options{ProxyHost: "host.docker.internal", ExtraDomains: "github.internal"},
			allow: []string{"github.internal", "host.docker.internal"},
			block: []string{"api.acme.ghe.com", "copilot-api.acme.ghe.com"},
			awf:   "--enable-host-access --allow-host-ports 8790 --allow-domains github.internal,host.docker.internal --block-domains api.acme.ghe.com,copilot-api.acme.ghe.com",
		},
		{
			name:    "a proxied host listed on purpose is exposed, not blocked; a bare tenant stays covered by the block",
			in:      platform.Input{ServerURL: "https://acme.ghe.com"},
			opt:     Options{ProxyHost: "host.docker.internal", ExtraDomains: "api.acme.ghe.com acme.ghe.com"},
			allow:   []string{"acme.ghe.com", "api.acme.ghe.com", "host.docker.internal"},
			block:   []string{"copilot-api.acme.ghe.com"},
			exposed: []string{"api.acme.ghe.com"},
			awf:     "--enable-host-access --allow-host-ports 8790 --allow-domains acme.ghe.com,api.acme.ghe.com,host.docker.internal --block-domains copilot-api.acme.ghe.com",
		},
		{
			name:  "an address as the Copilot API (a test target) is not a name awf can block",
			in:    platform.Input{ServerURL: "https://acme.ghe.com", CopilotAPITarget: "https://127.0.0.1:8443"},
			opt:   Options{ProxyHost: "host.docker.internal"},
			allow: []string{"host.docker.internal"},
			block: []string{"api.acme.ghe.com"},
			awf:   "--enable-host-access --allow-host-ports 8790 --allow-domains host.docker.internal --block-domains api.acme.ghe.com",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, err := ForAgent(detect(t, c.in), c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Allow, c.allow) || !slices.Equal(a.Block, c.block) || !slices.Equal(a.Exposed, c.exposed) {
				t.Errorf("ForAgent = allow %q block %q exposed %q; want allow %q block %q exposed %q", a.Allow, a.Block, a.Exposed, c.allow, c.block, c.exposed)
			}
			if got := a.AWFArgs(8790); got != c.awf {
				t.Errorf("AWFArgs(8790) =\n  %s\nwant\n  %s", got, c.awf)
			}
		})
	}
}

func TestAWFArgsEdges(t *testing.T) {
	t.Parallel()
	if got := (Agent{}).AWFArgs(0); got != "" {
		t.Errorf("empty agent: AWFArgs(0) = %q, want nothing", got)
	}
	if got := (Agent{Allow: []string{"x.example.com"}}).AWFArgs(0); got != "--allow-domains x.example.com" {
		t.Errorf("no host port: AWFArgs(0) = %q", got)
	}
	l, err := For(detect(t, platform.Input{ServerURL: "https://acme.ghe.com"}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.AWFArgs(), "--allow-domains acme.ghe.com,api.acme.ghe.com,copilot-api.acme.ghe.com,copilot-telemetry-service.acme.ghe.com"; got != want {
		t.Errorf("List.AWFArgs() = %q, want %q", got, want)
	}
	if got := (List{}).AWFArgs(); got != "" {
		t.Errorf("empty list: AWFArgs() = %q", got)
	}
	for _, bad := range []Options{{ProxyHost: "*.docker.internal"}, {ProxyHost: "10.0.0.1"}, {ExtraDomains: "ghe.com"}} {
		if _, err := ForAgent(detect(t, platform.Input{ServerURL: "https://acme.ghe.com"}), bad); err == nil {
			t.Errorf("ForAgent(%+v) accepted a bad input", bad)
		}
	}
}
