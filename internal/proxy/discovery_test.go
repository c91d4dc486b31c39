package proxy

import (
	"net/http"
	"testing"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Discovery: /copilot_internal/user is asked once at start when the token can; a validated,
// reachable endpoints.api replaces the derived Copilot API; anything else falls back to the
// derived host. The fake poses as acme.ghe.com and every tenant name used is mapped to it, so
// "derived" and "discovered" differ only by the Host the fake sees.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		token      string
		advertised string
		userStatus int
		target     bool // copilot-api-target given
		state      string
		host       string // Host of /models at the fake
		lookups    int    // /copilot_internal/user calls at start
	}{
		{name: "valid endpoint is used", token: realToken, advertised: "https://copilot-api-eu.acme.ghe.com",
			state: "used", host: "copilot-api-eu.acme.ghe.com", lookups: 1},
		{name: "valid endpoint with trailing slash and :443", token: realToken, advertised: "https://copilot-api-eu.acme.ghe.com:443/",
			state: "used", host: "copilot-api-eu.acme.ghe.com", lookups: 1},
		{name: "host outside the tenant", token: realToken, advertised: "https://api.githubcopilot.com",
			state: "rejected", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "other port", token: realToken, advertised: "https://copilot-api-eu.acme.ghe.com:8443",
			state: "rejected", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "plain http", token: realToken, advertised: "http://copilot-api-eu.acme.ghe.com",
			state: "rejected", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "userinfo", token: realToken, advertised: "https://user:pw@copilot-api-eu.acme.ghe.com",
			state: "rejected", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "IP literal", token: realToken, advertised: "https://127.0.0.1",
			state: "rejected", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "name that does not resolve", token: realToken, advertised: "https://nowhere.acme.ghe.com",
			state: "rejected", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "look-up fails", token: realToken, userStatus: http.StatusInternalServerError,
			state: "failed", host: "copilot-api.acme.ghe.com", lookups: 1},
		{name: "ghs_ token skips it", token: "ghs_installationTokenSkipsDiscovery000001", advertised: "https://copilot-api-eu.acme.ghe.com",
			state: "skipped", host: "copilot-api.acme.ghe.com", lookups: 0},
		{name: "explicit target wins", token: realToken, advertised: "https://copilot-api-eu.acme.ghe.com", target: true,
			state: "skipped", host: "copilot-api.acme.ghe.com", lookups: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, "")
			ft.Set(func(b *faketenant.Behavior) { b.AdvertisedAPI, b.UserStatus = tc.advertised, tc.userStatus })
			in := platform.Input{ServerURL: "https://acme.ghe.com"}
			if tc.target {
				in.CopilotAPITarget = "copilot-api.acme.ghe.com"
			}
			h := setup(t, ft, in, func(c *Config) {
				c.Token = copilotToken(tc.token)
				c.Resolve = map[string]string{}
				for _, n := range []string{"api.acme.ghe.com", "copilot-api.acme.ghe.com", "copilot-api-eu.acme.ghe.com"} {
					c.Resolve[n+":443"] = hostPort(ft)
				}
			})
			if n := len(requestsTo(ft, "/copilot_internal/user")); n != tc.lookups {
				t.Errorf("/copilot_internal/user asked %d times at start, want %d", n, tc.lookups)
			}
			if d := h.p.Stats().Discovery; d.State != tc.state || (tc.state != "used" && tc.state != "skipped" && d.Reason == "") {
				t.Errorf("discovery = %+v, want state %s with a reason", d, tc.state)
			}
			ft.ResetRequests()
			if status, _, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil); status != 200 {
				t.Fatalf("/models = %d %s", status, b)
			}
			if rs := requestsTo(ft, "/models"); len(rs) != 1 || rs[0].Host != tc.host {
				t.Errorf("/models went to %+v, want host %s", hosts(rs), tc.host)
			}
		})
	}
}

func hosts(rs []faketenant.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Host)
	}
	return out
}
