package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/faketenant"
)

// fakeTenantModes are the --mode presets: each edits the default (healthy) Behavior.
var fakeTenantModes = map[string]struct {
	about string
	apply func(*faketenant.Behavior)
}{
	"healthy": {"a tenant where everything works", func(*faketenant.Behavior) {}},
	// The bug report this project started from.
	"seed": {`the seed report: the exchange answers 403 for a fine-grained PAT and only "Authorization: token" is accepted (Bearer gets 400 badly formatted)`, func(b *faketenant.Behavior) {
		b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by personal access token"
		b.RequireScheme = "token"
	}},
	"no-seat": {"the user has no Copilot seat: user, exchange, models and completions answer 403", func(b *faketenant.Behavior) {
		b.UserStatus, b.ExchangeStatus, b.ModelsStatus = http.StatusForbidden, http.StatusForbidden, http.StatusForbidden
		b.ExchangeMessage = "Copilot is not enabled for this user"
		b.Status = map[string]int{"/chat/completions": 403, "/responses": 403, "/v1/messages": 403}
	}},
	"slow": {"first bytes after 300ms, stream chunks every 150ms", func(b *faketenant.Behavior) {
		b.FirstByteDelay, b.ChunkInterval = 300*time.Millisecond, 150*time.Millisecond
	}},
	"exchange-403": {"the token exchange answers 403 as on a GHE.com tenant for a fine-grained PAT", func(b *faketenant.Behavior) {
		b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by personal access token"
	}},
	"token-scheme":  {`only "Authorization: token X" is accepted; Bearer gets 400 badly formatted`, func(b *faketenant.Behavior) { b.RequireScheme = "token" }},
	"bearer-scheme": {`only "Authorization: Bearer X" is accepted; token gets 400 badly formatted`, func(b *faketenant.Behavior) { b.RequireScheme = "bearer" }},
	"rate-limited": {"completions answer 429 with Retry-After: 7", func(b *faketenant.Behavior) {
		b.Status = map[string]int{"/chat/completions": 429, "/responses": 429, "/v1/messages": 429}
		b.RetryAfter = "7"
	}},
	"models-400": {"/models answers 400 (the CLI's \"Failed to load models\")", func(b *faketenant.Behavior) { b.ModelsStatus = http.StatusBadRequest }},
	"reset":      {"streams are cut with a TCP reset after 3 chunks", func(b *faketenant.Behavior) { b.ResetAfterChunks = 3 }},
	"never-end": {"streams never end (a chunk every 100ms) until the client goes away", func(b *faketenant.Behavior) {
		b.NeverEnd, b.ChunkInterval = true, 100*time.Millisecond
	}},
	"foreign-endpoint": {"the user reply advertises a Copilot API outside the tenant (must be refused)", func(b *faketenant.Behavior) {
		b.AdvertisedAPI = "https://api.githubcopilot.com"
	}},
}

func fakeTenantModeNames() string {
	names := make([]string, 0, len(fakeTenantModes))
	for n := range fakeTenantModes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "|")
}

// runFakeTenant serves the simulated tenant until ctx ends (SIGINT/SIGTERM in the binary).
func runFakeTenant(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fake-tenant", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address` (loopback)")
	host := fs.String("host", "acme.ghe.com", "the tenant `host` it poses as (its certificate covers HOST and *.HOST)")
	caOut := fs.String("ca-out", "", "write the CA certificate (PEM) to `file`; default a temporary file removed at exit")
	readyFile := fs.String("ready-file", "", "write the JSON ready line to `file` once serving")
	tokenEnv := fs.String("token-env", "", "`name` of the environment variable holding the accepted token; unset → any token")
	mode := fs.String("mode", "healthy", "behaviour preset: "+fakeTenantModeNames())
	reply := fs.String("reply", "", "the assistant's reply `text` (default \""+faketenant.DefaultReplyText+"\")")
	logFile := fs.String("request-log", "", "append one JSON line per request to `file` (header names and a token hash, never a secret)")
	anyHost := fs.Bool("any-host", false, "present a certificate for any name a client asks for (to record what a client sends to every host when all names resolve here)")
	if code, ok := parseFlags(fs, args, stderr, "Serves a simulated GitHub + Copilot tenant over TLS and prints {\"url\",\"ca_file\",\"pid\"}."); !ok {
		return code
	}
	preset, ok := fakeTenantModes[*mode]
	if !ok {
		fmt.Fprintf(stderr, "fake-tenant: unknown --mode %q; use one of %s\n", *mode, fakeTenantModeNames())
		return 2
	}
	opts := faketenant.Options{Host: *host, Addr: *listen, AnyHost: *anyHost}
	if *tokenEnv != "" {
		opts.Token = strings.TrimSpace(env.Getenv(*tokenEnv))
		if opts.Token == "" {
			fmt.Fprintf(stderr, "fake-tenant: --token-env %s names an empty variable; export it or drop the flag to accept any token\n", *tokenEnv)
			return 2
		}
	}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "fake-tenant: open the request log: %v\n", err)
			return 1
		}
		defer f.Close()
		opts.RequestLog = f // the tenant writes each line under its own lock
	}
	t, err := faketenant.Start(opts)
	if err != nil {
		fmt.Fprintf(stderr, "fake-tenant: %v\n", err)
		return 1
	}
	defer t.Close()
	t.Set(func(b *faketenant.Behavior) {
		preset.apply(b)
		b.ReplyText = *reply
	})

	caFile := *caOut
	if caFile == "" {
		f, err := os.CreateTemp("", "copilot-route-fake-ca-*.pem")
		if err != nil {
			fmt.Fprintf(stderr, "fake-tenant: create a CA file: %v (pass --ca-out FILE)\n", err)
			return 1
		}
		caFile = f.Name()
		f.Close()
		defer os.Remove(caFile)
	}
	if abs, err := filepath.Abs(caFile); err == nil {
		caFile = abs
	}
	if err := t.WriteCA(caFile); err != nil {
		fmt.Fprintf(stderr, "fake-tenant: %v\n", err)
		return 1
	}
	line, _ := json.Marshal(struct {
		URL    string `json:"url"`
		CAFile string `json:"ca_file"`
		PID    int    `json:"pid"`
		Host   string `json:"host"`
		Mode   string `json:"mode"`
	}{t.URL(), caFile, os.Getpid(), t.Host(), *mode})
	if *readyFile != "" {
		if err := fakeTenantWriteReady(*readyFile, append(line, '\n')); err != nil {
			fmt.Fprintf(stderr, "fake-tenant: write the ready file: %v\n", err)
			return 1
		}
	}
	fmt.Fprintln(stdout, string(line))
	<-ctx.Done()
	return 0
}

// fakeTenantWriteReady writes via a rename so a reader polling for the file never sees half of it.
func fakeTenantWriteReady(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
