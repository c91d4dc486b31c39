// Package actions is copilot-route's runner I/O for GitHub Actions steps: inputs, masks,
// annotations, and the GITHUB_OUTPUT / GITHUB_ENV / GITHUB_STATE / GITHUB_STEP_SUMMARY files.
//
// Workflow commands (masks, annotations) go through github.com/sethvargo/go-githubactions,
// which escapes them correctly. The environment files are written here instead: that library
// uses one fixed heredoc delimiter, so a value holding that delimiter line could close its entry
// early and inject further outputs or environment variables. Here every value gets a fresh
// random delimiter, single-line values are checked for line breaks, and writes are staged and
// validated as a whole before any file is touched, so a failing step leaves no half outputs.
//
// Nothing here reads the process environment or writes to os.Stdout: both are injected.
package actions

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	githubactions "github.com/sethvargo/go-githubactions"
)

// Actions is the runner I/O of one step.
type Actions struct {
	getenv func(string) string
	out    *stickyWriter
	gha    *githubactions.Action
}

// New wraps a getenv function (os.Getenv in main, a map in tests) and the step's stdout, where
// the runner reads workflow commands.
func New(getenv func(string) string, stdout io.Writer) *Actions {
	w := &stickyWriter{w: stdout}
	return &Actions{
		getenv: getenv,
		out:    w,
		gha:    githubactions.New(githubactions.WithWriter(w), githubactions.WithGetenv(getenv)),
	}
}

// stickyWriter never fails a write (go-githubactions panics when one does) and keeps the first
// error for Err.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// Err is the first error writing to stdout, if any.
func (a *Actions) Err() error { return a.out.err }

// InStep says whether this process runs as an Actions step (the runner sets GITHUB_OUTPUT).
func (a *Actions) InStep() bool { return a.getenv("GITHUB_OUTPUT") != "" }

// Getenv reads one variable of the injected environment.
func (a *Actions) Getenv(key string) string { return a.getenv(key) }

// InputEnv is the environment variable that carries input name: INPUT_ and the name upper-cased
// with '-' and ' ' as '_' (the composite action sets these explicitly).
func InputEnv(name string) string {
	return "INPUT_" + strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToUpper(name))
}

// Input is the value of input name with surrounding white space trimmed, "" when unset.
func (a *Actions) Input(name string) string { return strings.TrimSpace(a.getenv(InputEnv(name))) }

// InputBool reads a boolean input as the Actions toolkit does (true|True|TRUE|false|False|FALSE).
// set is false when the input is empty.
func (a *Actions) InputBool(name string) (value, set bool, err error) {
	return ParseBool(a.Input(name))
}

// ParseBool parses the YAML 1.2 core booleans the Actions toolkit accepts; "" is unset.
func ParseBool(v string) (value, set bool, err error) {
	switch v {
	case "":
		return false, false, nil
	case "true", "True", "TRUE":
		return true, true, nil
	case "false", "False", "FALSE":
		return false, true, nil
	}
	return false, true, fmt.Errorf("not a boolean: use true or false")
}

// Mask tells the runner to hide secret in all later log output. A multi-line secret is masked
// line by line (the runner matches masks within single log lines), each line also without its
// surrounding white space. Call it for every form of a secret before printing anything else.
func (a *Actions) Mask(secret string) {
	seen := map[string]bool{}
	for _, line := range strings.Split(secret, "\n") {
		line = strings.TrimSuffix(line, "\r")
		for _, f := range []string{line, strings.TrimSpace(line)} {
			if strings.TrimSpace(f) == "" || seen[f] {
				continue
			}
			seen[f] = true
			a.gha.AddMask(f)
		}
	}
}

// Warning prints a warning annotation with a title.
func (a *Actions) Warning(title, msg string) { a.with(title).Warningf("%s", msg) }

// Error prints an error annotation with a title.
func (a *Actions) Error(title, msg string) { a.with(title).Errorf("%s", msg) }

// Notice prints a notice annotation with a title.
func (a *Actions) Notice(title, msg string) { a.with(title).Noticef("%s", msg) }

// Debug prints a debug message (shown when step debug logging is on).
func (a *Actions) Debug(msg string) { a.gha.Debugf("%s", msg) }

func (a *Actions) with(title string) *githubactions.Action {
	if title == "" {
		return a.gha
	}
	return a.gha.WithFieldsMap(map[string]string{"title": title})
}

// The environment files a Batch writes, by the variable naming each.
const (
	FileOutput  = "GITHUB_OUTPUT"
	FileEnv     = "GITHUB_ENV"
	FileState   = "GITHUB_STATE"
	FileSummary = "GITHUB_STEP_SUMMARY"
)

// maxSummary is the runner's limit for one step's summary.
const maxSummary = 1 << 20

// Batch stages outputs, environment variables, state and summary text. Commit validates them
// all and only then writes: on any error nothing is written.
type Batch struct {
	a       *Actions
	entries map[string][]Entry // by file variable
	order   []string
	summary strings.Builder
	errs    []error
}

// Entry is one name/value pair of an environment file.
type Entry struct {
	Name  string
	Value string
}

// Stage starts a batch.
func (a *Actions) Stage() *Batch { return &Batch{a: a, entries: map[string][]Entry{}} }

