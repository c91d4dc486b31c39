// Package ghawtest compiles gh-aw workflows with the real, pinned compiler for tests: the locks
// check-lock reads in tests are the locks users get, not hand-written imitations.
package ghawtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// BinEnv names the variable that gives the compiler's path. scripts/test.sh builds the compiler
// (scripts/lib.sh need_gh_aw) and sets it.
const BinEnv = "GH_AW_BIN"

// Base is the frontmatter every test workflow starts from; a case adds its own keys.
const Base = "on:\n  workflow_dispatch:\npermissions:\n  contents: read\n"

// Bin returns the compiler's path, or skips the test when GH_AW_BIN is unset.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(BinEnv)
	if bin == "" {
		t.Skipf("%s is not set: run scripts/test.sh, or build the compiler with `source scripts/lib.sh; need_gh_aw` and set %s to its path", BinEnv, BinEnv)
	}
	return bin
}

// Compile compiles each workflow (name → the frontmatter between the --- lines) in one run of
// the compiler, inside a network namespace with only loopback (the compiler tries to resolve
// action pins online; here it must not reach anything), and returns name → the .lock.yml.
func Compile(t testing.TB, workflows map[string]string) map[string][]byte {
	t.Helper()
	bin := Bin(t)
	dir := t.TempDir()
	wfDir := filepath.Join(dir, ".github", "workflows")
	if err := os.MkdirAll(wfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(workflows))
	for name, fm := range workflows {
		names = append(names, name)
		md := "---\n" + strings.TrimRight(fm, "\n") + "\n---\n# " + name + "\n\nSay hi.\n"
		if err := os.WriteFile(filepath.Join(wfDir, name+".md"), []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(names)
	run(t, dir, "git", "init", "-q", ".")
	out := run(t, dir, "unshare", "--net", "--map-root-user", "--", bin, "compile", "--no-check-update", "--approve")
	locks := map[string][]byte{}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(wfDir, name+".lock.yml"))
		if err != nil {
			t.Fatalf("gh-aw compile wrote no lock for %s: %v\n%s", name, err, out)
		}
		locks[name] = b
	}
	return locks
}

func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	// A private HOME: the compiler keeps caches there, and git reads its config there.
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
