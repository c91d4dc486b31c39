package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Every command answers -h with its own usage on stderr and exit 0, and a bad flag with exit 2;
// --version prints the version.
func TestUsageAndExitCodes(t *testing.T) {
	t.Parallel()
	for name := range commands() {
		if name == "version" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			if code := Run(context.Background(), []string{name, "-h"}, MapEnv(nil), &out, &errb); code != 0 {
				t.Errorf("%s -h: exit %d, want 0\n%s", name, code, errb.String())
			}
			if !strings.HasPrefix(errb.String(), "usage: copilot-route "+name+" [flags]") {
				t.Errorf("%s -h: stderr does not start with our usage line:\n%s", name, errb.String())
			}
			errb.Reset()
			if code := Run(context.Background(), []string{name, "--no-such-flag"}, MapEnv(nil), &out, &errb); code != 2 {
				t.Errorf("%s --no-such-flag: exit %d, want 2", name, code)
			}
			if out.Len() != 0 {
				t.Errorf("%s: usage or flag errors on stdout: %q", name, out.String())
			}
		})
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), args, MapEnv(nil), &out, &errb); code != 0 || out.String() != "copilot-route "+Version+"\n" {
			t.Errorf("%q: exit %d, stdout %q", args, code, out.String())
		}
	}
}