var (
	outputName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Output stages a single-line step output; a line break in value is an error at Commit.
func (b *Batch) Output(name, value string) { b.stage(FileOutput, name, value, false) }

// OutputLines stages a step output that may span lines (e.g. one domain per line).
func (b *Batch) OutputLines(name, value string) { b.stage(FileOutput, name, value, true) }

// Env stages a single-line environment variable for later steps.
func (b *Batch) Env(name, value string) { b.stage(FileEnv, name, value, false) }

// State stages a single-line value for this action's post step.
func (b *Batch) State(name, value string) { b.stage(FileState, name, value, false) }

// Summary stages markdown to append to the job summary.
func (b *Batch) Summary(markdown string) { b.summary.WriteString(markdown) }

func (b *Batch) stage(file, name, value string, multiline bool) {
	re := outputName
	if file != FileOutput {
		re = envName
	}
	if !re.MatchString(name) {
		b.errs = append(b.errs, fmt.Errorf("%s: %q is not a valid name (letters, digits, '_'%s)", file, name,
			map[bool]string{true: " and '-'", false: ""}[file == FileOutput]))
		return
	}
	if file == FileEnv {
		u := strings.ToUpper(name)
		if u == "NODE_OPTIONS" || strings.HasPrefix(u, "GITHUB_") || strings.HasPrefix(u, "RUNNER_") || strings.HasPrefix(u, "ACTIONS_") {
			b.errs = append(b.errs, fmt.Errorf("%s: %s is reserved by the runner and may not be set", file, name))
			return
		}
	}
	if err := checkValue(value, multiline); err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: value of %s: %w", file, name, err))
		return
	}
	if _, ok := b.entries[file]; !ok {
		b.order = append(b.order, file)
	}
	b.entries[file] = append(b.entries[file], Entry{Name: name, Value: value})
}

func checkValue(v string, multiline bool) error {
	for _, r := range v {
		switch {
		case r == '\n':
			if !multiline {
				return errors.New("contains a line break where a single line is required")
			}
		case r == '\r':
			return errors.New("contains a carriage return")
		case r < 0x20 && r != '\t', r == 0x7f:
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	return nil
}

// Commit validates everything staged and then appends it to the environment files. It opens
// every file before writing any, and writes each file's entries in one write.
func (b *Batch) Commit() error {
	errs := slices.Clone(b.errs)
	if b.summary.Len() > maxSummary {
		errs = append(errs, fmt.Errorf("%s: the summary is %d bytes, over the runner's %d", FileSummary, b.summary.Len(), maxSummary))
	}
	type job struct {
		path string
		data []byte
	}
	var jobs []job
	for _, file := range b.order {
		var buf bytes.Buffer
		for _, e := range b.entries[file] {
			delim, err := delimiterFor(e.Value)
			if err != nil {
				errs = append(errs, err)
				break
			}
			fmt.Fprintf(&buf, "%s<<%s\n%s\n%s\n", e.Name, delim, e.Value, delim)
		}
		jobs = append(jobs, job{path: b.a.getenv(file), data: buf.Bytes()})
		if b.a.getenv(file) == "" {
			errs = append(errs, fmt.Errorf("%s is not set: run this as a GitHub Actions step", file))
		}
	}
	if b.summary.Len() > 0 {
		jobs = append(jobs, job{path: b.a.getenv(FileSummary), data: []byte(b.summary.String())})
		if b.a.getenv(FileSummary) == "" {
			errs = append(errs, fmt.Errorf("%s is not set: run this as a GitHub Actions step", FileSummary))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	files := make([]*os.File, 0, len(jobs))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, j := range jobs {
		f, err := os.OpenFile(j.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open the step's file %s: %w (nothing was written)", j.path, err)
		}
		files = append(files, f)
	}
	for i, j := range jobs {
		if _, err := files[i].Write(j.data); err != nil {
			return fmt.Errorf("write %s: %w", j.path, err)
		}
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", f.Name(), err)
		}
	}
	files = nil
	return nil
}

// delimiterFor returns a fresh random heredoc delimiter that occurs nowhere in value.
func delimiterFor(value string) (string, error) {
	for range 4 {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("random delimiter: %w", err)
		}
		d := "ghadelimiter_" + hex.EncodeToString(b[:])
		if !strings.Contains(value, d) {
			return d, nil
		}
	}
	return "", errors.New("could not find a delimiter absent from the value")
}

// ParseFile parses an environment file (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_STATE) as the runner
// does, but strictly: every line belongs to a "name=value" line or a "name<<DELIM" … "DELIM"
// block; a blank line, a carriage return, a missing closing delimiter, or a bad name is an
// error. Tests use it to read back what a step wrote.
func ParseFile(data []byte) ([]Entry, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if bytes.IndexByte(data, '\r') >= 0 {
		return nil, errors.New("carriage return in an environment file")
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("the file does not end with a line break")
	}
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			if !outputName.MatchString(name) || delim == "" {
				return nil, fmt.Errorf("line %d: bad heredoc header %q", n, line)
			}
			var val []string
			closed := false
			for sc.Scan() {
				n++
				if sc.Text() == delim {
					closed = true
					break
				}
				val = append(val, sc.Text())
			}
			if !closed {
				return nil, fmt.Errorf("entry %s: delimiter %s never closes", name, delim)
			}
			out = append(out, Entry{Name: name, Value: strings.Join(val, "\n")})
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok || !outputName.MatchString(name) {
			return nil, fmt.Errorf("line %d: not name=value or name<<DELIMITER: %q", n, line)
		}
		out = append(out, Entry{Name: name, Value: val})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
