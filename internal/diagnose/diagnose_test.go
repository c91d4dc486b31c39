package diagnose_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/diagnose/diagnosetest"
)

// want is what a scenario must produce: the overall verdict, each probe's verdict (in the order
// meta, user, exchange, models, token), and strings some probe's meaning or fix must hold.
type want struct {
	overall  diagnose.Overall
	verdicts string // one letter per probe: o ok, w warn, f fail, s skip
	contains map[string][]string
	notes    int
}

var wants = map[string]want{
	"github-healthy": {overall: diagnose.Ready, verdicts: "ooooo", contains: map[string][]string{
		"user":   {"plan enterprise", "api.business.githubcopilot.com"},
		"models": {"models listed with `Bearer`"},
	}},
	"github-advertised-unlisted": {overall: diagnose.ReadyWithWarnings, verdicts: "oWooo", contains: map[string][]string{
		"user":   {"advertises api.eu.githubcopilot.com but detect derived api.githubcopilot.com", "Add api.eu.githubcopilot.com to extra-domains"},
		"models": {"models listed"},
	}},
	"ghe-healthy": {overall: diagnose.Ready, verdicts: "ooooo", contains: map[string][]string{
		"user": {"advertises the Copilot API detect derived (copilot-api.acme.ghe.com)"},
	}},
	"ghes-healthy": {overall: diagnose.Ready, verdicts: "ooooo"},
	"ghe-seed": {overall: diagnose.ReadyWithWarnings, verdicts: "oooWo", contains: map[string][]string{
		"exchange": {"403", "Resource not accessible by personal access token", "normal for fine-grained PATs on GHE.com", "the proxy does not need it"},
		"models":   {"400 with `Bearer`", "badly formatted", "models listed with `token`", "switches to `token` by itself", "auth-scheme: token"},
	}},
	"ghe-seed-forced-bearer": {overall: diagnose.WillNotWork, verdicts: "oooFo", contains: map[string][]string{
		"models": {"the proxy is set to send `Bearer`", "Set `auth-scheme: token`."},
	}},
	"ghe-no-seat": {overall: diagnose.WillNotWork, verdicts: "oFoFo", contains: map[string][]string{
		"user":   {"the token is @monalisa's on acme.ghe.com", "no Copilot seat", "assign you a Copilot seat"},
		"models": {"with `Bearer` and `token` alike, access denied by policy", "Copilot Requests"},
	}},
	// GET /user (go-github) tells a valid token without Copilot access from a token of another host.
	"ghe-token-without-copilot": {overall: diagnose.WillNotWork, verdicts: "oFWFo", contains: map[string][]string{
		"user": {"the token is @monalisa's on acme.ghe.com (GET /user accepts it)", "lacks Copilot access", "Copilot Requests"},
	}},
	"ghe-unreachable": {overall: diagnose.WillNotWork, verdicts: "FFWFo", contains: map[string][]string{
		"meta":   {"api.acme.ghe.com refused the connection", "unreachable from this runner"},
		"models": {"copilot-api.acme.ghe.com refused the connection"},
	}},
	"ghe-slow": {overall: diagnose.WillNotWork, verdicts: "oooFo", contains: map[string][]string{
		"models": {"no answer from copilot-api.acme.ghe.com within 2.5s", "allow copilot-api.acme.ghe.com:443"},
	}},
	"ghe-rate-limited": {overall: diagnose.ReadyWithWarnings, verdicts: "oooWo", contains: map[string][]string{
		"models": {"rate limited (429), retry after 7 s", "Wait and run again"},
	}},
	"ghe-outage": {overall: diagnose.WillNotWork, verdicts: "oooFo", contains: map[string][]string{
		"models": {"answered 503: it is failing right now", "githubstatus.com"},
	}},
	"ghe-classic-pat": {overall: diagnose.WillNotWork, verdicts: "osssF", contains: map[string][]string{
		"token": {"classic PAT", "fine-grained PAT", "copilot-requests: write"},
		"user":  {"not sent"},
	}},
	"ghe-no-token": {overall: diagnose.WillNotWork, verdicts: "osssF", contains: map[string][]string{
		"token": {"no token", "github-token"},
	}},
	"ghe-installation-token": {overall: diagnose.Ready, verdicts: "ooooo", contains: map[string][]string{
		"user":     {"installation tokens cannot read this (normal)"},
		"exchange": {"normal for the Actions token"},
		"token":    {"copilot-requests: write"},
	}},
	"ghe-advertised-elsewhere": {overall: diagnose.ReadyWithWarnings, verdicts: "oWooo", contains: map[string][]string{
		"user": {"advertises copilot-api-eu.acme.ghe.com but detect derived copilot-api.acme.ghe.com", "allowlist entries cover", "`https://copilot-api-eu.acme.ghe.com`"},
	}},
	"ghe-advertised-unreachable": {overall: diagnose.ReadyWithWarnings, verdicts: "oWooo", contains: map[string][]string{
		"models": {"the advertised copilot-api-eu.acme.ghe.com does not connect, so the proxy keeps the derived API: ", "models listed with `Bearer`"},
		"user":   {"does not connect from this runner: the proxy keeps the derived copilot-api.acme.ghe.com", "allow it in the runner's egress rules"},
	}},
	"ghe-foreign-endpoint": {overall: diagnose.ReadyWithWarnings, verdicts: "oWooo", contains: map[string][]string{
		"user": {"fails validation", "not under the tenant", "uses copilot-api.acme.ghe.com"},
	}},
	"ghes-github-seat": {overall: diagnose.Ready, verdicts: "ooooo", notes: 0},
	"ghes-no-copilot-host": {overall: diagnose.WillNotWork, verdicts: "oFWFo", notes: 1, contains: map[string][]string{
		"user":   {"api.github.com does not know this token", "GET /user 401", "a GHE.com tenant or a GHES", "copilot-host: NAME.ghe.com", "Use a token issued by github.com"},
		"models": {"refused the token", "copilot-host: NAME.ghe.com"},
	}},
}

