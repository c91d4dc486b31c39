package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/daemon"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/proxy"
	"github.com/copilot-route/copilot-route/internal/summary"
)

// Env var names: start reads the real token from the first when the input is unset; serve run by
// hand reads both. start hands them to serve on a pipe instead (handoff.go): an environment
// stays readable in /proc/PID/environ, argv in /proc/PID/cmdline, for the process's whole life.
const (
	envRealToken   = "COPILOT_GITHUB_TOKEN"
	envClientToken = "COPILOT_ROUTE_CLIENT_TOKEN"
)

// DefaultProxyPort is where the proxy listens when proxy-host is set and listen is not: a port
// fixed in advance, so an awf command line can name it (--allow-host-ports). Below the Linux
// ephemeral range (32768–60999), so no outgoing connection of the runner holds it.
const DefaultProxyPort = 8790

// listenAddr is the address serve listens on: the listen input when given; with proxy-host (the
// agent is in a container and reaches the runner over a bridge) every interface on
// DefaultProxyPort; else loopback on a free port.
func listenAddr(listen, proxyHost string) string {
	switch {
	case strings.TrimSpace(listen) != "":
		return strings.TrimSpace(listen)
	case proxyHost != "":
		return "0.0.0.0:" + strconv.Itoa(DefaultProxyPort)
	}
	return "127.0.0.1:0"
}

// proxyState is what start leaves for stop, in a 0600 file under RUNNER_TEMP. It holds the client
// token (stop's fallback for reading the stats over TCP), never the real one.
type proxyState struct {
	PID      int    `json:"pid"`
	Identity string `json:"identity"`
	URL      string `json:"url"`       // where the proxy listens, as it reported
	ProxyURL string `json:"proxy_url"` // what the agent was told (proxy-host applied)
	// ControlSocket answers health and stats with no client token and no share of the TCP
	// listener's connections; empty in a state written by an older start.
	ControlSocket string    `json:"control_socket,omitempty"`
	ClientToken   string    `json:"client_token"`
	LogFile       string    `json:"log_file"`
	StartedAt     time.Time `json:"started_at"`
	ReadyMS       float64   `json:"ready_ms"`
}

func (s proxyState) handle() daemon.Handle { return daemon.Handle{PID: s.PID, Identity: s.Identity} }

// stateDir is where start keeps its files: RUNNER_TEMP is per job and emptied after it.
func stateDir(env Env) string {
	base := env.Getenv("RUNNER_TEMP")
	if base == "" {
		base = os.TempDir()
	}
	return filepath.Join(base, "copilot-route")
}

// startConfig is everything start reads, from flags or (in a step) INPUT_* variables.
type startConfig struct {
	listen, proxyHost, stateDir, caFile    string
	authScheme, integrationID, serveBinary string
	timeout                                time.Duration
	maxConns                               int
}

