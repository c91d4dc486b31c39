package cli

import (
	"context"
	"fmt"
	"io"
)

// runDetect is a placeholder until its issue lands.
func runDetect(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route detect: not built yet")
	return 2
}
