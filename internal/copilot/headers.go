package copilot

// Headers the Copilot API expects. It answers 400 without an integration id.
const (
	HeaderIntegrationID = "Copilot-Integration-Id"
	HeaderAPIVersion    = "X-GitHub-Api-Version"
	HeaderInteractionID = "X-Interaction-Id"
	HeaderRequestID     = "X-Request-Id"
	HeaderGitHubRequest = "X-Github-Request-Id" // set by GitHub on replies; quote it in errors

	DefaultIntegrationID = "copilot-developer-cli"
	// DefaultAPIVersion is the X-GitHub-Api-Version sent when the client sent none: what the pinned
	// Copilot CLI (1.0.102) sends, so a client without one sees the API as the CLI does.
	DefaultAPIVersion = "2026-08-01"
)