func runStart(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	t0 := time.Now()
	a := actions.New(env.Getenv, stdout)
	// Mask before anything else can print: the real token in every form, then the client token.
	// Only in Actions: in a terminal an ::add-mask:: line would print the very secret it hides.
	raw := firstSet(inputOr(a, "github-token", ""), env.Getenv(envRealToken))
	realTok := copilot.NewToken(raw)
	// ghs_-shaped: the Copilot CLI sends such a token straight to COPILOT_API_URL, with no REST
	// look-ups elsewhere, so all of its Copilot traffic comes to the proxy.
	client := proxy.NewClientToken().Reveal()
	if inActions(a) {
		for _, f := range copilot.MaskForms(raw) {
			a.Mask(f)
		}
		a.Mask(client)
	}

	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	var c startConfig
	fs.StringVar(&c.listen, "listen", inputOr(a, "listen", ""), "address the proxy listens on (input listen; default 0.0.0.0:"+strconv.Itoa(DefaultProxyPort)+" with --proxy-host, else 127.0.0.1:0)")
	fs.StringVar(&c.proxyHost, "proxy-host", inputOr(a, "proxy-host", ""), "host the agent reaches the proxy at, e.g. host.docker.internal (input proxy-host)")
	fs.StringVar(&c.stateDir, "state-dir", stateDir(env), "directory for the state, ready and log files")
	fs.StringVar(&c.caFile, "ca-file", inputOr(a, "ca-file", ""), "extra PEM CA bundle the proxy trusts for upstreams (input ca-file)")
	fs.StringVar(&c.authScheme, "auth-scheme", inputOr(a, "auth-scheme", ""), "Authorization scheme upstream (passed to serve)")
	fs.StringVar(&c.integrationID, "integration-id", inputOr(a, "integration-id", ""), "Copilot-Integration-Id for clients that send none (passed to serve)")
	fs.DurationVar(&c.timeout, "timeout", daemon.DefaultReadyTimeout, "how long to wait for the proxy to be ready")
	fs.StringVar(&c.serveBinary, "serve-binary", "", "the copilot-route binary to run serve with (default: this program)")
	fs.IntVar(&c.maxConns, "max-conns", 0, "most client connections the proxy keeps open (passed to serve; 0: serve's default)")
	var allowRouteFlags multiFlag
	fs.Var(&allowRouteFlags, "allow-route", "'METHOD /path' or 'METHOD /prefix/*' passed to serve (repeatable; input allow-routes, one per line)")
	govFlags := addGovernanceFlags(fs)
	var resolve multiFlag
	fs.Var(&resolve, "resolve", "HOST:PORT:ADDR passed to serve --resolve (repeatable; tests and demos; also env COPILOT_ROUTE_RESOLVE, space-separated)")
	var extraDomains string
	fs.StringVar(&extraDomains, "extra-domains", inputOr(a, "extra-domains", ""), "the agent's extra domains, for awf-args (input extra-domains)")
	if code, ok := parseFlags(fs, args, stderr, "Starts copilot-route serve in the background (its own session, output to the log file), waits until it\n"+
		"answers its health check, and writes the outputs proxy-url, client-token, proxy-pid, log-file, agent-env\n"+
		"and awf-args (or, outside Actions, prints the agent's environment). The token comes from INPUT_GITHUB_TOKEN\n"+
		"or COPILOT_GITHUB_TOKEN, never a flag."); !ok {
		return code
	}
	c.listen = listenAddr(c.listen, c.proxyHost)
	if on, _, err := a.InputBool("start-proxy"); err != nil {
		return stepFail(a, stderr, (&platform.InputError{Input: "start-proxy", Value: platform.Quote(a.Input("start-proxy")),
			Problem: err.Error(), Example: "true"}).Error())
	} else if !on && a.Input("start-proxy") != "" {
		fmt.Fprintln(stderr, "copilot-route: start-proxy is false; no proxy started")
		return 0
	}
	// The same reading of inputs and runner variables as detect, so both steps see one platform.
	in, _, err := detectInput(env, func(name string) string { return a.Input(name) })
	if err != nil {
		return stepFail(a, stderr, err.Error())
	}

	if realTok.IsZero() {
		return stepFail(a, stderr, "no GitHub token for the proxy: set the action input github-token "+
			"(e.g. github-token: ${{ secrets.COPILOT_GITHUB_TOKEN }}) or the environment variable COPILOT_GITHUB_TOKEN, "+
			"or set start-proxy: false if you only need the allowlist")
	}
	ep, err := platform.Detect(in)
	if err != nil {
		return stepFail(a, stderr, err.Error())
	}
	var agent allowlist.Agent
	if c.proxyHost != "" {
		if err := checkProxyHost(c.proxyHost); err != nil {
			return stepFail(a, stderr, err.Error())
		}
		if agent, err = allowlist.ForAgent(ep, allowlist.Options{ProxyHost: c.proxyHost, ExtraDomains: extraDomains}); err != nil {
			return stepFail(a, stderr, err.Error())
		}
		if loopbackListen(c.listen) {
			warn(a, stderr, "copilot-route: proxy-host with a loopback listen",
				fmt.Sprintf("proxy-host is %s but the proxy listens on %s, which an agent in a container cannot reach. "+
					"Drop the listen input (with proxy-host the proxy listens on 0.0.0.0:%d) or set listen: 0.0.0.0:PORT.",
					c.proxyHost, c.listen, DefaultProxyPort))
		}
	}
	allowRoutes, err := readAllowRoutes(a.Input("allow-routes"), allowRouteFlags)
	if err != nil {
		return stepFail(a, stderr, err.Error())
	}
	gov, err := govFlags.read(a.Input)
	if err != nil {
		return stepFail(a, stderr, err.Error())
	}

	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return stepFail(a, stderr, fmt.Sprintf("create %s: %v (set RUNNER_TEMP or --state-dir to a writable directory)", c.stateDir, err))
	}
	// Private whatever made it: the control socket in it answers anyone who can reach it.
	if err := os.Chmod(c.stateDir, 0o700); err != nil {
		return stepFail(a, stderr, fmt.Sprintf("make %s private (mode 0700): %v (set RUNNER_TEMP or --state-dir to a directory of your own)", c.stateDir, err))
	}
	statePath := filepath.Join(c.stateDir, "proxy.json")
	if old, err := readState(statePath); err == nil && daemon.Alive(old.handle()) {
		return stepFail(a, stderr, fmt.Sprintf("a proxy started earlier in this job still runs (pid %d, %s): "+
			"run the stop action before starting another one", old.PID, old.URL))
	}
	exe := c.serveBinary
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return stepFail(a, stderr, "find this program's path to start the proxy: "+err.Error())
		}
	}
	logFile := filepath.Join(c.stateDir, "proxy.log")
	readyFile := filepath.Join(c.stateDir, "ready.json")
	serveArgs := []string{"serve", "--listen", c.listen, "--ready-file", readyFile, "--secrets-fd", strconv.Itoa(secretsFD)}
	sock := filepath.Join(c.stateDir, controlSocketName)
	if !socketPathFits(sock) {
		warn(a, stderr, "copilot-route", fmt.Sprintf("the state directory's path is too long for a unix socket (%d bytes > %d): "+
			"the proxy runs without its control socket, so stop reads its figures over TCP, where an agent holding every connection can starve it",
			len(sock), maxSocketPath))
		sock = ""
	} else {
		serveArgs = append(serveArgs, "--control-socket", sock)
	}
	for _, f := range [][2]string{
		{"--server-url", in.ServerURL}, {"--api-url", in.APIURL}, {"--copilot-host", in.CopilotHost},
		{"--copilot-api-target", in.CopilotAPITarget}, {"--platform", in.Platform}, {"--ca-file", c.caFile},
		{"--auth-scheme", c.authScheme}, {"--integration-id", c.integrationID},
	} {
		if f[1] != "" {
			serveArgs = append(serveArgs, f[0], f[1])
		}
	}
	for _, r := range allowRoutes {
		serveArgs = append(serveArgs, "--allow-route", r)
	}
	if c.maxConns > 0 {
		serveArgs = append(serveArgs, "--max-conns", strconv.Itoa(c.maxConns))
	}
	serveArgs = append(serveArgs, gov.serveArgs()...)
	for _, r := range append(strings.Fields(env.Getenv("COPILOT_ROUTE_RESOLVE")), resolve...) {
		serveArgs = append(serveArgs, "--resolve", r)
	}
	// The tokens go on a pipe that serve reads once at start-up; its environment holds none.
	secrets, err := json.Marshal(serveSecrets{GitHubToken: realTok.Reveal(), ClientToken: client})
	if err != nil {
		return stepFail(a, stderr, "encode the proxy's secrets: "+err.Error())
	}
	pipe, err := daemon.HandoffPipe(secrets)
	clear(secrets)
	if err != nil {
		return stepFail(a, stderr, "hand the tokens to the proxy: "+err.Error())
	}
	defer pipe.Close()
	childEnv := append(passThroughEnv(env),
		// A soft memory limit: the collector works harder only near it, so idle and ordinary
		// loads pay nothing, and 1,000 open streams stay at ~60 MiB RSS instead of ~72
		// (docs/performance.md). A GOMEMLIMIT in the runner's environment wins.
		"GOMEMLIMIT="+firstSet(env.Getenv("GOMEMLIMIT"), "48MiB"),
	)

	var ready readyInfo
	started, err := daemon.Start(ctx, daemon.Options{
		Path: exe, Args: serveArgs, Env: childEnv, ExtraFiles: []*os.File{pipe},
		LogFile: logFile, ReadyFile: readyFile, Timeout: c.timeout,
		Ready: func(ctx context.Context, data []byte) error {
			r, err := parseReady(data)
			if err != nil {
				return err
			}
			// Both doors: the control socket stop reads from, and the agent's TCP listener.
			if sock != "" {
				if err := checkHealth(ctx, controlClient(sock), controlBase); err != nil {
					return fmt.Errorf("control socket: %w", err)
				}
			}
			if err := checkHealth(ctx, loopbackClient, r.URL); err != nil {
				return err
			}
			ready = r
			return nil
		},
	})
	if err != nil {
		var se *daemon.StartError
		if errors.As(err, &se) {
			printLogTail(stderr, logFile, se.LogTail)
			return stepFail(a, stderr, "the proxy did not start: "+se.Reason+" (log: "+logFile+")")
		}
		return stepFail(a, stderr, "the proxy did not start: "+err.Error())
	}
	readyMS := float64(time.Since(t0).Microseconds()) / 1000

	proxyURL, awfArgs := ready.URL, ""
	if c.proxyHost != "" {
		u, _ := url.Parse(ready.URL)
		proxyURL = "http://" + net.JoinHostPort(strings.Trim(c.proxyHost, "[]"), u.Port())
		port, _ := strconv.Atoi(u.Port())
		awfArgs = agent.AWFArgs(port)
	}
	state := proxyState{
		PID: started.PID, Identity: started.Identity, URL: ready.URL, ProxyURL: proxyURL,
		ControlSocket: sock, ClientToken: client, LogFile: logFile, StartedAt: t0.UTC(), ReadyMS: readyMS,
	}
	if err := writeState(statePath, state); err != nil {
		_, _ = daemon.Stop(context.Background(), started.Handle, 2*time.Second)
		return stepFail(a, stderr, fmt.Sprintf("write the state file %s: %v", statePath, err))
	}

	if a.InStep() {
		b := a.Stage()
		b.Output("proxy-url", proxyURL)
		b.Output("client-token", client)
		b.Output("proxy-pid", strconv.Itoa(started.PID))
		b.Output("log-file", logFile)
		b.OutputLines("agent-env", strings.TrimSuffix(agentEnv(ep, proxyURL, client), "\n"))
		if awfArgs != "" {
			b.Output("awf-args", awfArgs)
		}
		if a.Getenv(actions.FileSummary) != "" {
			b.Summary(summary.ProxyLine(proxyURL))
		}
		if err := b.Commit(); err != nil {
			_, _ = daemon.Stop(context.Background(), started.Handle, 2*time.Second)
			_ = os.Remove(statePath)
			return stepFail(a, stderr, "write the step outputs: "+err.Error())
		}
	} else {
		// Outside Actions there is no output file: print what an agent needs.
		fmt.Fprint(stdout, agentEnv(ep, proxyURL, client))
	}
	fmt.Fprintf(stderr, "copilot-route: proxy ready at %s (pid %d) in %.1f ms; log %s\n", ready.URL, started.PID, readyMS, logFile)
	return 0
}

