package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/ghaw"
	"github.com/copilot-route/copilot-route/internal/ghaw/ghawtest"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// requestIDs are the fake tenant's request ids, which differ per run.
var requestIDs = regexp.MustCompile(`FAKE:[0-9]{4}:[0-9A-F]{6}`)

const lockToken = "github_pat_11LOCKCHECK0cliTESTsecret_abcdefghijklmnopqrstuvwxyz0123"

// The workflows the check-lock tests compile, once for the package: the frontmatter detect
// prints for a tenant and for GHES with a tenant's Copilot, a tenant workflow with gh-aw's
// engines-reference api-target, and a plain GHES one.
var (
	lockOnce  sync.Once
	lockFiles map[string]string
	lockDir   string
	lockRoot  string // removed by TestMain
)

// removeCompiledLocks removes what compiledLock wrote; TestMain calls it after the tests.
func removeCompiledLocks() {
	if lockRoot != "" {
		_ = os.RemoveAll(lockRoot)
	}
}

func compiledLock(t *testing.T, name string) string {
	t.Helper()
	ghawtest.Bin(t) // skips without the compiler
	lockOnce.Do(func() {
		frag := func(server, copilotHost string) string {
			ep, err := platform.Detect(platform.Input{ServerURL: server, CopilotHost: copilotHost})
			if err != nil {
				t.Fatal(err)
			}
			l, err := allowlist.For(ep, allowlist.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return ghaw.Frontmatter(ep, l, "")
		}
		locks := ghawtest.Compile(t, map[string]string{
			"tenant":      ghawtest.Base + frag("https://acme.ghe.com", ""),
			"ghes-tenant": ghawtest.Base + frag("https://github.example.com", "acme.ghe.com"),
			"rest-host":   ghawtest.Base + "engine:\n  id: copilot\n  api-target: api.acme.ghe.com\n",
			"ghes-plain":  ghawtest.Base + "engine: copilot\n",
			"public":      ghawtest.Base + "engine:\n  id: copilot\n  api-target: api.githubcopilot.com\n",
		})
		dir, err := os.MkdirTemp("", "check-lock-test-*")
		if err != nil {
			t.Fatal(err)
		}
		lockRoot = dir
		lockDir = filepath.Join(dir, ".github", "workflows")
		if err := os.MkdirAll(lockDir, 0o755); err != nil {
			t.Fatal(err)
		}
		lockFiles = map[string]string{}
		for n, b := range locks {
			p := filepath.Join(lockDir, n+".lock.yml")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			lockFiles[n] = p
		}
	})
	p, ok := lockFiles[name]
	if !ok {
		t.Fatalf("no compiled lock %q (the first test to compile them failed?)", name)
	}
	return p
}

// lockTenant starts a simulated tenant posing as host and returns the flags that make the probe
// reach it for every name under host.
func lockTenant(t *testing.T, host string, b func(*faketenant.Behavior)) []string {
	_, flags := lockTenantFT(t, host, b)
	return flags
}

func lockTenantFT(t *testing.T, host string, b func(*faketenant.Behavior)) (*faketenant.Tenant, []string) {
	t.Helper()
	ft, ca := startTenant(t, faketenant.Options{Host: host, Token: lockToken}, b)
	addr := strings.TrimPrefix(ft.URL(), "https://")
	var flags []string
	for _, n := range []string{"copilot-api." + host, "api." + host} {
		flags = append(flags, "--resolve", n+":443:"+addr)
	}
	return ft, append(flags, "--ca-file", ca)
}

func checkLockRun(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCommand(t, "check-lock", env, args...)
}

func TestCheckLockExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	md := filepath.Join(dir, "x.md")
	_ = os.WriteFile(md, []byte("---\nengine: copilot\n---\n# x\n"), 0o644)
	wf := filepath.Join(dir, "ci.yml")
	_ = os.WriteFile(wf, []byte("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n"), 0o644)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"missing file", []string{filepath.Join(dir, "nope.lock.yml")}, nil, 2, "no such file"},
		{"the .md", []string{md}, nil, 2, "pass the compiled .lock.yml"},
		{"a plain workflow", []string{wf}, nil, 2, "not a gh-aw lock"},
		{"no file", nil, nil, 2, "no lock file"},
		{"two files", []string{md, wf}, nil, 2, "one lock file at a time"},
		{"bad format", []string{"--format", "xml", md}, nil, 2, "unknown --format"},
		{"bad probe", []string{"--probe", "maybe", md}, nil, 2, "use auto, true or false"},
		{"self without ref", []string{"self"}, nil, 2, "GITHUB_WORKFLOW_REF"},
		{"help", []string{"-h"}, nil, 0, "FILE.lock.yml|self"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, _, errs := checkLockRun(t, c.env, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs, c.code, c.want)
			}
		})
	}
}

