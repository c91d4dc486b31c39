package diagnose_test

import "github.com/copilot-route/copilot-route/internal/copilot"

func copilotToken(s string) copilot.Token { return copilot.NewToken(s) }
