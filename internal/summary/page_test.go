package summary_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/diagnose/diagnosetest"
	"github.com/copilot-route/copilot-route/internal/summary"
)

// The -update flag may also be defined by another test file of this package; define it only
// when nobody did (package variables initialise before init functions run).
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const goldenDir = "../../testdata/summary"

// golden compares got with testdata/summary/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test ./internal/summary -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./internal/summary -update rewrites it):\n--- got\n%s", name, got)
	}
}

var tokens = []string{diagnosetest.PATToken, diagnosetest.InstallationToken, diagnosetest.ClassicToken, diagnosetest.OtherToken}

func assertNoToken(t *testing.T, s string) {
	t.Helper()
	for _, tok := range tokens {
		if strings.Contains(s, tok) || strings.Contains(s, tok[4:20]) {
			t.Fatalf("a token leaked into the rendering")
		}
	}
}

// Each scenario's page is rendered from a real probe run against the fake tenant in that mode.
func TestPageGolden(t *testing.T) {
	t.Parallel()
	for _, sc := range diagnosetest.All() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			res := sc.Run(t)
			rep := diagnosetest.Normalize(res.Report)
			list, err := allowlist.For(res.Endpoints, allowlist.Options{})
			if err != nil {
				t.Fatal(err)
			}
			det, err := summary.DetectionSection(summary.Detection{Endpoints: res.Endpoints, List: list, Warnings: rep.Notes,
				TokenKind: string(diagnosetest.KindOf(sc.Token))})
			if err != nil {
				t.Fatal(err)
			}
			page := summary.RenderPage(summary.Page{Endpoints: res.Endpoints, List: list, Report: &rep, Detection: det,
				ProxyURL: "http://127.0.0.1:41000"})
			assertNoToken(t, page)
			golden(t, sc.Name+".md", page)

			text := summary.DiagnoseText(rep, res.Endpoints)
			assertNoToken(t, text)
			golden(t, sc.Name+".txt", text)

			var ann strings.Builder
			for _, a := range summary.Annotations(rep) {
				ann.WriteString("::" + a.Level + " title=" + a.Title + "::" + a.Message + "\n")
			}
			assertNoToken(t, ann.String())
			golden(t, sc.Name+".annotations", ann.String())
		})
	}
}

// Without a detection section, the page shows the report's notes itself (the verdict counts them).
func TestPageNotesWithoutDetection(t *testing.T) {
	t.Parallel()
	rep := diagnose.Report{Verdict: diagnose.ReadyWithWarnings, Notes: []string{"set copilot-host <now>"}}
	page := summary.RenderPage(summary.Page{Report: &rep})
	if !strings.Contains(page, "> [!WARNING]\n> set copilot-host &lt;now&gt;") {
		t.Errorf("note missing or unescaped:\n%s", page)
	}
	if page := summary.RenderPage(summary.Page{Report: &rep, Detection: "## detection\n"}); strings.Contains(page, "[!WARNING]") {
		t.Errorf("note repeated next to the detection section:\n%s", page)
	}
}

// A report with no failing probe has no "What to do" list, and each failing one has its fix in it.
func TestFixesListed(t *testing.T) {
	t.Parallel()
	rep := diagnose.Report{Verdict: diagnose.WillNotWork, Probes: []diagnose.Probe{
		{Name: "models", Title: "Copilot API: models", Verdict: diagnose.Fail, Meaning: "m", Fix: "do `this` | now"},
		{Name: "meta", Title: "REST API reachable", Verdict: diagnose.OK, Meaning: "fine"},
	}}
	got := summary.DiagnoseSection(rep)
	if !strings.Contains(got, "### What to do") || !strings.Contains(got, "do `this` \\| now") {
		t.Errorf("fix missing or unescaped:\n%s", got)
	}
	rep.Probes[0].Verdict, rep.Verdict = diagnose.OK, diagnose.Ready
	if got := summary.DiagnoseSection(rep); strings.Contains(got, "What to do") {
		t.Errorf("a ready report lists fixes:\n%s", got)
	}
}

// The page the action's diagnose step writes: no detection section (detect wrote its own), so
// the notes and the gh-aw snippet are on this page.
func TestStepPageGolden(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ghe-seed", "ghes-no-copilot-host"} {
		sc, _ := diagnosetest.ByName(name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res := sc.Run(t)
			rep := diagnosetest.Normalize(res.Report)
			list, err := allowlist.For(res.Endpoints, allowlist.Options{})
			if err != nil {
				t.Fatal(err)
			}
			page := summary.RenderPage(summary.Page{Endpoints: res.Endpoints, List: list, Report: &rep})
			assertNoToken(t, page)
			golden(t, "step-"+name+".md", page)
		})
	}
}
