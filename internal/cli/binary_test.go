package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets this test binary stand in for copilot-route itself. `start` launches the proxy by
// re-executing its own binary (os.Executable) as `serve ...`; in tests that binary is this one, so
// when its first argument is a subcommand it runs the CLI instead of the tests. Tests of start,
// stop and demo therefore exercise a real, separate, detached proxy process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, os.Args[1:], OSEnv(), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	code := m.Run()
	removeCompiledLocks()
	os.Exit(code)
}
