package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// parseFlags parses a subcommand's flags the same way for every command: -h prints about and
// the flags (exit 0), a bad flag or a stray argument exits 2. ok is false when the command
// should return code at once.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, about string) (code int, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: copilot-route %s [flags]\n\n%s\n", fs.Name(), about)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "copilot-route %s: unexpected argument %s\n", fs.Name(), platform.Quote(fs.Arg(0)))
		return 2, false
	}
	return 0, true
}

// inputFlags are flags that mirror action inputs: a flag given on the command line wins over the
// input's INPUT_* variable.
type inputFlags struct {
	fs   *flag.FlagSet
	vals map[string]*string
}

func addInputFlags(fs *flag.FlagSet, inputs []struct{ name, usage string }, envName func(string) string) inputFlags {
	f := inputFlags{fs: fs, vals: map[string]*string{}}
	for _, in := range inputs {
		usage := in.usage
		if envName != nil {
			usage += " [env " + envName(in.name) + "]"
		}
		f.vals[in.name] = fs.String(in.name, "", usage)
	}
	return f
}

// given returns the flag's value when it was set on the command line.
func (f inputFlags) given(name string) (string, bool) {
	p, ok := f.vals[name]
	if !ok {
		return "", false
	}
	set := false
	f.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return strings.TrimSpace(*p), set
}

// or returns the flag's value when set, else fallback(name).
func (f inputFlags) or(fallback func(string) string) func(string) string {
	return func(name string) string {
		if v, ok := f.given(name); ok {
			return v
		}
		if fallback == nil {
			return ""
		}
		return fallback(name)
	}
}

// pickInputs returns the named inputs, in that order.
func pickInputs(inputs []struct{ name, usage string }, names ...string) []struct{ name, usage string } {
	out := make([]struct{ name, usage string }, 0, len(names))
	for _, n := range names {
		for _, in := range inputs {
			if in.name == n {
				out = append(out, in)
			}
		}
	}
	return out
}
