package cli

import (
	"context"
	"fmt"
	"io"
)

// runDemo is a placeholder until its issue lands.
func runDemo(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route demo: not built yet")
	return 2
}
