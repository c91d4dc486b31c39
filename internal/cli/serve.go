package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/daemon"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

// serveReady is the line serve prints on stdout once it listens, and the content of its ready
// file. ClientToken is set only in the ready file (mode 0600), and only when serve generated the
// token: stdout may be a shared log.
type serveReady struct {
	URL         string `json:"url"`
	PID         int    `json:"pid"`
	ClientToken string `json:"client_token,omitempty"`
}

// resolveFlag collects --resolve HOST:PORT:ADDR[:PORT2] values.
type resolveFlag map[string]string

func (r resolveFlag) String() string { return "" }

func (r resolveFlag) Set(v string) error {
	host, rest, ok1 := strings.Cut(v, ":")
	port, addr, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || host == "" || port == "" || addr == "" {
		return fmt.Errorf("want HOST:PORT:ADDR (like curl --resolve), e.g. copilot-api.acme.ghe.com:443:127.0.0.1:8443")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), port)
	}
	r[strings.ToLower(host)+":"+port] = addr
	return nil
}

// runServe runs the routing proxy in the foreground until SIGTERM/SIGINT (ctx), then shuts down
// gracefully and exits 0.
func runServe(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (port 0: a free port)")
	flags := addInputFlags(fs, pickInputs(detectInputs, "server-url", "api-url", "copilot-host", "copilot-api-target", "platform"), nil)
	caFile := fs.String("ca-file", "", "PEM file of extra roots for upstream TLS (TLS-inspecting proxies, tests)")
	authScheme := fs.String("auth-scheme", proxy.SchemeAuto, "Authorization scheme upstream: auto (Bearer, switching to token on a \"badly formatted\" reply), bearer or token")
	integrationID := fs.String("integration-id", copilot.DefaultIntegrationID, "Copilot-Integration-Id for clients that send none")
	logFile := fs.String("log-file", "", "file for the JSON log, one line per request (default: stderr)")
	readyFile := fs.String("ready-file", "", "file to write {\"url\",\"pid\"} to once listening (written whole, mode 0600)")
	tokenEnv := fs.String("token-env", envRealToken, "environment variable holding the real GitHub token (not with --secrets-fd)")
	secretsFDFlag := fs.Int("secrets-fd", -1, "read the tokens from this inherited descriptor, not the environment: a pipe holding "+
		"{\"github_token\":…,\"client_token\":…} (client_token optional), read once and closed; start passes 3")
	controlSocket := fs.String("control-socket", "", "also answer GET "+proxy.HealthPath+" and "+proxy.StatsPath+
		" on a unix socket at this path, with no client token: mode 0600, in a directory of mode 0700")
	headerTimeout := fs.Duration("response-header-timeout", proxy.DefaultResponseHeaderTimeout, "longest wait for an upstream's response headers")
	grace := fs.Duration("shutdown-grace", proxy.DefaultShutdownGrace, "on SIGTERM, how long open streams may finish")
	resolve := resolveFlag{}
	fs.Var(resolve, "resolve", "HOST:PORT:ADDR[:PORT]: dial ADDR for HOST:PORT (repeatable; for tests and demos)")
	var allowRoutes multiFlag
	fs.Var(&allowRoutes, "allow-route", "'METHOD /path' or 'METHOD /prefix/*': forward this route too (repeatable); the default policy forwards only the routes Copilot clients use")
	maxConns := fs.Int("max-conns", proxy.DefaultMaxConns, "most client connections open at once; at the cap the longest-idle one is closed for a new one")
	govFlags := addGovernanceFlags(fs)
	if code, ok := parseFlags(fs, args, stderr, "Runs the Copilot routing proxy. The real token comes from COPILOT_GITHUB_TOKEN (or --token-env),\n"+
		"the client token from COPILOT_ROUTE_CLIENT_TOKEN (generated when unset, then written only to --ready-file);\n"+
		"with --secrets-fd both come from a pipe instead, and the environment is not read for them.\n"+
		"Prints {\"url\":...,\"pid\":...} on stdout once listening; SIGTERM stops it gracefully.\n"+
		"It forwards only these routes (--allow-route adds more; everything else gets 403):\n  "+
		strings.Join(proxy.DefaultRoutes(), "\n  ")+"\n"+
		"Inference requests (the first three) are checked against --allowed-models/--blocked-models and the budgets\n"+
		"(--max-requests, --max-premium-requests, --max-tokens) before they are forwarded; refused ones get 403."); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "copilot-route serve: "+format+"\n", a...)
		return 1
	}

	// Before any secret is read: no other process of our user may read our memory or /proc files.
	var sealErr error
	if env.Seal != nil {
		sealErr = env.Seal()
	}

	// Credentials: from a pipe (start) or the environment (by hand), never argv, which every user
	// of the machine can read. Either way no token variable stays in our environment.
	var realRaw, clientRaw, tokenSource, clientSource string
	if *secretsFDFlag >= 0 {
		if flagGiven(fs, "token-env") {
			return fail("--token-env and --secrets-fd both given: the tokens come from one place; drop --token-env")
		}
		s, err := readServeSecrets(*secretsFDFlag)
		if err != nil {
			return fail("%v", err)
		}
		realRaw, clientRaw = s.GitHubToken, s.ClientToken
		tokenSource = fmt.Sprintf("github_token on --secrets-fd %d", *secretsFDFlag)
		clientSource = fmt.Sprintf("client_token on --secrets-fd %d", *secretsFDFlag)
	} else {
		if *tokenEnv == "" {
			return fail("--token-env is empty: name the environment variable that holds the GitHub token")
		}
		realRaw, clientRaw = env.Getenv(*tokenEnv), env.Getenv(envClientToken)
		tokenSource, clientSource = *tokenEnv, "env "+envClientToken
	}
	unusedTokenVars := clearTokenEnv(env, *tokenEnv, envRealToken, envClientToken)
	if *secretsFDFlag < 0 {
		unusedTokenVars = nil // they were the source
	}
	realTok := copilot.NewToken(realRaw)
	if realTok.IsZero() {
		return fail("no GitHub token: set %s to a token with Copilot access (a gho_/ghu_ token, a fine-grained PAT with the Copilot Requests permission, or the job's GITHUB_TOKEN with copilot-requests: write)", tokenSource)
	}
	clientRaw = copilot.Normalize(clientRaw)
	generated := clientRaw == ""
	client := copilot.NewToken(clientRaw)
	if generated {
		client = proxy.NewClientToken()
		if *readyFile == "" {
			return fail("no client token (%s) and no --ready-file: a generated client token is reported only in the ready file; set one of them", clientSource)
		}
	}
	if client.Reveal() == realTok.Reveal() {
		return fail("the client token (%s) equals the GitHub token: it must be a different value, the agent must never hold the real one", clientSource)
	}

	gov, err := govFlags.read(nil)
	if err != nil {
		return fail("%v", err)
	}
	in, _, err := detectInput(env, flags.or(nil))
	if err != nil {
		return fail("%v", err)
	}
	ep, err := platform.Detect(in)
	if err != nil {
		return fail("%v", err)
	}

	var roots *x509.CertPool
	if *caFile != "" {
		if roots, err = loadRoots(*caFile); err != nil {
			return fail("%v", err)
		}
	}

	logOut := stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fail("open the log file: %v (pass a writable --log-file)", err)
		}
		defer f.Close()
		lw := newLineWriter(f)
		defer lw.Close() // before f.Close: the queued lines reach the file
		logOut = lw
	}
	logger := slog.New(slog.NewJSONHandler(logOut, nil))

	// Off loopback (e.g. for an agent container reaching the host) the client token is all that
	// guards the real credential: refuse a guessable one before binding anything.
	if !loopbackListen(*listen) && len(client.Reveal()) < 20 {
		return fail("listening on %s, off loopback, needs a client token (%s) of 20 characters or more (or none, to have one generated)", platform.Quote(*listen), clientSource)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail("listen on %s: %v (pick a free address, e.g. 127.0.0.1:0)", platform.Quote(*listen), err)
	}
	defer ln.Close()
	var ctl net.Listener
	if *controlSocket != "" {
		if ctl, err = listenControl(*controlSocket); err != nil {
			return fail("%v", err)
		}
		defer ctl.Close() // removes the socket file
	}

	interaction := ""
	if id := env.Getenv("GITHUB_RUN_ID"); id != "" {
		interaction = id + "-" + firstSet(env.Getenv("GITHUB_RUN_ATTEMPT"), "1")
	}
	cfg := proxy.Config{
		Endpoints:             ep,
		ExplicitTarget:        in.CopilotAPITarget != "",
		Token:                 realTok,
		ClientToken:           client,
		AuthScheme:            strings.ToLower(*authScheme),
		IntegrationID:         *integrationID,
		InteractionID:         interaction,
		RootCAs:               roots,
		Resolve:               resolve,
		Proxy:                 outboundProxy(env),
		Logger:                logger,
		ResponseHeaderTimeout: *headerTimeout,
		ShutdownGrace:         *grace,
		AllowRoutes:           allowRoutes,
		MaxConns:              *maxConns,
	}
	gov.apply(&cfg)
	p, err := proxy.New(ctx, cfg)
	if err != nil {
		return fail("%v", err)
	}
	proxyURL := readyURL(*listen, ln.Addr())
	p.SetPublicURL(proxyURL)
	ready := serveReady{URL: proxyURL, PID: os.Getpid()}
	if *readyFile != "" {
		withToken := ready
		if generated {
			withToken.ClientToken = client.Reveal()
		}
		if err := writeReadyFile(*readyFile, withToken); err != nil {
			return fail("write the ready file: %v (pass a writable --ready-file)", err)
		}
	}
	if generated {
		clientSource = "generated (in the ready file)"
	}
	ups := p.Upstreams()
	logger.Info("listening", slog.String("url", proxyURL), slog.String("platform", string(ep.Platform)),
		slog.String("copilot_api", ups[0].URL), slog.String("copilot_api_source", ups[0].Source),
		slog.String("rest_api", ups[1].URL), slog.String("discovery", p.Stats().Discovery.State),
		slog.String("token_kind", string(realTok.Kind())), slog.String("client_token", clientSource),
		slog.String("auth_scheme", strings.ToLower(*authScheme)), slog.Bool("sealed", daemon.Sealed()),
		slog.Any("allow_routes", p.Stats().Policy.Widened), slog.Int("max_conns", *maxConns),
		slog.Any("allowed_models", gov.allowed), slog.Any("blocked_models", gov.blocked), slog.Int64("max_requests", gov.maxRequests),
		slog.Float64("max_premium_requests", gov.maxPremium), slog.Int64("max_tokens", gov.maxTokens))
	if sealErr != nil {
		logger.Warn("other processes of this user may read the proxy's memory", slog.String("error", sealErr.Error()))
	}
	for _, name := range unusedTokenVars {
		logger.Warn("a token variable is set in serve's environment but not used (the tokens came from --secrets-fd): "+
			"it stays readable in /proc/PID/environ for the proxy's life; do not pass it", slog.String("variable", name))
	}
	if k := realTok.Kind(); !k.WorksWithCopilot() {
		logger.Warn("the GitHub token's kind is not accepted by Copilot; expect 401s upstream",
			slog.String("token_kind", string(k)))
	}
	line, _ := json.Marshal(ready)
	fmt.Fprintln(stdout, string(line))

	// The control socket outlives the TCP listener's graceful shutdown: the figures stay
	// readable while open streams finish.
	ctlDone := make(chan error, 1)
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	if ctl != nil {
		go func() { ctlDone <- p.ServeControl(ctlCtx, ctl) }()
	} else {
		ctlDone <- nil
	}
	err = p.Serve(ctx, ln)
	stopCtl()
	if cerr := <-ctlDone; cerr != nil {
		logger.Warn("the control socket failed", slog.String("error", cerr.Error()))
	}
	if err != nil {
		return fail("%v", err)
	}
	return 0
}

