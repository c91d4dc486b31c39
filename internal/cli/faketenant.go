package cli

import (
	"context"
	"fmt"
	"io"
)

// runFakeTenant is a placeholder until its issue lands.
func runFakeTenant(_ context.Context, _ Env, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "copilot-route fake-tenant: not built yet")
	return 2
}
