package summary

import (
	"strings"
	"testing"
)

// prose must keep any string on one table-safe line: no line break, every pipe escaped, no raw
// HTML tag opener. The seeds run as a normal test; go test -fuzz=FuzzProse explores further.
func FuzzProse(f *testing.F) {
	for _, s := range []string{
		"", "plain", "set `auth-scheme: token` now", "odd ` backtick", "a | b", "`a | b`", "<script>x</script>",
		"line\nbreak", "`code\nspan`", "\\|", "``", "`|`", "**bold** [link](http://x)", "\u2028",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := prose(s)
		if strings.ContainsAny(out, "\n\r") {
			t.Fatalf("prose(%q) = %q has a line break", s, out)
		}
		for i := 0; i < len(out); i++ {
			if out[i] == '|' && (i == 0 || out[i-1] != '\\') {
				t.Fatalf("prose(%q) = %q has an unescaped pipe", s, out)
			}
		}
		if strings.Contains(s, "<") && strings.Contains(stripCode(out), "<") {
			t.Fatalf("prose(%q) = %q keeps a raw '<' outside code", s, out)
		}
	})
}

// stripCode drops code spans, where a '<' is shown literally.
func stripCode(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}
