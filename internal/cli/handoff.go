package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/daemon"
)

// serveSecrets is what start hands serve on an inherited pipe (serve --secrets-fd): one JSON
// object, read once at start-up. Start's path never puts a token in serve's environment or argv,
// which /proc shows for the process's whole life.
type serveSecrets struct {
	GitHubToken string `json:"github_token"`
	ClientToken string `json:"client_token,omitempty"` // empty: serve generates one
}

// secretsFD is where start puts the pipe: the first descriptor after stdin, stdout and stderr.
const secretsFD = 3

const (
	secretsMaxBytes = 64 << 10
	// secretsWait bounds the wait for the writer to close the pipe. start closes it before serve
	// even exists; a writer that keeps it open gets a refusal instead of a proxy that never starts.
	secretsWait = 5 * time.Second
)

// readServeSecrets reads and closes the pipe on fd. Its errors never quote what the pipe held.
func readServeSecrets(fd int) (serveSecrets, error) {
	var s serveSecrets
	if fd == 1 || fd == 2 {
		return s, fmt.Errorf("--secrets-fd %d is serve's own output: pass the pipe on fd 0 or 3 and up", fd)
	}
	data, err := daemon.ReadHandoff(fd, secretsMaxBytes, secretsWait)
	if err != nil {
		return s, fmt.Errorf("--secrets-fd %d: %w", fd, err)
	}
	defer clear(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(&s)
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if err != nil {
		return serveSecrets{}, fmt.Errorf("--secrets-fd %d holds %d bytes that are %s: it takes one JSON object "+
			`{"github_token":"…","client_token":"…"} (client_token optional), which copilot-route start writes`, fd, len(data), secretsProblem(err))
	}
	return s, nil
}

// secretsProblem says what is wrong with the pipe's content in words of our own: encoding/json's
// messages may quote a character or a field name from it.
func secretsProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not JSON (syntax error at byte %d)", syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return typ.Field + " that is not a string"
	case errors.As(err, &typ):
		return "not a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "cut short (incomplete JSON)"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "an object with a field other than github_token and client_token"
	case err.Error() == "trailing data":
		return "followed by more data after the object"
	}
	return "not the JSON serve takes"
}

// clearTokenEnv removes every variable that may hold a token from serve's environment, so that
// nothing it might start or read later finds one, and returns the names that were set. It cannot
// clear /proc/PID/environ: that shows the block the process was started with, which os.Unsetenv
// and os.Clearenv leave as it was. Only never putting a token there (start's --secrets-fd) helps.
func clearTokenEnv(env Env, names ...string) []string {
	var set []string
	for _, n := range names {
		if n == "" || env.Getenv(n) == "" {
			continue
		}
		set = append(set, n)
		if env.Unsetenv != nil {
			env.Unsetenv(n)
		}
	}
	return set
}
