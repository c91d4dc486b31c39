package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/faketenant"
)

const diagToken = "github_pat_11DIAGNOSE0cliTESTsecret_abcdefghijklmnopqrstuvwxyz0123"

// diagTenant starts the simulated acme tenant with b and returns the flags that point diagnose
// at it (its address as the REST and Copilot API, its CA trusted).
func diagTenant(t *testing.T, b func(*faketenant.Behavior)) (*faketenant.Tenant, []string) {
	t.Helper()
	ft, ca := startTenant(t, faketenant.Options{Token: diagToken}, b)
	return ft, []string{"--server-url", "https://acme.ghe.com", "--api-url", ft.URL(), "--copilot-api-target", ft.URL(), "--ca-file", ca}
}

// stepFiles makes an empty GITHUB_OUTPUT and GITHUB_STEP_SUMMARY file for an in-process step.
func stepFiles(t *testing.T) (outFile, sumFile string) {
	t.Helper()
	dir := t.TempDir()
	outFile, sumFile = filepath.Join(dir, "output"), filepath.Join(dir, "summary")
	for _, f := range []string{outFile, sumFile} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return outFile, sumFile
}

// startTenant starts a simulated tenant with behaviour b, closed when the test ends, and writes
// its CA to a file whose path it returns.
func startTenant(t *testing.T, opts faketenant.Options, b func(*faketenant.Behavior)) (*faketenant.Tenant, string) {
	t.Helper()
	ft, err := faketenant.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ft.Close)
	if b != nil {
		ft.Set(b)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := ft.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	return ft, ca
}

func diagRun(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCommand(t, "diagnose", env, args...)
}

// runCommand runs one subcommand in-process with env as its whole environment.
func runCommand(t *testing.T, name string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{name}, args...), MapEnv(env), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDiagnoseJSONSeed(t *testing.T) {
	t.Parallel()
	_, flags := diagTenant(t, func(b *faketenant.Behavior) {
		b.RequireScheme = "token"
		b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by personal access token"
	})
	code, out, errs := diagRun(t, map[string]string{"COPILOT_GITHUB_TOKEN": "Bearer " + diagToken}, append(flags, "--format", "json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		Verdict  string `json:"verdict"`
		Platform string `json:"platform"`
		Probes   []struct {
			Name, Verdict, Scheme string
			Status                int
		} `json:"probes"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if rep.Verdict != "ready with warnings" || rep.Platform != "ghe.com" || len(rep.Probes) != 5 {
		t.Fatalf("report %+v", rep)
	}
	if m := rep.Probes[3]; m.Name != "models" || m.Verdict != "warn" || m.Scheme != "token" || m.Status != 200 {
		t.Errorf("models probe %+v", m)
	}
	if strings.Contains(out+errs, diagToken) {
		t.Error("the token reached stdout or stderr")
	}
}

// In a step with diagnose: strict, a tenant without a seat fails the step, and the summary,
// the verdict output and the annotations say why; the token is only in the add-mask commands.
func TestDiagnoseStepStrict(t *testing.T) {
	t.Parallel()
	_, flags := diagTenant(t, func(b *faketenant.Behavior) {
		b.UserStatus, b.ModelsStatus = http.StatusNotFound, http.StatusForbidden
	})
	outFile, sumFile := stepFiles(t)
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": outFile, "GITHUB_STEP_SUMMARY": sumFile,
		"INPUT_GITHUB_TOKEN": diagToken, "INPUT_DIAGNOSE": "strict",
	}
	code, out, errs := diagRun(t, env, append(flags, "--format", "none")...)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (strict and will not work): %s", code, errs)
	}
	sum, _ := os.ReadFile(sumFile)
	if !strings.Contains(string(sum), "## ❌ copilot-route: will not work") || !strings.Contains(string(sum), "assign you a Copilot seat") {
		t.Errorf("summary:\n%s", sum)
	}
	outputs, _ := os.ReadFile(outFile)
	entries, err := actions.ParseFile(outputs)
	if err != nil || len(entries) != 1 || entries[0].Name != "verdict" || entries[0].Value != "will not work" {
		t.Errorf("outputs %q (%v)", outputs, err)
	}
	if !strings.Contains(out, "::error title=copilot-route%3A Copilot seat and endpoints::") {
		t.Errorf("no error annotation for the seat:\n%s", out)
	}
	var masked bool
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "::add-mask::") {
			masked = true
			continue
		}
		if strings.Contains(line, diagToken) {
			t.Errorf("token in stdout line %q", line)
		}
	}
	if !masked {
		t.Error("the token was not masked")
	}
	if strings.Contains(string(sum)+string(outputs)+errs, diagToken) {
		t.Error("the token reached the summary, the outputs or stderr")
	}

	// Not strict: the same findings, but the step goes on.
	env["INPUT_DIAGNOSE"] = "true"
	if code, _, errs := diagRun(t, env, append(flags, "--format", "none")...); code != 0 {
		t.Errorf("not strict: exit %d: %s", code, errs)
	}
}

// A classic PAT is refused before any request carries it.
func TestDiagnoseClassicPATSendsNothing(t *testing.T) {
	t.Parallel()
	ft, flags := diagTenant(t, nil)
	code, out, _ := diagRun(t, map[string]string{"COPILOT_GITHUB_TOKEN": "ghp_CLASSICtokenDIAGNOSE0123456789abcdef"}, flags...)
	if code != 0 || !strings.Contains(out, "WILL NOT WORK") || !strings.Contains(out, "classic PAT") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	for _, r := range ft.Requests() {
		if r.Auth != "none" {
			t.Errorf("%s carried a credential", r.Path)
		}
	}
}

// In a step, a check that cannot run (here: an unreadable CA file) is a warning unless strict.
func TestDiagnoseStepBadInputNotStrict(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "output")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": out, "COPILOT_GITHUB_TOKEN": diagToken,
		"INPUT_CA_FILE": filepath.Join(dir, "missing.pem")}
	code, stdout, _ := diagRun(t, env)
	if code != 0 || !strings.Contains(stdout, "::warning title=copilot-route%3A bad input ca-file::") {
		t.Errorf("not strict: exit %d, stdout:\n%s", code, stdout)
	}
	env["INPUT_DIAGNOSE"] = "strict"
	code, stdout, _ = diagRun(t, env)
	if code != 1 || !strings.Contains(stdout, "::error title=copilot-route%3A bad input ca-file::") {
		t.Errorf("strict: exit %d, stdout:\n%s", code, stdout)
	}
}

func TestDiagnoseBadUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"format", nil, []string{"--format", "yaml"}, 2, "unknown --format"},
		{"argument", nil, []string{"extra"}, 2, "unexpected argument"},
		{"timeout", nil, []string{"--timeout", "0s"}, 2, "--timeout"},
		{"auth scheme", map[string]string{"INPUT_AUTH_SCHEME": "basic"}, nil, 1, "auth-scheme"},
		{"diagnose mode", map[string]string{"INPUT_DIAGNOSE": "maybe"}, nil, 1, "use true, false or strict"},
		{"server", nil, []string{"--server-url", "ghe.com"}, 1, "bad input server-url"},
		{"ca file", nil, []string{"--ca-file", "/nonexistent/ca.pem"}, 1, "ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"COPILOT_GITHUB_TOKEN": diagToken}
			for k, v := range tc.env {
				env[k] = v
			}
			code, out, errs := diagRun(t, env, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs, tc.code, tc.want)
			}
			if strings.Contains(out+errs, diagToken) {
				t.Error("token leaked")
			}
		})
	}
}
