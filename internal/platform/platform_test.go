package platform

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// want is the subset of Endpoints a derivation case checks; "" fields are checked too (they
// must be empty), except Warn, which is a substring of the joined warnings ("-" means none).
type want struct {
	platform, tenant, server, ghHost, api, graphql       string
	copilotHost, copilotREST, copilotAPI, telemetry, how string
	warn                                                 string
}

var (
	dotcom = want{platform: "github.com", server: "https://github.com", api: "https://api.github.com",
		copilotHost: "github.com", copilotREST: "https://api.github.com", copilotAPI: "https://api.githubcopilot.com",
		telemetry: "https://copilot-telemetry.githubusercontent.com", warn: "-"}
	acme = want{platform: "ghe.com", tenant: "acme", server: "https://acme.ghe.com", ghHost: "acme.ghe.com",
		api: "https://api.acme.ghe.com", copilotHost: "acme.ghe.com", copilotREST: "https://api.acme.ghe.com",
		copilotAPI: "https://copilot-api.acme.ghe.com", telemetry: "https://copilot-telemetry-service.acme.ghe.com", warn: "-"}
	ghes = want{platform: "ghes", server: "https://github.example.com", ghHost: "github.example.com",
		api: "https://github.example.com/api/v3", copilotHost: "github.com", copilotREST: "https://api.github.com",
		copilotAPI: "https://api.githubcopilot.com", telemetry: "https://copilot-telemetry.githubusercontent.com",
		warn: "set the input copilot-host"}
)

func with(w want, f func(*want)) want { f(&w); return w }

