package copilot

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzValidateEndpoint: whatever /copilot_internal/user advertises, an accepted endpoint is an
// https origin on the default port, with a lower-case DNS name (no IP literal, userinfo, query or
// fragment) under githubcopilot.com, or under the tenant when there is one; and it validates
// again to itself.
func FuzzValidateEndpoint(f *testing.F) {
	for _, s := range [][2]string{
		{"https://api.githubcopilot.com", ""},
		{"https://api.enterprise.githubcopilot.com/", ""},
		{"https://copilot-api.acme.ghe.com", "acme.ghe.com"},
		{"https://copilot-api.acme.ghe.com:443/x/", "ACME.ghe.com"},
		{"https://api.githubcopilot.com", "acme.ghe.com"},
		{"https://evil.com#.githubcopilot.com", ""},
		{"https://evil.com?.githubcopilot.com", ""},
		{"https://api.githubcopilot.com@evil.com", ""},
		{"https://evil.com\\.githubcopilot.com", ""},
		{"https://127.0.0.1", ""},
		{"https://[::1]:443", ""},
		{"http://api.githubcopilot.com", ""},
		{"https://api.githubcopilot.com:8443", ""},
		{"https://api.githubcopilot.com./", ""},
		{"https://API.GithubCopilot.com/%2e%2e/", ""},
		{"//api.githubcopilot.com", ""},
		{" https://api.githubcopilot.com\n", ""},
		{"https://xn--80ak6aa92e.githubcopilot.com", ""},
		{"https://a%2eb.githubcopilot.com", ""},
		{"https://copilot-api.acme.ghe.com.evil.com", "acme.ghe.com"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, tenant string) {
		got, err := ValidateEndpoint(raw, tenant)
		if err != nil {
			if got != "" {
				t.Fatalf("ValidateEndpoint(%q, %q) = %q with error %v", raw, tenant, got, err)
			}
			return
		}
		u, perr := url.Parse(got)
		if perr != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" ||
			u.Opaque != "" || strings.HasSuffix(got, "/") || u.ForceQuery {
			t.Fatalf("ValidateEndpoint(%q, %q) = %q: not a bare https origin (%v)", raw, tenant, got, perr)
		}
		host := u.Host
		if host != strings.ToLower(host) || net.ParseIP(host) != nil || host == "" || strings.HasSuffix(host, ".") {
			t.Fatalf("ValidateEndpoint(%q, %q) = %q: host %q", raw, tenant, got, host)
		}
		for _, c := range []byte(host) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				t.Fatalf("ValidateEndpoint(%q, %q) = %q: host holds %q", raw, tenant, got, c)
			}
		}
		for _, c := range []byte(got) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("ValidateEndpoint(%q, %q) = %q holds byte %#x", raw, tenant, got, c)
			}
		}
		if tenant != "" {
			if !strings.HasSuffix(host, "."+strings.ToLower(tenant)) {
				t.Fatalf("ValidateEndpoint(%q, %q) = %q: not under the tenant", raw, tenant, got)
			}
		} else if !strings.HasSuffix(host, ".githubcopilot.com") {
			t.Fatalf("ValidateEndpoint(%q, %q) = %q: not under githubcopilot.com", raw, tenant, got)
		}
		if again, err := ValidateEndpoint(got, tenant); err != nil || again != got {
			t.Fatalf("ValidateEndpoint(%q, %q) = %q, but again = %q, %v", raw, tenant, got, again, err)
		}
	})
}

// FuzzParseExchangeReply: a token exchange reply never panics the parser; an accepted one has a
// usable token (non-empty, printable, no white space: it goes into an Authorization header) and
// a sane refresh time; an error never quotes the token.
func FuzzParseExchangeReply(f *testing.F) {
	for _, s := range []string{
		`{"token":"tid=abc;exp=1;sku=x","expires_at":1900000000,"refresh_in":1500,"endpoints":{"api":"https://api.githubcopilot.com"},"sku":"x"}`,
		`{"token":"","expires_at":1}`,
		`{"token":"Bearer  tid=1"}`,
		`{"token":" "}`,
		`{"token":"a\r\nX-Injected: 1"}`,
		`{"token":"t","refresh_in":-5}`,
		`{"token":"t","refresh_in":9223372036854775807}`,
		`{"token":"t","expires_at":-1}`,
		`{"token":7}`,
		`{"token":"t","endpoints":"x"}`,
		`[]`, `null`, ``, `{"token":"t"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseExchangeReply(body)
		var w struct {
			Token string `json:"token"`
		}
		_ = json.Unmarshal(body, &w)
		if err != nil {
			if !r.Token.IsZero() {
				t.Fatalf("error %v with a token", err)
			}
			if secret := strings.TrimSpace(w.Token); len(secret) >= 6 && strings.Contains(err.Error(), secret) {
				t.Fatalf("the error quotes the token: %v", err)
			}
			return
		}
		tok := r.Token.Reveal()
		if tok == "" {
			t.Fatalf("accepted %q with an empty token", body)
		}
		for _, c := range []byte(tok) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("accepted token %q holds byte %#x: not a valid Authorization value", tok, c)
			}
		}
		if r.RefreshIn < 0 || r.RefreshIn > 24*time.Hour {
			t.Fatalf("refresh_in %v out of range", r.RefreshIn)
		}
	})
}