func letter(v diagnose.Verdict) string {
	switch v {
	case diagnose.OK:
		return "o"
	case diagnose.Warn:
		return "W"
	case diagnose.Fail:
		return "F"
	case diagnose.Skip:
		return "s"
	}
	return "?"
}

func TestScenarios(t *testing.T) {
	t.Parallel()
	for _, sc := range diagnosetest.All() {
		w, ok := wants[sc.Name]
		if !ok {
			t.Errorf("scenario %s has no expectation", sc.Name)
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			res := sc.Run(t)
			rep := res.Report
			got := ""
			for _, p := range rep.Probes {
				got += letter(p.Verdict)
			}
			// The table uses lower-case o/s and upper-case W/F so a diff is easy to read.
			if got != w.verdicts || rep.Verdict != w.overall {
				t.Errorf("verdicts %s (%s), want %s (%s)\n%s", got, rep.Verdict, w.verdicts, w.overall, dump(rep))
			}
			for name, subs := range w.contains {
				p, ok := rep.Probe(name)
				if !ok {
					t.Fatalf("no probe %s", name)
				}
				text := p.Meaning + " | " + p.Fix
				for _, s := range subs {
					if !strings.Contains(text, s) {
						t.Errorf("probe %s: %q lacks %q", name, text, s)
					}
				}
			}
			if len(rep.Notes) != w.notes {
				t.Errorf("notes %q, want %d", rep.Notes, w.notes)
			}
			for _, p := range rep.Probes {
				if p.Verdict != diagnose.OK && p.Verdict != diagnose.Skip && p.Fix == "" && p.Name != "exchange" {
					t.Errorf("probe %s is %s without a fix: %s", p.Name, p.Verdict, p.Meaning)
				}
			}
			assertNoSecret(t, dump(rep))
		})
	}
}

func dump(r diagnose.Report) string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

func assertNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, tok := range []string{diagnosetest.PATToken, diagnosetest.InstallationToken, diagnosetest.ClassicToken, diagnosetest.OtherToken} {
		if strings.Contains(s, tok) || strings.Contains(s, tok[len(tok)-16:]) {
			t.Errorf("a token leaked into the report:\n%s", s)
		}
	}
}