// readAllowRoutes reads the input allow-routes (one route per line; '#' starts a comment) and the
// --allow-route flags, each checked before serve starts.
func readAllowRoutes(input string, flags []string) ([]string, error) {
	var out []string
	for _, l := range strings.Split(input, "\n") {
		if i := strings.Index(l, "#"); i >= 0 {
			l = l[:i]
		}
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	out = append(out, flags...)
	for _, r := range out {
		if err := proxy.ValidateAllowRoute(r); err != nil {
			return nil, &platform.InputError{Input: "allow-routes", Value: platform.Quote(r),
				Problem: strings.TrimPrefix(err.Error(), fmt.Sprintf("allow-route %q: ", r)),
				Example: "GET /copilot_internal/content_exclusions"}
		}
	}
	return out, nil
}

// readyInfo is the line serve prints and writes to its ready file.
type readyInfo struct {
	URL string `json:"url"`
	PID int    `json:"pid"`
}

func parseReady(data []byte) (readyInfo, error) {
	var r readyInfo
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("ready file is not the JSON serve writes: %w", err)
	}
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return r, fmt.Errorf("ready file has no http URL with a port: %q", r.URL)
	}
	return r, nil
}

// checkHealth asks the proxy's unauthenticated health route: a listening socket is not enough,
// the handler must answer.
func checkHealth(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+proxy.HealthPath, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check answered %s", resp.Status)
	}
	return nil
}