func TestDetect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   Input
		want want
	}{
		// github.com
		{"empty means github.com", Input{}, dotcom},
		{"github.com", Input{ServerURL: "https://github.com"}, dotcom},
		{"github.com trailing slash", Input{ServerURL: "https://github.com/"}, dotcom},
		{"github.com upper case", Input{ServerURL: "HTTPS://GitHub.COM"}, dotcom},
		{"github.com with a path", Input{ServerURL: "https://github.com/octo/repo"}, dotcom},
		{"github.com bare host", Input{ServerURL: "github.com"}, dotcom},
		{"github.com http spelling", Input{ServerURL: "http://github.com"}, dotcom},
		{"www.github.com", Input{ServerURL: "https://www.github.com"}, dotcom},
		{"github.com :443", Input{ServerURL: "https://github.com:443"}, dotcom},
		{"github.com root dot", Input{ServerURL: "https://github.com."}, dotcom},
		{"github.com surrounding space", Input{ServerURL: "  https://github.com \n"}, dotcom},
		{"github.com with runner API URL", Input{ServerURL: "https://github.com", APIURL: "https://api.github.com/", GraphQLURL: "https://api.github.com/graphql"},
			with(dotcom, func(w *want) {
				w.graphql = "https://api.github.com/graphql"
				w.how = "api_url=from GITHUB_API_URL / api-url"
			})},
		{"github.com platform auto", Input{ServerURL: "https://github.com", Platform: "AUTO"}, dotcom},
		{"github.com platform same", Input{ServerURL: "https://github.com", Platform: "github.com"}, dotcom},
		{"github.com Copilot on a tenant", Input{ServerURL: "https://github.com", CopilotHost: "acme.ghe.com"},
			with(dotcom, func(w *want) {
				w.copilotHost, w.copilotREST = "acme.ghe.com", "https://api.acme.ghe.com"
				w.copilotAPI, w.telemetry = "https://copilot-api.acme.ghe.com", "https://copilot-telemetry-service.acme.ghe.com"
			})},
		{"github.com copilot-api-target host", Input{CopilotAPITarget: "api.business.githubcopilot.com"},
			with(dotcom, func(w *want) {
				w.copilotAPI = "https://api.business.githubcopilot.com"
				w.how = "copilot_api_url=from input copilot-api-target"
			})},
		{"github.com copilot-api-target loopback with port", Input{CopilotAPITarget: "https://127.0.0.1:8443/"},
			with(dotcom, func(w *want) { w.copilotAPI = "https://127.0.0.1:8443" })},
		{"github.com copilot-api-target with a path", Input{CopilotAPITarget: "https://proxy.example.com/copilot/"},
			with(dotcom, func(w *want) { w.copilotAPI = "https://proxy.example.com/copilot" })},

		// GHE.com data residency
		{"tenant", Input{ServerURL: "https://acme.ghe.com"}, acme},
		{"tenant trailing slash", Input{ServerURL: "https://acme.ghe.com/"}, acme},
		{"tenant with a path", Input{ServerURL: "https://acme.ghe.com/enterprises/acme/"}, acme},
		{"tenant upper case", Input{ServerURL: "https://ACME.GHE.COM"}, acme},
		{"tenant bare host", Input{ServerURL: "acme.ghe.com"}, acme},
		{"tenant root dot", Input{ServerURL: "https://acme.ghe.com./"}, acme},
		{"tenant :443", Input{ServerURL: "https://acme.ghe.com:443"}, acme},
		{"tenant with the runner's API URL", Input{ServerURL: "https://acme.ghe.com", APIURL: "https://api.acme.ghe.com"},
			with(acme, func(w *want) { w.how = "api_url=from GITHUB_API_URL / api-url" })},
		{"tenant API on loopback warns", Input{ServerURL: "https://acme.ghe.com", APIURL: "https://127.0.0.1:9443"},
			with(acme, func(w *want) {
				w.api, w.copilotREST, w.warn = "https://127.0.0.1:9443", "https://127.0.0.1:9443", "is not on the tenant"
			})},
		{"tenant platform same", Input{ServerURL: "https://acme.ghe.com", Platform: "GHE.com"}, acme},
		{"tenant copilot-host itself", Input{ServerURL: "https://acme.ghe.com", CopilotHost: "https://acme.ghe.com"},
			with(acme, func(w *want) { w.how = "copilot_host=from input copilot-host" })},
		{"tenant digits and hyphens", Input{ServerURL: "https://my-co-2.ghe.com"},
			want{platform: "ghe.com", tenant: "my-co-2", server: "https://my-co-2.ghe.com", ghHost: "my-co-2.ghe.com",
				api: "https://api.my-co-2.ghe.com", copilotHost: "my-co-2.ghe.com", copilotREST: "https://api.my-co-2.ghe.com",
				copilotAPI: "https://copilot-api.my-co-2.ghe.com", telemetry: "https://copilot-telemetry-service.my-co-2.ghe.com", warn: "-"}},
		{"tenant copilot-api-target", Input{ServerURL: "https://acme.ghe.com", CopilotAPITarget: "copilot-api.acme.ghe.com"}, acme},

		// GHES
		{"ghes", Input{ServerURL: "https://github.example.com"}, ghes},
		{"ghes trailing slash and path", Input{ServerURL: "https://github.example.com/some/path/"}, ghes},
		{"ghes upper case", Input{ServerURL: "https://GitHub.Example.COM"}, ghes},
		{"ghes port", Input{ServerURL: "https://github.internal:8443"},
			with(ghes, func(w *want) {
				w.server, w.ghHost, w.api = "https://github.internal:8443", "github.internal", "https://github.internal:8443/api/v3"
			})},
		{"ghes http", Input{ServerURL: "http://ghes.corp"},
			with(ghes, func(w *want) { w.server, w.ghHost, w.api = "http://ghes.corp", "ghes.corp", "http://ghes.corp/api/v3" })},
		{"ghes http :80", Input{ServerURL: "http://ghes.corp:80/"},
			with(ghes, func(w *want) { w.server, w.ghHost, w.api = "http://ghes.corp", "ghes.corp", "http://ghes.corp/api/v3" })},
		{"ghes GITHUB_API_URL wins", Input{ServerURL: "https://github.example.com", APIURL: "https://api.github.example.com/"},
			with(ghes, func(w *want) { w.api = "https://api.github.example.com" })},
		{"ghes single-label host", Input{ServerURL: "https://ghes"},
			with(ghes, func(w *want) { w.server, w.ghHost, w.api = "https://ghes", "ghes", "https://ghes/api/v3" })},
		{"ghes IP literal", Input{ServerURL: "https://10.0.0.5"},
			with(ghes, func(w *want) { w.server, w.ghHost, w.api = "https://10.0.0.5", "10.0.0.5", "https://10.0.0.5/api/v3" })},
		{"ghes Copilot on a tenant", Input{ServerURL: "https://github.example.com", CopilotHost: "acme.ghe.com"},
			with(ghes, func(w *want) {
				w.copilotHost, w.copilotREST = "acme.ghe.com", "https://api.acme.ghe.com"
				w.copilotAPI, w.telemetry = "https://copilot-api.acme.ghe.com", "https://copilot-telemetry-service.acme.ghe.com"
				w.warn = "-"
			})},
		{"ghes Copilot on github.com explicitly", Input{ServerURL: "https://github.example.com", CopilotHost: "github.com"},
			with(ghes, func(w *want) { w.warn = "-" })},
		{"ghes platform same", Input{ServerURL: "https://github.example.com", Platform: "ghes"}, ghes},
		{"custom name as a tenant", Input{ServerURL: "https://acme.test", Platform: "ghe.com"},
			want{platform: "ghe.com", tenant: "acme", server: "https://acme.test", ghHost: "acme.test", api: "https://api.acme.test",
				copilotHost: "acme.test", copilotREST: "https://api.acme.test", copilotAPI: "https://copilot-api.acme.test",
				telemetry: "https://copilot-telemetry-service.acme.test", warn: "-", how: "platform=from input platform (overrides the server URL)"}},
		{"custom name as github.com", Input{ServerURL: "https://mirror.example.com", Platform: "github.com"},
			with(dotcom, func(w *want) {
				w.server = "https://mirror.example.com"
				w.copilotREST = "https://api.github.com"
			})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep, err := Detect(tc.in)
			if err != nil {
				t.Fatalf("Detect(%+v): %v", tc.in, err)
			}
			w := tc.want
			got := want{platform: string(ep.Platform), tenant: ep.Tenant, server: ep.ServerURL, ghHost: ep.GHHost, api: ep.APIURL,
				graphql: ep.GraphQLURL, copilotHost: ep.CopilotHost, copilotREST: ep.CopilotRESTAPIURL, copilotAPI: ep.CopilotAPIURL,
				telemetry: ep.TelemetryURL, how: w.how, warn: w.warn}
			if w.how != "" {
				what, how, _ := strings.Cut(w.how, "=")
				if g := ep.How(what); g != how {
					t.Errorf("How(%s) = %q, want %q", what, g, how)
				}
			}
			warns := strings.Join(ep.Warnings, "\n")
			switch {
			case w.warn == "-" && warns != "":
				t.Errorf("unexpected warnings: %s", warns)
			case w.warn != "-" && !strings.Contains(warns, w.warn):
				t.Errorf("warnings %q lack %q", warns, w.warn)
			}
			if got != w {
				t.Errorf("Detect(%+v)\n got %+v\nwant %+v", tc.in, got, w)
			}
			checkInvariants(t, tc.in, ep)
		})
	}
}