// A classic PAT must not leave the machine: only the public /meta is asked, without credentials.
func TestClassicPATSendsNoToken(t *testing.T) {
	t.Parallel()
	sc, _ := diagnosetest.ByName("ghe-classic-pat")
	res := sc.Run(t)
	reqs := res.World.Tenants["acme.ghe.com"].Requests()
	if len(reqs) != 1 || reqs[0].Path != "/meta" {
		t.Fatalf("requests %+v, want only /meta", reqs)
	}
	if a := reqs[0].Header.Get("Authorization"); a != "" {
		t.Errorf("/meta carried an Authorization header")
	}
}

// The seed tenant sees /models with Bearer (refused) and then with token, both carrying the
// integration id the Copilot API requires, and each probe goes to the tenant, never elsewhere.
func TestSeedRetriesModelsWithTokenScheme(t *testing.T) {
	t.Parallel()
	sc, _ := diagnosetest.ByName("ghe-seed")
	res := sc.Run(t)
	var schemes []string
	for _, r := range res.World.Tenants["acme.ghe.com"].Requests() {
		if r.Path != "/models" {
			continue
		}
		schemes = append(schemes, r.AuthScheme)
		if r.Header.Get("Copilot-Integration-Id") == "" {
			t.Errorf("/models without Copilot-Integration-Id")
		}
		if r.Host != "copilot-api.acme.ghe.com" {
			t.Errorf("/models went to host %q", r.Host)
		}
		if r.Auth != "real" {
			t.Errorf("/models carried auth %q", r.Auth)
		}
	}
	if strings.Join(schemes, ",") != "Bearer,token" {
		t.Errorf("/models schemes %v, want Bearer then token", schemes)
	}
	p, _ := res.Report.Probe(diagnose.ProbeModels)
	if p.Scheme != "token" || p.FirstTry != 400 || p.Status != 200 || p.Models < 2 {
		t.Errorf("models probe %+v", p)
	}
}

// With auth-scheme token the proxy sends token first, so the seed tenant is simply ready there.
func TestSeedWithTokenSchemeIsOK(t *testing.T) {
	t.Parallel()
	sc, _ := diagnosetest.ByName("ghe-seed")
	sc.AuthScheme = "token"
	res := sc.Run(t)
	p, _ := res.Report.Probe(diagnose.ProbeModels)
	if p.Verdict != diagnose.OK || p.Retried || res.Report.Verdict != diagnose.Ready {
		t.Errorf("models %+v, overall %s", p, res.Report.Verdict)
	}
}

// The advertised endpoint is where the models probe goes, as the proxy would.
func TestAdvertisedEndpointIsProbed(t *testing.T) {
	t.Parallel()
	sc, _ := diagnosetest.ByName("ghe-advertised-elsewhere")
	res := sc.Run(t)
	if res.Report.CopilotAPIURL != "https://copilot-api-eu.acme.ghe.com" {
		t.Errorf("probed %s", res.Report.CopilotAPIURL)
	}
	sc, _ = diagnosetest.ByName("ghe-foreign-endpoint")
	res = sc.Run(t)
	if res.Report.CopilotAPIURL != "https://copilot-api.acme.ghe.com" || res.Report.CopilotAPIFrom != "derived" {
		t.Errorf("a refused advertised endpoint was probed: %s (%s)", res.Report.CopilotAPIURL, res.Report.CopilotAPIFrom)
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	tok := diagnosetest.PATToken
	for _, in := range []string{tok, "Bearer " + tok, "token " + tok, "x" + tok + "y"} {
		got := diagnose.Scrub("say "+in, copilotToken(tok))
		if strings.Contains(got, tok) || !strings.Contains(got, "[REDACTED]") {
			t.Errorf("Scrub(%q) = %q", in, got)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata/diagnose")

// The JSON report (diagnose --format json) of every scenario, from a real run against the fake
// tenant, with latencies and request ids normalised.
func TestReportJSONGolden(t *testing.T) {
	t.Parallel()
	for _, sc := range diagnosetest.All() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			res := sc.Run(t)
			got := dump(diagnosetest.Normalize(res.Report)) + "\n"
			assertNoSecret(t, got)
			path := filepath.Join("..", "..", "testdata", "diagnose", sc.Name+".json")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (go test ./internal/diagnose -update creates it): %v", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from its golden file (go test ./internal/diagnose -update rewrites it):\n%s", path, got)
			}
		})
	}
}
