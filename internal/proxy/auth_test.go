package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// With --auth-scheme auto, a "badly formatted" reply to Bearer is retried once with "token"
// before the client sees anything (body included), and the host keeps "token" afterwards.
func TestSchemeRetryAndMemory(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	ft.Set(func(b *faketenant.Behavior) { b.RequireScheme = "token" })
	h := setup(t, ft, platform.Input{}, nil)
	ft.ResetRequests()

	body := `{"model":"gpt-4.1","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	status, _, b := h.do(t, http.MethodPost, "/chat/completions", h.bearer(), body, nil)
	if status != http.StatusOK {
		t.Fatalf("first request = %d %s, want 200 after the retry", status, b)
	}
	got := requestsTo(ft, "/chat/completions")
	if len(got) != 2 || got[0].AuthScheme != "Bearer" || got[1].AuthScheme != "token" {
		t.Fatalf("fake saw %d requests with schemes %v, want Bearer then token", len(got), schemes(got))
	}
	if got[1].BodyBytes != int64(len(body)) || got[1].Auth != "real" {
		t.Errorf("retry carried %d body bytes (%s credential), want the whole %d-byte body and the real token", got[1].BodyBytes, got[1].Auth, len(body))
	}
	ft.ResetRequests()
	for _, path := range []string{"/models", "/chat/completions"} {
		method, bd := http.MethodGet, ""
		if path != "/models" {
			method, bd = http.MethodPost, body
		}
		if status, _, b := h.do(t, method, path, h.bearer(), bd, nil); status != http.StatusOK {
			t.Fatalf("%s after the switch = %d %s", path, status, b)
		}
	}
	if got := ft.Requests(); len(got) != 2 || got[0].AuthScheme != "token" || got[1].AuthScheme != "token" {
		t.Fatalf("after the switch the fake saw %v with schemes %v, want one token request each", paths(ft), schemes(got))
	}
	waitFor(t, "the retried request logged", func() bool { return strings.Contains(string(h.log.Bytes()), `"retry":true`) })
	st := h.p.Stats()
	if len(st.SchemeSwitches) != 1 || st.SchemeSwitches[0].From != "Bearer" || st.SchemeSwitches[0].To != "token" {
		t.Errorf("scheme switches = %+v, want one Bearer→token", st.SchemeSwitches)
	}
	if st.Upstreams[0].Scheme != "token" {
		t.Errorf("copilot-api scheme = %s, want token", st.Upstreams[0].Scheme)
	}
}

// A forced scheme never retries: the client sees the upstream's 400.
func TestSchemeForced(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	ft.Set(func(b *faketenant.Behavior) { b.RequireScheme = "token" })
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.AuthScheme = SchemeBearer })
	ft.ResetRequests()
	status, _, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
	if status != http.StatusBadRequest || !strings.Contains(string(b), "badly formatted") {
		t.Errorf("forced bearer: %d %s, want the upstream's 400", status, b)
	}
	if n := len(ft.Requests()); n != 1 {
		t.Errorf("forced bearer: fake saw %d requests, want 1 (no retry)", n)
	}

	ft2 := startTenant(t, realToken)
	ft2.Set(func(b *faketenant.Behavior) { b.RequireScheme = "token" })
	h2 := setup(t, ft2, platform.Input{}, func(c *Config) { c.AuthScheme = SchemeToken })
	ft2.ResetRequests()
	if status, _, b := h2.do(t, http.MethodGet, "/models", h2.bearer(), "", nil); status != 200 {
		t.Errorf("forced token: %d %s", status, b)
	}
	if got := ft2.Requests(); len(got) != 1 || got[0].AuthScheme != "token" {
		t.Errorf("forced token: fake saw schemes %v, want one token request", schemes(got))
	}
}

func schemes(rs []faketenant.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.AuthScheme)
	}
	return out
}

// The exchange shim answers clients itself. When the platform grants a Copilot token, requests
// made with the shim's token carry it upstream; when it refuses (a fine-grained PAT on
// GHE.com), they carry the GitHub token. The client only ever holds a proxy-only value.
func TestExchangeShim(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		status     int
		message    string
		state      string
		upstreamAs string // the fake's Request.Auth for /models made with the shim token
	}{
		{"platform grants", 0, "", "ok", "copilot"},
		{"platform refuses", http.StatusForbidden, "Resource not accessible by personal access token", "refused", "real"},
		{"no such endpoint", http.StatusNotFound, "Not Found", "refused", "real"},
		{"platform fails", http.StatusInternalServerError, "boom", "error", "real"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			ft.Set(func(b *faketenant.Behavior) { b.ExchangeStatus, b.ExchangeMessage = tc.status, tc.message })
			h := setup(t, ft, platform.Input{}, nil)
			ft.ResetRequests()
			var shim string
			for i, method := range []string{http.MethodGet, http.MethodPost, http.MethodGet} {
				status, hdr, b := h.do(t, method, "/copilot_internal/v2/token", h.bearer(), "", nil)
				scanSecrets(t, "exchange reply", append(b, []byte(headerText(hdr))...), realToken)
				if status != http.StatusOK {
					t.Fatalf("exchange %d = %d %s, want 200", i, status, b)
				}
				var r struct {
					Token     string            `json:"token"`
					ExpiresAt int64             `json:"expires_at"`
					RefreshIn int64             `json:"refresh_in"`
					Endpoints map[string]string `json:"endpoints"`
				}
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				if r.Token == "" || r.Token == h.client || r.ExpiresAt == 0 || r.RefreshIn == 0 || r.Endpoints["api"] != h.url {
					t.Fatalf("exchange reply = %s, want a proxy-only token and endpoints.api %s", b, h.url)
				}
				if shim != "" && r.Token != shim {
					t.Errorf("the shim token changed between calls")
				}
				shim = r.Token
			}
			// The platform is asked at most once while its answer holds (refusals stick; 5xx is retried).
			n := len(requestsTo(ft, "/copilot_internal/v2/token"))
			if wantMax := 1; tc.state != "error" && n != wantMax {
				t.Errorf("the platform's exchange was called %d times, want %d", n, wantMax)
			}
			for _, auth := range []string{"Bearer " + shim, "token " + shim} {
				if status, _, b := h.do(t, http.MethodGet, "/models", auth, "", nil); status != 200 {
					t.Fatalf("/models with the shim token = %d %s", status, b)
				}
			}
			for _, r := range requestsTo(ft, "/models") {
				if r.Auth != tc.upstreamAs {
					t.Errorf("/models with the shim token reached the fake with a %q credential, want %q", r.Auth, tc.upstreamAs)
				}
			}
			// REST look-ups always carry the GitHub token.
			h.do(t, http.MethodGet, "/copilot_internal/user", "Bearer "+shim, "", nil)
			if rs := requestsTo(ft, "/copilot_internal/user"); len(rs) != 1 || rs[0].Auth != "real" {
				t.Errorf("/copilot_internal/user with the shim token: %+v, want the real token", rs)
			}
			ex := h.p.Stats().Exchange
			if ex.State != tc.state || ex.Requests != 3 || (tc.message != "" && ex.Message != tc.message) {
				t.Errorf("exchange stats = %+v, want state %s, 3 requests, message %q", ex, tc.state, tc.message)
			}
		})
	}
}

func headerText(h http.Header) string {
	var sb strings.Builder
	for k, vs := range h {
		sb.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	return sb.String()
}

// The exchange reply's endpoints.api is the address the client used (an agent container reaches
// the proxy as host.docker.internal), never an upstream.
func TestExchangeNamesTheProxyAsTheClientReachedIt(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	addr := strings.TrimPrefix(h.url, "http://")
	_, port, _ := strings.Cut(addr, ":")
	for host, want := range map[string]string{
		"host.docker.internal:" + port: "http://host.docker.internal:" + port,
		"evil/path@x":                  h.url, // not a host: the proxy's own URL
	} {
		status, body := rawRequest(t, addr, "GET /copilot_internal/v2/token HTTP/1.1\r\nHost: "+host+
			"\r\nAuthorization: Bearer "+h.client+"\r\nConnection: close\r\n\r\n")
		if host == "evil/path@x" && status == http.StatusBadRequest {
			continue // the HTTP server itself refused the malformed Host: fine too
		}
		var r struct {
			Endpoints map[string]string `json:"endpoints"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || status != 200 || r.Endpoints["api"] != want {
			t.Errorf("Host %q: %d %s, want endpoints.api %s", host, status, body, want)
		}
		scanSecrets(t, "exchange reply", []byte(body), realToken)
	}
}

