module github.com/copilot-route/copilot-route

go 1.26.0

require (
	github.com/sethvargo/go-githubactions v1.4.0
	golang.org/x/oauth2 v0.38.0
)