// TestCheckLockProbe: the live probe decides what only the target can tell, for locks compiled
// by the pinned compiler, against simulated tenants over TLS.
func TestCheckLockProbe(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, lock string
		platform   []string
		host       string
		behave     func(*faketenant.Behavior)
		code       int
		kinds      []string // the findings' kinds, in order
		want       []string // substrings of stdout
	}{
		{"tenant fits", "tenant", []string{"--server-url", "https://acme.ghe.com"}, "acme.ghe.com", nil, 0, nil,
			[]string{"fits", "answered 200 with `token`"}},
		// awf 0.28.15 sends "token" to copilot-api.NAME.ghe.com; a tenant that wants Bearer
		// (as awf before 0.28.0 sent) needs the last release that sent it.
		{"tenant wants Bearer", "tenant", []string{"--server-url", "https://acme.ghe.com"}, "acme.ghe.com",
			func(b *faketenant.Behavior) { b.RequireScheme = "bearer" }, 1, []string{ghaw.KindAuthScheme},
			[]string{"refused `Authorization: token` (400) and answered `Bearer` (200)", "version: v0.27.44"}},
		{"no seat", "tenant", []string{"--server-url", "https://acme.ghe.com"}, "acme.ghe.com",
			func(b *faketenant.Behavior) { b.ModelsStatus = http.StatusForbidden }, 1, []string{ghaw.KindTargetProbe},
			[]string{"answered 403", "access denied by policy"}},
		// A target that is not the platform's Copilot API is not probed: the token goes nowhere else.
		{"rest host", "rest-host", []string{"--server-url", "https://acme.ghe.com"}, "acme.ghe.com", nil, 1,
			[]string{ghaw.KindRESTHost}, []string{"api-target: copilot-api.acme.ghe.com", "not run: api.acme.ghe.com is not the Copilot API of acme.ghe.com"}},
		{"public target on a tenant", "public", []string{"--server-url", "https://acme.ghe.com"}, "acme.ghe.com", nil, 1,
			[]string{ghaw.KindAPITarget}, []string{"not run: api.githubcopilot.com is not the Copilot API of acme.ghe.com"}},
		// The plan host awf derives on GHES is a warning until the probe shows it answers.
		{"ghes plan host answers", "ghes-plain", []string{"--server-url", "https://github.example.com", "--copilot-host", "github.com"},
			"enterprise.githubcopilot.com", nil, 0, nil, []string{"https://api.enterprise.githubcopilot.com/models answered 200 with `token`"}},
		{"ghes tenant fits", "ghes-tenant", []string{"--server-url", "https://github.example.com", "--copilot-host", "acme.ghe.com"},
			"acme.ghe.com", nil, 0, nil, []string{"fits"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ft, flags := lockTenantFT(t, c.host, c.behave)
			args := append(append(flags, c.platform...), compiledLock(t, c.lock))
			code, out, errs := checkLockRun(t, map[string]string{"COPILOT_GITHUB_TOKEN": lockToken}, append([]string{"--format", "json"}, args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.code, out, errs)
			}
			var got checkLockJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, out)
			}
			var kinds []string
			for _, f := range got.Report.Findings {
				kinds = append(kinds, f.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(c.kinds, ",") || got.Fits != (c.code == 0) {
				t.Errorf("findings %v (fits %v), want %v", kinds, got.Fits, c.kinds)
			}
			text := runText(t, args)
			for _, w := range c.want {
				if !strings.Contains(out, w) && !strings.Contains(text, w) {
					t.Errorf("neither the JSON nor the text says %q\n%s\n%s", w, out, text)
				}
			}
			if strings.Contains(out+errs+text, lockToken) {
				t.Error("the token reached the output")
			}
			// A target that is not the Copilot API gets no request (the REST host here resolves
			// to the fake, so a probe would have been recorded).
			if got.Probe != nil && got.Probe.NotProbedBy != "" && len(ft.Requests()) != 0 {
				t.Errorf("not probed, yet the tenant saw %d requests", len(ft.Requests()))
			}
		})
	}
}