// flagGiven says whether the command line set the flag (not just its default).
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// readyURL is the URL serve reports, reachable from this host: the listening port on the address
// asked for, with an unspecified address given as the loopback of its family. Go listens on
// "0.0.0.0" as the dual-stack "[::]", so the listener's own address would say [::1] for an
// IPv4 request.
func readyURL(listen string, addr net.Addr) string {
	host, _, err := net.SplitHostPort(listen)
	_, port, err2 := net.SplitHostPort(addr.String())
	if err != nil || err2 != nil {
		return proxy.ListenURL(addr)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	case ip == nil:
		return proxy.ListenURL(addr) // a name (localhost): the address it resolved to
	}
	return "http://" + net.JoinHostPort(host, port)
}

// loopbackListen says whether a listen address stays on loopback (an empty host means all
// interfaces).
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadRoots is the system roots plus the certificates in a PEM file.
func loadRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --ca-file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate: pass the CA certificate (BEGIN CERTIFICATE)", path)
	}
	return roots, nil
}

// writeReadyFile writes the file whole: a temporary file in the same directory, then a rename,
// so a reader polling for it never sees half. Mode 0600: it may hold the client token.
func writeReadyFile(path string, r serveReady) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone after the rename; cleans up after a failure
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// outboundProxy honours HTTPS_PROXY / NO_PROXY from the injected environment (the stdlib's
// ProxyFromEnvironment reads the process environment, which tests cannot inject). Loopback is
// never proxied.
func outboundProxy(env Env) func(*http.Request) (*url.URL, error) {
	raw := firstSet(env.Getenv("HTTPS_PROXY"), env.Getenv("https_proxy"))
	if raw == "" {
		return nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	pu, err := url.Parse(raw)
	if err != nil || pu.Host == "" {
		return nil
	}
	var skip []string
	for _, s := range strings.Split(firstSet(env.Getenv("NO_PROXY"), env.Getenv("no_proxy")), ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			skip = append(skip, s)
		}
	}
	return func(r *http.Request) (*url.URL, error) {
		host := strings.ToLower(r.URL.Hostname())
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil, nil
		}
		for _, s := range skip {
			if s == "*" || host == strings.TrimPrefix(s, ".") || strings.HasSuffix(host, "."+strings.TrimPrefix(s, ".")) {
				return nil, nil
			}
		}
		return pu, nil
	}
}
