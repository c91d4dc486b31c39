// Command copilot-route detects the GitHub platform of an Actions job, emits the egress allowlist
// a Copilot agent needs, and runs the credential-holding Copilot routing proxy.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/copilot-route/copilot-route/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.OSEnv(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