// checkInvariants holds for every successful Detect: what FuzzDetect checks too.
func checkInvariants(t *testing.T, in Input, ep Endpoints) {
	t.Helper()
	for _, u := range []string{ep.ServerURL, ep.APIURL, ep.GraphQLURL, ep.CopilotRESTAPIURL, ep.CopilotAPIURL, ep.TelemetryURL} {
		if strings.HasSuffix(u, "/") {
			t.Errorf("URL %q has a trailing slash", u)
		}
		if u != "" && HostOf(u) == "" {
			t.Errorf("URL %q has no host", u)
		}
		if u != strings.ToLower(u) && !strings.Contains(u, "/api/") {
			// Paths may keep case; scheme and host may not.
			if h := HostOf(u); !strings.Contains(u, h) {
				t.Errorf("URL %q host is not lower case", u)
			}
		}
	}
	if ep.ServerURL == "" || ep.APIURL == "" || ep.CopilotAPIURL == "" || ep.TelemetryURL == "" || ep.CopilotRESTAPIURL == "" {
		t.Errorf("an endpoint is empty: %+v", ep)
	}
	switch ep.Platform {
	case GitHubCom:
		if ep.GHHost != "" || ep.Tenant != "" {
			t.Errorf("github.com has GH_HOST %q tenant %q", ep.GHHost, ep.Tenant)
		}
	case GHECom:
		if ep.Tenant == "" || ep.GHHost == "" {
			t.Errorf("ghe.com without tenant or GH_HOST: %+v", ep)
		}
	case GHES:
		// An IPv6 literal has colons of its own ("0:0:0:0:0:0:0:0", found by FuzzDetect).
		if ep.GHHost == "" || strings.Contains(ep.GHHost, ":") && net.ParseIP(ep.GHHost) == nil {
			t.Errorf("GHES GH_HOST %q (must be the host without port)", ep.GHHost)
		}
	default:
		t.Errorf("unknown platform %q", ep.Platform)
	}
	// Fail closed: a tenant's Copilot traffic never goes to a public host unless the user named one.
	if ep.CopilotPlatform == GHECom && strings.TrimSpace(in.CopilotAPITarget) == "" {
		for _, u := range []string{ep.CopilotAPIURL, ep.TelemetryURL, ep.CopilotRESTAPIURL} {
			h := HostOf(u)
			if strings.HasSuffix(h, "githubcopilot.com") || strings.HasSuffix(h, "github.com") || strings.HasSuffix(h, "githubusercontent.com") {
				t.Errorf("tenant routed to public host %s", u)
			}
		}
	}
}

func TestDetectBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		in      Input
		input   string // which input the error must name
		problem string // substring of the problem
	}{
		{"not a URL", Input{ServerURL: "https://%zz"}, "server-url", "not a URL"},
		{"no host", Input{ServerURL: "https://"}, "server-url", "no host"},
		{"no host with path", Input{ServerURL: "https:///path"}, "server-url", "no host"},
		{"ftp", Input{ServerURL: "ftp://github.com"}, "server-url", "scheme"},
		{"javascript", Input{ServerURL: "javascript://github.com"}, "server-url", "scheme"},
		{"userinfo", Input{ServerURL: "https://user:pass@github.com"}, "server-url", "user name"},
		{"token userinfo", Input{ServerURL: "https://x-access-token@acme.ghe.com"}, "server-url", "user name"},
		{"bare ghe.com", Input{ServerURL: "https://ghe.com"}, "server-url", "ghe.com alone"},
		{"bare ghe.com host", Input{ServerURL: "ghe.com"}, "server-url", "ghe.com alone"},
		{"www.ghe.com", Input{ServerURL: "https://www.ghe.com/"}, "server-url", "ghe.com alone"},
		{"host in a tenant", Input{ServerURL: "https://api.acme.ghe.com"}, "server-url", "use https://acme.ghe.com"},
		{"api.github.com", Input{ServerURL: "https://api.github.com"}, "server-url", "API host"},
		{"githubcopilot.com", Input{ServerURL: "https://api.githubcopilot.com"}, "server-url", "API host"},
		{"gist", Input{ServerURL: "https://gist.github.com"}, "server-url", "service host"},
		{"raw", Input{ServerURL: "https://raw.githubusercontent.com"}, "server-url", "service host"},
		{"space", Input{ServerURL: "https://git hub.com"}, "server-url", "spaces"},
		{"quote", Input{ServerURL: `https://github.com"`}, "server-url", "quotes"},
		{"semicolon", Input{ServerURL: "https://github.com;rm"}, "server-url", "';'"},
		{"newline", Input{ServerURL: "https://github.com\n::set-output name=x::y"}, "server-url", "line breaks"},
		{"query", Input{ServerURL: "https://github.com/?a=b"}, "server-url", "query"},
		{"fragment", Input{ServerURL: "https://github.com/#x"}, "server-url", "fragment"},
		{"port 0", Input{ServerURL: "https://ghes.corp:0"}, "server-url", "port"},
		{"port too big", Input{ServerURL: "https://ghes.corp:70000"}, "server-url", "port"},
		{"empty label", Input{ServerURL: "https://ghes..corp"}, "server-url", "empty"},
		{"bad char", Input{ServerURL: "https://gh!es.corp"}, "server-url", "character"},
		{"leading hyphen", Input{ServerURL: "https://-ghes.corp"}, "server-url", "'-'"},
		{"unknown platform", Input{Platform: "gitlab"}, "platform", "unknown platform"},
		{"tenant as github.com", Input{ServerURL: "https://acme.ghe.com", Platform: "github.com"}, "platform", "cannot be treated"},
		{"tenant as ghes", Input{ServerURL: "https://acme.ghe.com", Platform: "ghes"}, "platform", "cannot be treated"},
		{"github.com as ghes", Input{ServerURL: "https://github.com", Platform: "ghes"}, "platform", "cannot be treated"},
		{"api-url not a URL", Input{APIURL: "api.github.com"}, "api-url", "scheme"},
		{"api-url userinfo", Input{APIURL: "https://u:p@api.github.com"}, "api-url", "user name"},
		{"graphql-url ftp", Input{GraphQLURL: "ftp://x"}, "graphql-url", "scheme"},
		{"copilot-host ghes", Input{ServerURL: "https://github.example.com", CopilotHost: "github.example.com"}, "copilot-host", "licensed on github.com"},
		{"copilot-host with path", Input{CopilotHost: "https://github.com/x"}, "copilot-host", "host name"},
		{"copilot-host bare ghe.com", Input{CopilotHost: "ghe.com"}, "copilot-host", "licensed on"},
		{"copilot-api-target http", Input{CopilotAPITarget: "http://copilot-api.acme.ghe.com"}, "copilot-api-target", "https"},
		{"copilot-api-target userinfo", Input{CopilotAPITarget: "https://a:b@x.example.com"}, "copilot-api-target", "user name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep, err := Detect(tc.in)
			if err == nil {
				t.Fatalf("Detect(%+v) = %+v, want an error", tc.in, ep)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T %v is not an *InputError", err, err)
			}
			if ie.Input != tc.input || !strings.Contains(ie.Problem, tc.problem) {
				t.Errorf("got input %q problem %q, want input %q problem containing %q", ie.Input, ie.Problem, tc.input, tc.problem)
			}
			if ie.Example == "" {
				t.Errorf("no example in %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error message has a line break: %q", err.Error())
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		host   string
		kind   Kind
		tenant string
		err    bool
	}{
		{"github.com", GitHubCom, "", false},
		{"GITHUB.COM.", GitHubCom, "", false},
		{"www.github.com", GitHubCom, "", false},
		{"acme.ghe.com", GHECom, "acme", false},
		{"Acme.GHE.com", GHECom, "acme", false},
		{"github.example.com", GHES, "", false},
		{"localhost", GHES, "", false},
		{"10.1.2.3", GHES, "", false},
		{"ghe.com.example.com", GHES, "", false},
		{"notghe.com", GHES, "", false},
		{"", "", "", true},
		{"ghe.com", "", "", true},
		{".ghe.com", "", "", true},
		{"a..ghe.com", "", "", true},
		{"api.acme.ghe.com", "", "", true},
		{"api.github.com", "", "", true},
		{"uploads.github.com", "", "", true},
		{"api.individual.githubcopilot.com", "", "", true},
		{"githubcopilot.com", "", "", true},
		{"objects.githubusercontent.com", "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			k, tn, err := Classify(tc.host)
			if (err != nil) != tc.err || k != tc.kind || tn != tc.tenant {
				t.Errorf("Classify(%q) = %q, %q, %v; want %q, %q, error %v", tc.host, k, tn, err, tc.kind, tc.tenant, tc.err)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes: the cut lands inside a rune unless it is careful
	q := Quote(long)
	if strings.Contains(q, `\x`) {
		t.Errorf("Quote cut a rune: %s", q)
	}
	if q := Quote("a\nb::x"); strings.ContainsAny(q, "\n") {
		t.Errorf("Quote kept a line break: %s", q)
	}
}

func TestHostOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://API.Acme.ghe.com/x": "api.acme.ghe.com",
		"https://x.example.com.:8/":  "x.example.com",
		"%%":                         "",
		"":                           "",
	} {
		if got := HostOf(in); got != want {
			t.Errorf("HostOf(%q) = %q, want %q", in, got, want)
		}
	}
}
