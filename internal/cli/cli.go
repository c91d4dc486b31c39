// Package cli holds copilot-route's subcommands. It wires the other packages together and holds
// no business rules. Nothing below it reads the process environment: values are passed in.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/copilot-route/copilot-route/internal/daemon"
)

// Version is set at build time with -ldflags "-X github.com/copilot-route/copilot-route/internal/cli.Version=v1.2.3".
var Version = "dev"

// Env is the process environment, injected so every command runs in-process in tests.
type Env struct {
	Getenv  func(string) string
	Environ func() []string // for child processes
	Stdin   io.Reader
	// Unsetenv removes a variable from the process's environment (serve drops its token
	// variables once read); nil does nothing.
	Unsetenv func(string)
	// Seal keeps other processes of the same user out of this one's memory and /proc files
	// (daemon.Seal); serve calls it first. nil, as in tests that run serve in-process, does nothing.
	Seal func() error
}

// OSEnv is the real environment.
func OSEnv() Env {
	return Env{Getenv: os.Getenv, Environ: os.Environ, Stdin: os.Stdin,
		Unsetenv: func(k string) { _ = os.Unsetenv(k) }, Seal: daemon.Seal}
}

// MapEnv builds an Env from a copy of a map, for tests: its Unsetenv changes only that copy.
func MapEnv(vars map[string]string) Env {
	m := make(map[string]string, len(vars))
	for k, v := range vars {
		m[k] = v
	}
	return Env{
		Getenv: func(k string) string { return m[k] },
		Environ: func() []string {
			out := make([]string, 0, len(m))
			for k, v := range m {
				out = append(out, k+"="+v)
			}
			sort.Strings(out)
			return out
		},
		Stdin:    strings.NewReader(""),
		Unsetenv: func(k string) { delete(m, k) },
	}
}

// command is one subcommand: it returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"detect":      {"classify the platform, derive endpoints, emit the allowlist (an Actions step or standalone)", runDetect},
		"serve":       {"run the Copilot routing proxy in the foreground", runServe},
		"start":       {"start the proxy in the background and wait until it is ready (an Actions step)", runStart},
		"stop":        {"report the proxy's traffic, stop it (an Actions step)", runStop},
		"diagnose":    {"probe the live endpoints with the real token and explain the results", runDiagnose},
		"check-lock":  {"say whether a compiled gh-aw workflow (.lock.yml) reaches Copilot on this platform", runCheckLock},
		"fake-tenant": {"run the simulated GitHub + Copilot tenant (tests and the demo)", runFakeTenant},
		"demo":        {"run the whole flow locally against the simulated tenant (no credentials)", runDemo},
		"version":     {"print the version", runVersion},
	}
}

// Run is the whole program: it returns the exit code.
func Run(ctx context.Context, args []string, env Env, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		return runVersion(ctx, env, nil, stdout, stderr)
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "copilot-route: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, env, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: copilot-route COMMAND [flags]   (copilot-route COMMAND -h for its flags; --version)")
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, cmds[n].summary)
	}
}

func runVersion(_ context.Context, _ Env, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "copilot-route", Version)
	return 0
}
