// Command snippets writes every workflow snippet of the given Markdown files as a workflow file, so
// scripts/test.sh can run actionlint on what the docs tell people to paste:
//
//	snippets DIR FILE.md...
//
// A ```yaml block with a top-level jobs: key is a workflow (given a name and an on: when it has
// none); a block that is a list of steps (starting "- ") becomes the steps of a one-job workflow;
// anything else (gh-aw front matter, a list of domains) is not a workflow and is skipped. Each
// file written is printed, one per line.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: snippets DIR FILE.md...")
		os.Exit(2)
	}
	for _, md := range os.Args[2:] {
		text, err := os.ReadFile(md)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for i, b := range yamlBlocks(string(text)) {
			wf, ok := workflow(b.Body)
			if !ok {
				continue
			}
			name := filepath.Join(os.Args[1], fmt.Sprintf("%s-%d-line%d.yml", strings.NewReplacer("/", "_", ".", "_").Replace(md), i, b.Line))
			if err := os.WriteFile(name, []byte(wf), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Println(name)
		}
	}
}

// Block is one fenced ```yaml block: its first line number in the file (1-based, the fence) and
// the heading it sits under.
type Block struct {
	Line    int
	Heading string
	Body    string
}

// yamlBlocks returns the ```yaml blocks of a Markdown text, in order.
func yamlBlocks(md string) []Block {
	var out []Block
	var cur *Block
	heading := ""
	for i, l := range strings.Split(md, "\n") {
		switch {
		case cur != nil && strings.TrimSpace(l) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.Body += l + "\n"
		case strings.TrimSpace(l) == "```yaml":
			cur = &Block{Line: i + 1, Heading: heading}
		case strings.HasPrefix(l, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(l, "#"))
		}
	}
	return out
}

var topJobs = regexp.MustCompile(`(?m)^jobs:\s*$`)

// workflow makes a snippet a workflow file, or says it is not one.
func workflow(body string) (string, bool) {
	trimmed := strings.TrimLeft(body, "\n")
	switch {
	case topJobs.MatchString(body):
		head := ""
		if !regexp.MustCompile(`(?m)^name:`).MatchString(body) {
			head += "name: snippet\n"
		}
		if !regexp.MustCompile(`(?m)^on:`).MatchString(body) {
			head += "on: workflow_dispatch\n"
		}
		return head + body, true
	case strings.HasPrefix(strings.TrimLeft(trimmed, " "), "- "):
		var b strings.Builder
		b.WriteString("name: snippet\non: workflow_dispatch\njobs:\n  snippet:\n    runs-on: ubuntu-latest\n    steps:\n")
		indent := len(trimmed) - len(strings.TrimLeft(trimmed, " "))
		for _, l := range strings.Split(strings.TrimRight(trimmed, "\n"), "\n") {
			if len(l) >= indent {
				l = l[indent:]
			}
			b.WriteString("      " + l + "\n")
		}
		return b.String(), true
	}
	return "", false
}
