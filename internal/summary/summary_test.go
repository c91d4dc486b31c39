package summary

import (
	"strings"
	"testing"

	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/platform"
)

func TestCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":        "—",
		"a.b":     "`a.b`",
		"a|b":     "`a\\|b`",
		"a`b":     "``a`b``",
		"`a":      "`` `a ``",
		"a\nb":    "`a b`",
		"a``b`c`": "``` a``b`c` ```",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	in := "a|b <script>x</script> [l](http://e) **b** `c`\n# h & !"
	got := text(in)
	for _, bad := range []string{"<script>", "\n", " [l]", "**", " # "} {
		if strings.Contains(got, bad) {
			t.Errorf("text(%q) = %q keeps %q", in, got, bad)
		}
	}
	if !strings.Contains(got, `a\|b`) || !strings.Contains(got, "&lt;script&gt;") {
		t.Errorf("text(%q) = %q", in, got)
	}
}

func TestDetectionSection(t *testing.T) {
	t.Parallel()
	ep, err := platform.Detect(platform.Input{ServerURL: "https://github.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := allowlist.For(ep, allowlist.Options{ProxyHost: "host.docker.internal"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := DetectionSection(Detection{Endpoints: ep, List: l, TokenKind: "fine-grained-pat",
		Warnings: append(ep.Warnings, "evil | </details> <img src=x>\n## injected"), ExportedEnv: []string{"GH_HOST=github.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## copilot-route: platform detection",
		"| Platform | `ghes` | from the server URL's host |",
		"| REST API | `https://github.example.com/api/v3` | derived from the platform |",
		"| Copilot licensed on | `github.com` | default for GHES (github.com) |",
		"| Token | `fine-grained-pat` |",
		"| Exported | `GH_HOST=github.example.com` |",
		"> [!WARNING]\n> GitHub Enterprise Server has no Copilot API",
		"> evil \\| &lt;/details&gt; &lt;img src=x&gt; \\#\\# injected",
		"host.docker.internal:443",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "</details>") != 1 || strings.Contains(out, "\n## injected") {
		t.Errorf("a warning broke out of its block:\n%s", out)
	}
	if _, err := Render("no-such.md.tmpl", nil); err == nil {
		t.Error("Render of a missing template succeeded")
	}
}
