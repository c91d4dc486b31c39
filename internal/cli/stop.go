package cli

import (
	"context"
	"fmt"
	"io"
)

// runStop is a placeholder until its issue lands.
func runStop(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route stop: not built yet")
	return 2
}
