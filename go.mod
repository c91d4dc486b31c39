module github.com/copilot-route/copilot-route

go 1.26.0

require (
	github.com/google/go-github/v60 v60.0.0
	github.com/sethvargo/go-githubactions v1.4.0
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/oauth2 v0.38.0
)

require github.com/google/go-querystring v1.1.0 // indirect
