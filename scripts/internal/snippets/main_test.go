package main

import (
	"os"
	"strings"
	"testing"
)

func TestYAMLBlocksAndWorkflow(t *testing.T) {
	t.Parallel()
	md := "# Title\n\n## Use it\n\n```yaml\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n```\n\n" +
		"### Steps only\n\n```yaml\n- id: route\n  uses: OWNER/copilot-route@v1\n- run: echo \"$X\"\n  env:\n    X: ${{ steps.route.outputs.platform }}\n```\n\n" +
		"```yaml\nnetwork:\n  allowed:\n    - defaults\n```\n\n```sh\necho not yaml\n```\n"
	blocks := yamlBlocks(md)
	if len(blocks) != 3 || blocks[0].Heading != "Use it" || blocks[0].Line != 5 || blocks[1].Heading != "Steps only" {
		t.Fatalf("blocks = %+v", blocks)
	}
	wf, ok := workflow(blocks[0].Body)
	if !ok || !strings.HasPrefix(wf, "name: snippet\non: workflow_dispatch\njobs:\n  a:\n") {
		t.Errorf("a jobs: block is not completed into a workflow:\n%s", wf)
	}
	wf, ok = workflow(blocks[1].Body)
	want := "name: snippet\non: workflow_dispatch\njobs:\n  snippet:\n    runs-on: ubuntu-latest\n    steps:\n" +
		"      - id: route\n        uses: OWNER/copilot-route@v1\n      - run: echo \"$X\"\n        env:\n          X: ${{ steps.route.outputs.platform }}\n"
	if !ok || wf != want {
		t.Errorf("a list of steps became\n%s\nwant\n%s", wf, want)
	}
	if _, ok := workflow(blocks[2].Body); ok {
		t.Error("gh-aw front matter was taken for a workflow")
	}
}

// asSnippet is a test workflow as the docs show it: without its header comment and the lines
// marked e2e-only, with the published action's name for `uses: ./`.
func asSnippet(wf string) string {
	var out []string
	for _, l := range strings.Split(wf, "\n") {
		if strings.HasPrefix(l, "#") || strings.HasSuffix(strings.TrimSpace(l), "# e2e-only") {
			continue
		}
		l = strings.Replace(l, "uses: ./stop", "uses: OWNER/copilot-route/stop@v1", 1)
		l = strings.Replace(l, "uses: ./", "uses: OWNER/copilot-route@v1", 1)
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// The docs' workflows are the ones scripts/e2e-awf.sh runs: README "Use it" is
// testdata/workflows/e2e-awf.yml, docs/action.md "BYOK, offline" is e2e-awf-byok.yml.
func TestDocsAreTheTestedWorkflows(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ doc, heading, workflow string }{
		{"../../../README.md", "Use it", "../../../testdata/workflows/e2e-awf.yml"},
		{"../../../docs/action.md", "BYOK, offline", "../../../testdata/workflows/e2e-awf-byok.yml"},
	} {
		md, err := os.ReadFile(c.doc)
		if err != nil {
			t.Fatal(err)
		}
		wf, err := os.ReadFile(c.workflow)
		if err != nil {
			t.Fatal(err)
		}
		var snippet string
		for _, b := range yamlBlocks(string(md)) {
			if b.Heading == c.heading {
				snippet = b.Body
				break
			}
		}
		if snippet == "" {
			t.Errorf("%s has no yaml block under %q", c.doc, c.heading)
			continue
		}
		if got := asSnippet(string(wf)); strings.TrimSpace(got) != strings.TrimSpace(snippet) {
			t.Errorf("%s under %q differs from %s (without its e2e-only lines):\n--- docs ---\n%s\n--- test workflow ---\n%s",
				c.doc, c.heading, c.workflow, snippet, got)
		}
	}
}
