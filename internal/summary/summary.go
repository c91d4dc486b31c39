// Package summary renders copilot-route's job-summary sections (markdown) from text/template
// files under templates/. Each section is one template named after it ("detect.md.tmpl") with a
// data type here; add a section by adding both. Values are escaped by the template functions, so
// a host or message can never break out of a table cell or a code span.
package summary

import (
	"embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/ghaw"
	"github.com/copilot-route/copilot-route/internal/platform"
)

//go:embed templates/*.md.tmpl
var templateFS embed.FS

// templates are parsed once; a parse error is a build-time bug caught by every test.
var templates = template.Must(template.New("summary").Funcs(funcs).ParseFS(templateFS, "templates/*.md.tmpl"))

var funcs = template.FuncMap{
	"code":  code,
	"text":  text,
	"lines": func(s []string) string { return strings.Join(s, "\n") },
	"add":   func(a, b int) int { return a + b },
}

// Render executes the section template name (e.g. "detect.md.tmpl") with data.
func Render(name string, data any) (string, error) {
	var sb strings.Builder
	if err := templates.ExecuteTemplate(&sb, name, data); err != nil {
		return "", fmt.Errorf("render summary section %s: %w", name, err)
	}
	return sb.String(), nil
}

// Detection is the data of the detect step's section.
type Detection struct {
	Endpoints platform.Endpoints
	List      allowlist.List
	// Warnings are the step's warnings (already free of secrets), each a sentence with the fix.
	Warnings []string
	// TokenKind is what the token's prefix says it is ("fine-grained-pat"), never the token.
	TokenKind string
	// ExportedEnv lists NAME=value pairs written to GITHUB_ENV.
	ExportedEnv []string
	// ProxyHost is the proxy-host input (validated), left out of the gh-aw frontmatter.
	ProxyHost string
}

// GHAWFrontmatter is the gh-aw frontmatter for the detected platform.
func (d Detection) GHAWFrontmatter() string {
	return ghaw.Frontmatter(d.Endpoints, d.List, d.ProxyHost)
}

// DetectionSection renders the detect step's section.
func DetectionSection(d Detection) (string, error) { return Render("detect.md.tmpl", d) }

// code renders s as an inline code span that is safe inside a markdown table cell.
func code(s string) string {
	if s == "" {
		return "—"
	}
	s = strings.NewReplacer("\r", " ", "\n", " ", "|", "\\|").Replace(s)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// text renders s as plain markdown text on one line: markdown and HTML syntax is escaped.
func text(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch r {
		case '\r', '\n':
			sb.WriteByte(' ')
		case '\\', '`', '*', '_', '[', ']', '|', '#', '!', '~':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case '<':
			sb.WriteString("&lt;")
		case '>':
			sb.WriteString("&gt;")
		case '&':
			sb.WriteString("&amp;")
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
