package cli

import (
	"context"
	"fmt"
	"io"
)

// runServe is a placeholder until its issue lands.
func runServe(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route serve: not built yet")
	return 2
}