func runText(t *testing.T, args []string) string {
	t.Helper()
	_, out, _ := checkLockRun(t, map[string]string{"COPILOT_GITHUB_TOKEN": lockToken}, args...)
	return out
}

// TestCheckLockStep runs check-lock as the action's step on its own workflow's lock (self): the
// summary section (golden), the lock-verdict output, an annotation per finding, and the token
// only in add-mask commands.
func TestCheckLockStep(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, lock string
		server     string
		behave     func(*faketenant.Behavior)
		code       int
		verdict    string
	}{
		{"tenant-fits", "tenant", "https://acme.ghe.com", nil, 0, "fits"},
		{"tenant-auth-scheme", "tenant", "https://acme.ghe.com", func(b *faketenant.Behavior) { b.RequireScheme = "bearer" }, 1, "findings"},
		{"tenant-rest-host", "rest-host", "https://acme.ghe.com", nil, 1, "findings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			lock := compiledLock(t, c.lock)
			workspace := filepath.Dir(filepath.Dir(filepath.Dir(lock)))
			outFile, sumFile := stepFiles(t)
			env := map[string]string{
				"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": outFile, "GITHUB_STEP_SUMMARY": sumFile,
				"GITHUB_SERVER_URL": c.server, "GITHUB_WORKSPACE": workspace,
				"GITHUB_WORKFLOW_REF": "acme/repo/.github/workflows/" + filepath.Base(lock) + "@refs/heads/main",
				"INPUT_GITHUB_TOKEN":  lockToken, "INPUT_CHECK_LOCK": "self",
			}
			code, out, errs := checkLockRun(t, env, append(lockTenant(t, "acme.ghe.com", c.behave), "--format", "none")...)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, errs)
			}
			sum, _ := os.ReadFile(sumFile)
			goldenIn(t, "../../testdata/summary", "lock-check-"+c.name+".md", requestIDs.ReplaceAllString(string(sum), "FAKE:0000:000000"))
			outputs, _ := os.ReadFile(outFile)
			entries, err := actions.ParseFile(outputs)
			if err != nil || len(entries) != 1 || entries[0].Name != "lock-verdict" || entries[0].Value != c.verdict {
				t.Errorf("outputs %q (%v)", outputs, err)
			}
			errorsSeen := strings.Count(out, "::error title=copilot-route check-lock")
			if (c.code == 1) != (errorsSeen > 0) {
				t.Errorf("%d error annotations for exit %d:\n%s", errorsSeen, c.code, out)
			}
			for _, line := range strings.Split(out, "\n") {
				if !strings.HasPrefix(line, "::add-mask::") && strings.Contains(line, lockToken) {
					t.Errorf("token in stdout line %q", line)
				}
			}
			if strings.Contains(string(sum)+errs, lockToken) {
				t.Error("the token reached the summary or stderr")
			}
		})
	}
}
