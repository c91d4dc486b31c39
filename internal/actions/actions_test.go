package actions

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// step is a fake runner environment: real temp files for the environment files.
type step struct {
	env    map[string]string
	stdout bytes.Buffer
}

func newStep(t *testing.T) *step {
	t.Helper()
	dir := t.TempDir()
	s := &step{env: map[string]string{}}
	for _, f := range []string{FileOutput, FileEnv, FileState, FileSummary} {
		p := filepath.Join(dir, strings.ToLower(f))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		s.env[f] = p
	}
	return s
}

func (s *step) actions() *Actions { return New(func(k string) string { return s.env[k] }, &s.stdout) }

func (s *step) read(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(s.env[file])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *step) parse(t *testing.T, file string) map[string]string {
	t.Helper()
	entries, err := ParseFile(s.read(t, file))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", file, err, s.read(t, file))
	}
	m := map[string]string{}
	for _, e := range entries {
		if _, dup := m[e.Name]; dup {
			t.Fatalf("%s: %s written twice", file, e.Name)
		}
		m[e.Name] = e.Value
	}
	return m
}

func TestCommitRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStep(t)
	b := s.actions().Stage()
	b.Output("platform", "ghe.com")
	b.Output("empty", "")
	b.Output("with-percent", "100% ::warning::x")
	b.OutputLines("list", "a.example.com\nb.example.com\n\nc")
	b.Env("GH_HOST", "acme.ghe.com")
	b.State("pid", "1234")
	b.Summary("## hello\n")
	b.Summary("| a | b |\n")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	out := s.parse(t, FileOutput)
	want := map[string]string{"platform": "ghe.com", "empty": "", "with-percent": "100% ::warning::x", "list": "a.example.com\nb.example.com\n\nc"}
	if len(out) != len(want) {
		t.Errorf("outputs = %q, want %q", out, want)
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("output %s = %q, want %q", k, out[k], v)
		}
	}
	if env := s.parse(t, FileEnv); len(env) != 1 || env["GH_HOST"] != "acme.ghe.com" {
		t.Errorf("env = %q", env)
	}
	if st := s.parse(t, FileState); len(st) != 1 || st["pid"] != "1234" {
		t.Errorf("state = %q", st)
	}
	if got := string(s.read(t, FileSummary)); got != "## hello\n| a | b |\n" {
		t.Errorf("summary = %q", got)
	}
	if s.stdout.Len() != 0 {
		t.Errorf("Commit printed %q", s.stdout.String())
	}
	// Every value has its own delimiter.
	delims := map[string]bool{}
	for _, line := range strings.Split(string(s.read(t, FileOutput)), "\n") {
		if _, d, ok := strings.Cut(line, "<<"); ok {
			if delims[d] {
				t.Errorf("delimiter %s reused", d)
			}
			delims[d] = true
		}
	}
	if len(delims) != 4 {
		t.Errorf("%d delimiters for 4 outputs", len(delims))
	}
}

// TestInjection: a value that tries to end its entry and start another (with the fixed delimiter
// go-githubactions uses, or with a guessed one) stays one value.
func TestInjection(t *testing.T) {
	t.Parallel()
	s := newStep(t)
	b := s.actions().Stage()
	evil := "x\n_GitHubActionsFileCommandDelimeter_\nadmin=true\nsecret<<EOF\nowned\nEOF\nghadelimiter_00000000000000000000000000000000"
	b.OutputLines("list", evil)
	b.Output("after", "ok")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	out := s.parse(t, FileOutput)
	if len(out) != 2 || out["list"] != evil || out["after"] != "ok" {
		t.Errorf("outputs = %q", out)
	}
	if _, ok := out["admin"]; ok {
		t.Error("injected output admin")
	}
}

// TestStagedNothingWritten: one bad value anywhere means no file is touched.
func TestStagedNothingWritten(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name  string
		stage func(b *Batch)
		err   string
	}{
		{"newline in single-line output", func(b *Batch) { b.Output("x", "a\nb=c") }, "line break"},
		{"newline in env", func(b *Batch) { b.Env("X", "a\nGH_HOST=evil") }, "line break"},
		{"newline in state", func(b *Batch) { b.State("X", "a\nb") }, "line break"},
		{"carriage return", func(b *Batch) { b.OutputLines("x", "a\rb") }, "carriage return"},
		{"NUL", func(b *Batch) { b.Output("x", "a\x00b") }, "control character"},
		{"bad output name", func(b *Batch) { b.Output("a<<b", "v") }, "not a valid name"},
		{"output name with =", func(b *Batch) { b.Output("a=b", "v") }, "not a valid name"},
		{"bad env name", func(b *Batch) { b.Env("A-B", "v") }, "not a valid name"},
		{"reserved env", func(b *Batch) { b.Env("GITHUB_TOKEN", "v") }, "reserved"},
		{"NODE_OPTIONS", func(b *Batch) { b.Env("node_options", "--require x") }, "reserved"},
		{"summary too big", func(b *Batch) { b.Summary(strings.Repeat("x", maxSummary+1)) }, "over the runner"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStep(t)
			b := s.actions().Stage()
			b.Output("good", "1")
			b.Env("GOOD", "1")
			b.Summary("good\n")
			tc.stage(b)
			b.Output("later", "2")
			err := b.Commit()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Commit() = %v, want an error about %q", err, tc.err)
			}
			for _, f := range []string{FileOutput, FileEnv, FileState, FileSummary} {
				if n := len(s.read(t, f)); n != 0 {
					t.Errorf("%s got %d bytes", f, n)
				}
			}
		})
	}
}