// loopbackClient talks to our own proxy: never through an HTTP(S)_PROXY from the environment.
var loopbackClient = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}

// agentEnv is the KEY=VALUE lines that keep a sandboxed Copilot CLI on the proxy (recorded with
// the real CLI in an awf-shaped sandbox, scripts/e2e-awf.sh): COPILOT_API_URL for the Copilot API;
// COPILOT_DEBUG_GITHUB_API_URL for the REST look-ups (/copilot_internal/managed_settings and
// friends), which 1.0.83 and 1.0.85 send to the tenant's REST host even with a ghs_ token, and
// 1.0.43 its /copilot/mcp_registry; the ghs_-shaped client token, with which the CLI skips the
// /copilot_internal/user look-up. GH_HOST makes the CLI treat the job's server as its GitHub host
// (unset on github.com, where it is the default); COPILOT_GH_HOST names the licensing host when
// that differs (GHES), as detect's export-env does.
func agentEnv(ep platform.Endpoints, proxyURL, client string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "COPILOT_API_URL=%s\n", proxyURL)
	fmt.Fprintf(&b, "COPILOT_DEBUG_GITHUB_API_URL=%s\n", proxyURL)
	fmt.Fprintf(&b, "COPILOT_GITHUB_TOKEN=%s\n", client)
	if ep.GHHost != "" {
		fmt.Fprintf(&b, "GH_HOST=%s\n", ep.GHHost)
	}
	if ep.GHHost != "" && ep.CopilotHost != "" && ep.CopilotHost != ep.GHHost {
		fmt.Fprintf(&b, "COPILOT_GH_HOST=%s\n", ep.CopilotHost)
	}
	return b.String()
}

