package cli

import (
	"context"
	"fmt"
	"io"
)

// runStart is a placeholder until its issue lands.
func runStart(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route start: not built yet")
	return 2
}
