package diagnosetest

import (
	"net/http"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

func newToken(raw string) copilot.Token { return copilot.NewToken(raw) }

var (
	gheInput    = platform.Input{ServerURL: "https://acme.ghe.com"}
	gitHubInput = platform.Input{ServerURL: "https://github.com"}
)

// acme starts the acme.ghe.com tenant answering for its REST and Copilot API hosts, with b
// applied to its behaviour.
func acme(t testing.TB, w *World, token string, b func(*faketenant.Behavior), extra ...string) *faketenant.Tenant {
	ft := w.Tenant(t, "acme.ghe.com", token, append([]string{"api.acme.ghe.com", "copilot-api.acme.ghe.com"}, extra...)...)
	if b != nil {
		ft.Set(b)
	}
	return ft
}

// seed is the bug report this project started from: the tenant refuses the exchange for a
// fine-grained PAT and accepts only "Authorization: token" (Bearer → 400 on /models).
func seed(b *faketenant.Behavior) {
	b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by personal access token"
	b.RequireScheme = "token"
}

// All is every scenario, one per platform and failure mode.
func All() []Scenario {
	return []Scenario{
		{Name: "github-healthy", About: "github.com, a fine-grained PAT, a business seat",
			Input: gitHubInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				gh := w.Tenant(t, "github.com", PATToken, "api.github.com")
				gh.Set(func(b *faketenant.Behavior) { b.AdvertisedAPI = "https://api.business.githubcopilot.com" })
				w.Tenant(t, "githubcopilot.com", PATToken, "api.githubcopilot.com")
				w.Tenant(t, "business.githubcopilot.com", PATToken, "api.business.githubcopilot.com")
			}},
		{Name: "github-advertised-unlisted", About: "github.com advertising a Copilot API outside the plan hosts the allowlist has",
			Input: gitHubInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				gh := w.Tenant(t, "github.com", PATToken, "api.github.com")
				gh.Set(func(b *faketenant.Behavior) { b.AdvertisedAPI = "https://api.eu.githubcopilot.com" })
				w.Tenant(t, "eu.githubcopilot.com", PATToken, "api.eu.githubcopilot.com")
			}},
		{Name: "ghe-healthy", About: "a GHE.com tenant where everything works",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) { acme(t, w, PATToken, nil) }},
		{Name: "ghes-healthy", About: "GHES with Copilot licensed on the acme.ghe.com tenant (copilot-host set)",
			Input: platform.Input{ServerURL: "https://github.example.com", CopilotHost: "acme.ghe.com"}, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				w.Tenant(t, "github.example.com", PATToken, "github.example.com")
				acme(t, w, PATToken, nil)
			}},
		{Name: "ghe-seed", About: "the seed report: exchange 403 for a fine-grained PAT, /models 400 with Bearer but 200 with token",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) { acme(t, w, PATToken, seed) }},
		{Name: "ghe-seed-forced-bearer", About: "the seed tenant with the proxy forced to auth-scheme bearer",
			Input: gheInput, Token: PATToken, AuthScheme: "bearer",
			Setup: func(t testing.TB, w *World) { acme(t, w, PATToken, seed) }},
		{Name: "ghe-no-seat", About: "the token's user has no Copilot seat on the tenant",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) {
					b.UserStatus, b.ExchangeStatus, b.ModelsStatus = http.StatusNotFound, http.StatusNotFound, http.StatusForbidden
				})
			}},
		{Name: "ghe-token-without-copilot", About: "the token is valid on the tenant (GET /user) but Copilot refuses it: a PAT without the Copilot permission",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) {
					b.UserStatus, b.ExchangeStatus, b.ModelsStatus = http.StatusUnauthorized, http.StatusUnauthorized, http.StatusUnauthorized
				})
			}},
		{Name: "ghe-unreachable", About: "nothing answers for the tenant's hosts (a closed port)",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				closed := ClosedPort(t)
				w.Dial["api.acme.ghe.com"], w.Dial["copilot-api.acme.ghe.com"] = closed, closed
			}},
		{Name: "ghe-slow", About: "the Copilot API takes longer than the probe timeout to answer",
			Input: gheInput, Token: PATToken, Timeout: 2500 * time.Millisecond,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) { b.FirstByteDelay = 30 * time.Second })
			}},
		{Name: "ghe-rate-limited", About: "the Copilot API answers 429 with Retry-After",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) {
					b.Status, b.RetryAfter = map[string]int{"/models": http.StatusTooManyRequests}, "7"
				})
			}},
		{Name: "ghe-outage", About: "the Copilot API answers 503 (a GitHub-side outage)",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": http.StatusServiceUnavailable} })
			}},
		{Name: "ghe-classic-pat", About: "a classic PAT (ghp_): refused before any request",
			Input: gheInput, Token: ClassicToken,
			Setup: func(t testing.TB, w *World) { acme(t, w, ClassicToken, nil) }},
		{Name: "ghe-no-token", About: "no token at all",
			Input: gheInput, Token: "",
			Setup: func(t testing.TB, w *World) { acme(t, w, PATToken, nil) }},
		{Name: "ghe-installation-token", About: "the Actions GITHUB_TOKEN (ghs_) on a tenant: exchange 403 by integration",
			Input: gheInput, Token: InstallationToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, InstallationToken, func(b *faketenant.Behavior) {
					b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by integration"
					b.UserStatus = http.StatusForbidden
				})
			}},
		{Name: "ghe-advertised-elsewhere", About: "the tenant advertises a Copilot API other than the derived one",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) { b.AdvertisedAPI = "https://copilot-api-eu.acme.ghe.com" },
					"copilot-api-eu.acme.ghe.com")
			}},
		{Name: "ghe-advertised-unreachable", About: "the tenant advertises a Copilot API host that does not connect from the runner",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) { b.AdvertisedAPI = "https://copilot-api-eu.acme.ghe.com" })
				w.Dial["copilot-api-eu.acme.ghe.com"] = ClosedPort(t)
			}},
		{Name: "ghe-foreign-endpoint", About: "the tenant advertises a public githubcopilot.com host (refused: fail closed)",
			Input: gheInput, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				acme(t, w, PATToken, func(b *faketenant.Behavior) { b.AdvertisedAPI = "https://api.githubcopilot.com" })
			}},
		{Name: "ghes-github-seat", About: "GHES without copilot-host, and the seat is indeed on github.com: the assumption is confirmed",
			Input: platform.Input{ServerURL: "https://github.example.com"}, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				w.Tenant(t, "github.example.com", PATToken, "github.example.com")
				gh := w.Tenant(t, "github.com", PATToken, "api.github.com")
				gh.Set(func(b *faketenant.Behavior) { b.AdvertisedAPI = "https://api.githubcopilot.com" })
				w.Tenant(t, "githubcopilot.com", PATToken, "api.githubcopilot.com")
			}},
		{Name: "ghes-no-copilot-host", About: "GHES without copilot-host while the seat is on a tenant: github.com refuses the token",
			Input: platform.Input{ServerURL: "https://github.example.com"}, Token: PATToken,
			Setup: func(t testing.TB, w *World) {
				w.Tenant(t, "github.example.com", PATToken, "github.example.com")
				w.Tenant(t, "github.com", OtherToken, "api.github.com")
				w.Tenant(t, "githubcopilot.com", OtherToken, "api.githubcopilot.com")
			}},
	}
}

// ByName returns the named scenario.
func ByName(name string) (Scenario, bool) {
	for _, s := range All() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// KindOf is the token kind label a summary shows for a scenario's token.
func KindOf(raw string) copilot.TokenKind { return copilot.KindOf(copilot.Normalize(raw)) }