// checkProxyHost accepts a host name or IP literal (no scheme, port or path): it becomes part of
// a URL the agent is given.
func checkProxyHost(h string) error {
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
		return nil
	}
	if len(h) > 0 && len(h) <= 253 && strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == "" &&
		!strings.HasPrefix(h, ".") && !strings.HasPrefix(h, "-") {
		return nil
	}
	return &platform.InputError{Input: "proxy-host", Value: platform.Quote(h),
		Problem: "give a bare host name or IP address (no scheme, port or path)", Example: "host.docker.internal"}
}

// passThroughEnv is the part of our environment the proxy may see: what the runner needs to
// track and end it, and what the TLS and proxy settings of the machine say. Everything else, in
// particular every other secret of the job, stays out.
func passThroughEnv(env Env) []string {
	var out []string
	for _, k := range []string{
		"PATH", "HOME", "TMPDIR", "TZ", "LANG",
		"RUNNER_TRACKING_ID", "RUNNER_TEMP", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT",
		"SSL_CERT_FILE", "SSL_CERT_DIR",
		"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
		"GODEBUG",
	} {
		if v := env.Getenv(k); v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func readState(path string) (proxyState, error) {
	var s proxyState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("state file %s is damaged: %w", path, err)
	}
	return s, nil
}

// writeState writes the state atomically with mode 0600 (it holds the client token).
func writeState(path string, s proxyState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".proxy-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// printLogTail shows the proxy's last log lines, each behind "| " so that no line of it (it may
// quote request data) can act as a workflow command.
func printLogTail(w io.Writer, path, tail string) {
	if strings.TrimSpace(tail) == "" {
		fmt.Fprintf(w, "copilot-route: the proxy's log %s is empty\n", path)
		return
	}
	fmt.Fprintf(w, "copilot-route: the end of the proxy's log %s:\n", path)
	for _, l := range strings.Split(tail, "\n") {
		fmt.Fprintf(w, "  | %s\n", l)
	}
}

// inputOr reads an action input (INPUT_<NAME>, which the composite action sets on each step) or
// returns def when it is empty.
func inputOr(a *actions.Actions, name, def string) string {
	if v := a.Input(name); v != "" {
		return v
	}
	return def
}

// stepFail reports a failure: in Actions an error annotation (one line, escaped), elsewhere a
// line on stderr; exit code 1.
func stepFail(a *actions.Actions, stderr io.Writer, msg string) int {
	if inActions(a) {
		a.Error("copilot-route", msg)
	} else {
		fmt.Fprintln(stderr, "copilot-route:", msg)
	}
	return 1
}

// inActions says whether workflow commands (masks, annotations) have a runner to read them.
func inActions(a *actions.Actions) bool {
	return a.InStep() || a.Getenv("GITHUB_ACTIONS") == "true"
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func firstSet(vs ...string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
