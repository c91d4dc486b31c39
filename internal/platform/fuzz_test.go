package platform

import (
	"errors"
	"strings"
	"testing"
)

// FuzzClassify: Classify never panics, and what it accepts is consistent: a tenant exactly for
// ghe.com, a one-label tenant, and never a github.com or Copilot service host as GHES.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"github.com", "www.github.com", "acme.ghe.com", "ACME.GHE.COM.", "ghe.com", ".ghe.com",
		"a.b.ghe.com", "github.example.com", "api.github.com", "gist.github.com", "api.githubcopilot.com",
		"raw.githubusercontent.com", "10.0.0.1", "::1", "", ".", "..", "ghe.com.", "x.ghe.com.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		kind, tenant, err := Classify(host)
		if err != nil {
			if kind != "" || tenant != "" {
				t.Fatalf("Classify(%q) errored but returned %q %q", host, kind, tenant)
			}
			return
		}
		h := strings.TrimSuffix(strings.ToLower(host), ".")
		switch kind {
		case GHECom:
			if tenant == "" || strings.Contains(tenant, ".") || h != tenant+".ghe.com" {
				t.Fatalf("Classify(%q) = ghe.com tenant %q", host, tenant)
			}
		case GitHubCom, GHES:
			if tenant != "" {
				t.Fatalf("Classify(%q) = %s with tenant %q", host, kind, tenant)
			}
		default:
			t.Fatalf("Classify(%q) = unknown kind %q", host, kind)
		}
		under := func(d string) bool { return h == d || strings.HasSuffix(h, "."+d) }
		if kind == GHES && (under("ghe.com") || under("github.com") || under("githubcopilot.com") || under("githubusercontent.com")) {
			t.Fatalf("Classify(%q) = ghes for a GitHub-owned name", host)
		}
	})
}

// FuzzDetect: Detect never panics; a failure is always an *InputError with a one-line message;
// a success satisfies checkInvariants (no trailing slashes, a tenant never on public hosts, …).
func FuzzDetect(f *testing.F) {
	seeds := [][5]string{
		{"https://github.com", "", "", "", ""},
		{"https://acme.ghe.com/x/", "", "", "", ""},
		{"acme.ghe.com", "https://api.acme.ghe.com", "", "", ""},
		{"https://github.internal:8443", "", "acme.ghe.com", "", "auto"},
		{"http://ghes.corp:80", "https://ghes.corp/api/v3", "github.com", "https://127.0.0.1:9/x", "ghes"},
		{"https://acme.test", "", "", "", "ghe.com"},
		{"https://ghe.com", "", "", "", ""},
		{"https://u:p@x", "ftp://x", "ghe.com", "http://x", "gitlab"},
		{"https://[::1]:8443", "", "", "", ""},
		{"https://%41cme.ghe.com", "", "", "", ""},
		{"https://acme.ghe.com.", "", "", "", "GHE.COM"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, server, api, copilotHost, target, plat string) {
		in := Input{ServerURL: server, APIURL: api, CopilotHost: copilotHost, CopilotAPITarget: target, Platform: plat}
		ep, err := Detect(in)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Detect(%+v): error %T is not an *InputError: %v", in, err, err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("Detect(%+v): multi-line error %q", in, err.Error())
			}
			return
		}
		checkInvariants(t, in, ep)
		// Detect is stable: feeding its own result back gives the same endpoints.
		again, err := Detect(Input{ServerURL: ep.ServerURL, APIURL: ep.APIURL, CopilotHost: copilotHost, CopilotAPITarget: target, Platform: string(ep.Platform)})
		if err != nil {
			t.Fatalf("Detect of its own result %q failed: %v", ep.ServerURL, err)
		}
		if again.ServerURL != ep.ServerURL || again.APIURL != ep.APIURL || again.CopilotAPIURL != ep.CopilotAPIURL || again.GHHost != ep.GHHost {
			t.Fatalf("not stable:\n%+v\n%+v", ep, again)
		}
	})
}