func TestCommitFileMissing(t *testing.T) {
	t.Parallel()
	s := newStep(t)
	delete(s.env, FileEnv)
	b := s.actions().Stage()
	b.Output("a", "1")
	b.Env("B", "2")
	if err := b.Commit(); err == nil || !strings.Contains(err.Error(), "GITHUB_ENV is not set") {
		t.Fatalf("Commit() = %v", err)
	}
	if n := len(s.read(t, FileOutput)); n != 0 {
		t.Errorf("GITHUB_OUTPUT got %d bytes though GITHUB_ENV was missing", n)
	}
	// An unopenable file: also nothing written elsewhere.
	s.env[FileEnv] = filepath.Join(t.TempDir(), "no", "such", "dir")
	b = s.actions().Stage()
	b.Output("a", "1")
	b.Env("B", "2")
	if err := b.Commit(); err == nil {
		t.Fatal("Commit() into a missing directory succeeded")
	}
	if n := len(s.read(t, FileOutput)); n != 0 {
		t.Errorf("GITHUB_OUTPUT got %d bytes though GITHUB_ENV could not be opened", n)
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	s := newStep(t)
	a := s.actions()
	a.Mask("ghp_abc")
	a.Mask("  padded  ")
	a.Mask("line1\nline2\r\n\n  line3")
	a.Mask("100%\n")
	a.Mask("")
	a.Mask("dup\ndup")
	want := strings.Join([]string{
		"::add-mask::ghp_abc",
		"::add-mask::  padded  ", "::add-mask::padded",
		"::add-mask::line1", "::add-mask::line2", "::add-mask::  line3", "::add-mask::line3",
		"::add-mask::100%25",
		"::add-mask::dup",
	}, "\n") + "\n"
	if got := s.stdout.String(); got != want {
		t.Errorf("masks:\n%s\nwant\n%s", got, want)
	}
}

func TestAnnotationsAndInputs(t *testing.T) {
	t.Parallel()
	s := newStep(t)
	s.env["INPUT_SERVER_URL"] = "  https://acme.ghe.com \n"
	s.env["INPUT_EXPORT_ENV"] = "True"
	a := s.actions()
	if !a.InStep() {
		t.Error("InStep() = false with GITHUB_OUTPUT set")
	}
	if got := a.Input("server-url"); got != "https://acme.ghe.com" {
		t.Errorf("Input = %q", got)
	}
	if v, set, err := a.InputBool("export-env"); !v || !set || err != nil {
		t.Errorf("InputBool = %v %v %v", v, set, err)
	}
	if _, _, err := ParseBool("yes"); err == nil {
		t.Error("ParseBool(yes) accepted")
	}
	a.Warning("copilot-route", "bad\nthing: 50%")
	a.Error("copilot-route: bad input server-url", "x")
	want := "::warning title=copilot-route::bad%0Athing: 50%25\n::error title=copilot-route%3A bad input server-url::x\n"
	if got := s.stdout.String(); got != want {
		t.Errorf("annotations:\n%q\nwant\n%q", got, want)
	}
	if New(func(string) string { return "" }, &bytes.Buffer{}).InStep() {
		t.Error("InStep() = true without GITHUB_OUTPUT")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

func TestStdoutErrorDoesNotPanic(t *testing.T) {
	t.Parallel()
	a := New(func(string) string { return "" }, failWriter{})
	a.Mask("x")
	a.Warning("t", "m")
	if a.Err() == nil {
		t.Error("Err() = nil after failed writes")
	}
}

func TestParseFileStrict(t *testing.T) {
	t.Parallel()
	bad := []string{
		"a<<D\nvalue\n",            // never closed
		"a=1\n\nb=2\n",             // blank line
		"a=1",                      // no final newline
		"a=1\r\n",                  // carriage return
		"no equals\n",              // neither form
		"<<D\nx\nD\n",              // no name
		"a<<\nx\n\n",               // no delimiter
		"a b=1\n",                  // bad name
		"a<<D\nx\nD\ngarbage\n",    // trailing garbage
		"a<<D\nx\nD \n",            // delimiter with a trailing space does not close
		"a<<D\nx\nD\nb<<E\ny\nD\n", // second entry closed by the wrong delimiter
	}
	for _, in := range bad {
		if got, err := ParseFile([]byte(in)); err == nil {
			t.Errorf("ParseFile(%q) = %q, want an error", in, got)
		}
	}
	got, err := ParseFile([]byte("a=1\nb<<D\nx\ny\nD\nc=\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != (Entry{"a", "1"}) || got[1] != (Entry{"b", "x\ny"}) || got[2] != (Entry{"c", ""}) {
		t.Errorf("ParseFile = %q", got)
	}
}

func TestInputEnv(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"server-url": "INPUT_SERVER_URL", "github-token": "INPUT_GITHUB_TOKEN", "x y": "INPUT_X_Y"} {
		if got := InputEnv(in); got != want {
			t.Errorf("InputEnv(%q) = %q, want %q", in, got, want)
		}
	}
}