// An upstream that echoes the Authorization header back (a debugging gateway) does not hand the
// real token to the client: reply headers and error bodies are scrubbed.
func TestEchoedCredentialScrubbed(t *testing.T) {
	t.Parallel()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		w.Header().Set("X-Echo", "you sent "+auth)
		w.Header().Set("Content-Type", "application/json")
		status := http.StatusOK
		if r.URL.Path == "/models" {
			status = http.StatusUnauthorized
		}
		w.WriteHeader(status)
		if status >= 400 { // success bodies are not scanned (see scrub): this echo stays in errors
			fmt.Fprintf(w, `{"message":"Bad credentials: %s","documentation_url":"https://docs.github.com/rest"}`, auth)
		}
	}))
	defer echo.Close()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, func(c *Config) {
		c.Endpoints = platform.Endpoints{CopilotAPIURL: echo.URL, CopilotRESTAPIURL: echo.URL}
		c.AuthScheme = SchemeBearer
	})
	// h.do fails the test when a reply carries the real token anywhere.
	status, hdr, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
	if status != http.StatusUnauthorized || !strings.Contains(string(b), "Bearer "+redactedText) ||
		!strings.Contains(hdr.Get("X-Echo"), redactedText) {
		t.Errorf("401 reply %d %q (X-Echo %q), want the echo with the token redacted", status, b, hdr.Get("X-Echo"))
	}
	var m map[string]string
	decodeJSON(t, b, &m) // Content-Length was fixed after the rewrite
	status, hdr, _ = h.do(t, http.MethodGet, "/agents/swe/internal/memory/v0/enabled", h.bearer(), "", nil)
	if status != 200 || !strings.Contains(hdr.Get("X-Echo"), redactedText) {
		t.Errorf("200 reply header X-Echo %q, want the token redacted", hdr.Get("X-Echo"))
	}
}
