package diagnose_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/diagnose/diagnosetest"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// A hostile or buggy server that echoes the Authorization header back in every place a probe
// reads (message, request id, Location, Retry-After) must not get the token into the report.
func TestEchoedTokenIsScrubbed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		w.Header().Set("X-GitHub-Request-Id", auth)
		w.Header().Set("Location", "https://evil.example/?t="+auth)
		w.Header().Set("Retry-After", auth)
		status := map[string]int{"/meta": 302, "/copilot_internal/user": 401, "/copilot_internal/v2/token": 400, "/models": 429}[r.URL.Path]
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"message": "you sent " + auth + " | <b>`x`</b>\n::error::injected"})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short at Close are expected
	srv.StartTLS()
	defer srv.Close()
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com", APIURL: srv.URL, CopilotAPITarget: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	client, err := diagnose.NewClient(diagnose.ClientConfig{ExtraCAPEM: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	rep := diagnose.Run(context.Background(), diagnose.Config{Endpoints: ep, Token: copilotToken(diagnosetest.PATToken), Client: client})
	out := dump(rep)
	assertNoSecret(t, out)
	if !strings.Contains(out, "[REDACTED]") {
		t.Errorf("the echoed token never reached the report, so this test proves nothing:\n%s", out)
	}
	for _, p := range rep.Probes {
		for _, field := range []string{p.Meaning, p.Fix, p.RequestID, p.Error} {
			if strings.ContainsAny(field, "\n\r|<>") {
				t.Errorf("probe %s carries markup or a line break: %q", p.Name, field)
			}
		}
	}
	if p, _ := rep.Probe(diagnose.ProbeMeta); p.Verdict != diagnose.Fail || !strings.Contains(p.Meaning, "redirects") {
		t.Errorf("a redirecting /meta: %+v", p)
	}
}

// A host that refuses Bearer with a plain 401 (not "badly formatted") but accepts token: the
// proxy in auto mode would not switch, so the probe must say it fails and not promise a switch.
func TestOtherRefusalIsNotASwitch(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/models" && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"message":"Bad credentials"}`)
			return
		}
		_, _ = io.WriteString(w, `{"data":[{"id":"a"},{"id":"b"}]}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com", APIURL: srv.URL, CopilotAPITarget: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	client, err := diagnose.NewClient(diagnose.ClientConfig{ExtraCAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})})
	if err != nil {
		t.Fatal(err)
	}
	rep := diagnose.Run(context.Background(), diagnose.Config{Endpoints: ep, Token: copilotToken(diagnosetest.PATToken), Client: client})
	p, _ := rep.Probe(diagnose.ProbeModels)
	if p.Verdict != diagnose.Fail || !strings.Contains(p.Meaning, "so it keeps `Bearer`") || p.Fix != "Set `auth-scheme: token`." {
		t.Errorf("models %+v", p)
	}
}
