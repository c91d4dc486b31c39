package copilot

// Headers the Copilot API expects. It answers 400 without an integration id.
const (
	HeaderIntegrationID = "Copilot-Integration-Id"
	HeaderAPIVersion    = "X-GitHub-Api-Version"
	HeaderInteractionID = "X-Interaction-Id"
	HeaderRequestID     = "X-Request-Id"
	HeaderGitHubRequest = "X-Github-Request-Id" // set by GitHub on replies; quote it in errors

	DefaultIntegrationID = "copilot-developer-cli"
	// DefaultAPIVersion is the X-GitHub-Api-Version sent when the client sent none.
	DefaultAPIVersion = "2025-05-01"
)
