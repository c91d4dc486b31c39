package cli

import (
	"context"
	"fmt"
	"io"
)

// runDiagnose is a placeholder until its issue lands.
func runDiagnose(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route diagnose: not built yet")
	return 2
}
