module github.com/copilot-route/copilot-route

go 1.26.0

require (
	github.com/google/go-github/v60 v60.0.0 // indirect
	github.com/sethvargo/go-githubactions v1.4.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
)
