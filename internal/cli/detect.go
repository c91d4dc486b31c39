package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/ghaw"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/summary"
)

// detectInputs are the action inputs detect reads, each also a flag of the same name.
var detectInputs = []struct{ name, usage string }{
	{"server-url", "GitHub server URL (default: GITHUB_SERVER_URL, else https://github.com)"},
	{"api-url", "REST API URL (default: GITHUB_API_URL when it belongs to the server, else derived)"},
	{"copilot-host", "where Copilot is licensed, for GHES: github.com (default) or NAME.ghe.com"},
	{"copilot-api-target", "host or https URL of the Copilot API, overriding the derived one"},
	{"platform", "auto, github.com, ghe.com or ghes (overrides the classification of a custom host name)"},
	{"extra-domains", "more domains for the allowlist, separated by commas, spaces or newlines"},
	{"proxy-host", "how the agent reaches the proxy, added to the allowlist (e.g. host.docker.internal)"},
	{"export-env", "true: set GH_HOST (and COPILOT_GH_HOST where Copilot is licensed elsewhere) for later steps"},
	{"start-proxy", "true (default): the agent reaches Copilot through the proxy, so its allowlist holds the proxy host, not the tenant's API hosts; false: the agent talks to the tenant itself"},
}

const detectFormats = "text, json, comma (awf), lines (bullfrog), harden-runner, gh-aw, none"

// detectJSON is the --format json object; its keys are a published contract.
type detectJSON struct {
	Platform       string   `json:"platform"`
	Tenant         string   `json:"tenant"`
	ServerURL      string   `json:"server_url"`
	GHHost         string   `json:"gh_host"`
	APIURL         string   `json:"api_url"`
	CopilotHost    string   `json:"copilot_host"`
	CopilotAPIURL  string   `json:"copilot_api_url"`
	TelemetryURL   string   `json:"telemetry_url"`
	AllowedDomains []string `json:"allowed_domains"`
	// The sandboxed agent's allowlist and blocklist (awf-args); see allowlist.ForAgent.
	AgentAllowedDomains []string `json:"agent_allowed_domains"`
	AgentBlockedDomains []string `json:"agent_blocked_domains"`
}

// runDetect classifies the platform, derives the endpoints and the allowlist, and, in an Actions
// step, masks the token, writes outputs (and GH_HOST with export-env) and a summary section.
func runDetect(_ context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	act := actions.New(env.Getenv, stdout)
	annotate := act.InStep() || env.Getenv("GITHUB_ACTIONS") == "true"

	// Secrets are masked before anything else reaches the log, flag errors included.
	secrets := newSecrets(env.Getenv(actions.InputEnv("github-token")), env.Getenv("COPILOT_GITHUB_TOKEN"))
	if annotate {
		for _, f := range secrets.forms {
			act.Mask(f)
		}
	}

	// Everything on stderr (flag errors echo what was typed) passes through the redactor.
	stderr = redactWriter{w: stderr, s: secrets}

	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	flags := addInputFlags(fs, detectInputs, actions.InputEnv)
	format := fs.String("format", "text", "what to print on stdout: "+detectFormats)
	if code, ok := parseFlags(fs, args, stderr, "Flags win over INPUT_* variables, which win over the runner's GITHUB_* variables.\n"+
		"The token comes only from INPUT_GITHUB_TOKEN or COPILOT_GITHUB_TOKEN and is never printed."); !ok {
		return code
	}
	value := flags.or(act.Input)

	fail := func(err error) int {
		msg := secrets.redact(err.Error())
		var ie *platform.InputError
		title := "copilot-route: detect failed"
		if errors.As(err, &ie) {
			title = "copilot-route: bad input " + ie.Input
		}
		if annotate {
			act.Error(title, msg)
		}
		fmt.Fprintf(stderr, "%s: %s\n", title, msg)
		return 1
	}

	switch *format {
	case "text", "json", "comma", "lines", "harden-runner", "gh-aw", "none":
	default:
		fmt.Fprintf(stderr, "copilot-route detect: unknown --format %s; use one of %s\n", platform.Quote(*format), detectFormats)
		return 2
	}

	in, exportEnv, err := detectInput(env, value)
	if err != nil {
		return fail(err)
	}
	proxyOn, err := startProxy(value("start-proxy"))
	if err != nil {
		return fail(err)
	}
	examples := [][2]string{{"server-url", "https://acme.ghe.com"}, {"api-url", "https://api.acme.ghe.com"},
		{"copilot-host", "acme.ghe.com"}, {"copilot-api-target", "https://copilot-api.acme.ghe.com"}, {"platform", "auto"},
		{"extra-domains", "registry.npmjs.org"}, {"proxy-host", "host.docker.internal"}}
	for _, ex := range examples {
		if secrets.in(value(ex[0])) {
			// The value is not echoed, not even redacted: it is the secret's neighbourhood.
			return fail(&platform.InputError{Input: ex[0], Problem: "the value contains the github-token; pass the token only through github-token",
				Example: ex[1]})
		}
	}
	ep, err := platform.Detect(in)
	if err != nil {
		return fail(err)
	}
	opts := allowlist.Options{ProxyHost: value("proxy-host"), ExtraDomains: value("extra-domains")}
	list, err := allowlist.For(ep, opts)
	if err != nil {
		return fail(err)
	}
	agent, err := agentList(ep, list, opts, proxyOn)
	if err != nil {
		return fail(err)
	}

	warnings := append([]string(nil), ep.Warnings...)
	for _, h := range agent.Exposed {
		warnings = append(warnings, fmt.Sprintf("extra-domains lists %s, which the proxy serves: an agent in a sandbox may reach it directly, past the proxy. "+
			"Remove it unless the agent needs it for other tools with a token of its own.", h))
	}
	kind := copilot.KindOf(secrets.token)
	if kind == copilot.KindClassicPAT {
		warnings = append(warnings, "The github-token is a classic personal access token (ghp_), which Copilot refuses. "+
			"Use a fine-grained token with the \"Copilot Requests\" permission, or the job's GITHUB_TOKEN with permissions: copilot-requests: write.")
	}
	for i := range warnings {
		warnings[i] = secrets.redact(warnings[i])
	}

	var exported []string
	if exportEnv {
		if ep.GHHost != "" {
			exported = append(exported, "GH_HOST="+ep.GHHost)
		}
		// The Copilot CLI reads COPILOT_GH_HOST before GH_HOST (and github.com without either).
		// Where Copilot is licensed somewhere else — GHES, or a github.com job using a tenant's
		// Copilot — it must be told.
		cliHost := ep.GHHost
		if cliHost == "" {
			cliHost = "github.com"
		}
		if ep.CopilotHost != "" && ep.CopilotHost != cliHost {
			exported = append(exported, "COPILOT_GH_HOST="+ep.CopilotHost)
		}
	}

	proxyHost, _ := allowlist.ProxyHost(value("proxy-host")) // already validated by allowlist.For
	printed, err := renderDetect(*format, ep, list, agent, proxyHost)
	if err != nil {
		return fail(err)
	}

	var b *actions.Batch
	if act.InStep() {
		b = act.Stage()
		outputs := [][2]string{
			{"platform", string(ep.Platform)},
			{"tenant", ep.Tenant},
			{"gh-host", ep.GHHost},
			{"server-url", ep.ServerURL},
			{"api-url", ep.APIURL},
			{"copilot-host", ep.CopilotHost},
			{"copilot-api-url", ep.CopilotAPIURL},
			{"telemetry-url", ep.TelemetryURL},
			{"allowed-domains", list.Comma()},
			{"allowed-endpoints", list.HardenRunner()},
			{"agent-allowed-domains", strings.Join(agent.Allow, ",")},
		}
		if !proxyOn {
			// With the proxy, start writes awf-args: only it knows the port.
			outputs = append(outputs, [2]string{"awf-args", list.AWFArgs()})
		}
		for _, o := range outputs {
			b.Output(o[0], o[1])
		}
		b.OutputLines("allowed-domains-list", list.Lines())
		for _, kv := range exported {
			k, v, _ := strings.Cut(kv, "=")
			b.Env(k, v)
		}
		section, err := summary.DetectionSection(summary.Detection{Endpoints: ep, List: list, Warnings: warnings,
			TokenKind: tokenKindLabel(kind), ExportedEnv: exported, ProxyHost: proxyHost})
		if err != nil {
			return fail(err)
		}
		b.Summary(section)
		// The last guard: nothing derived may carry the token, whatever the inputs were.
		for _, o := range outputs {
			if secrets.in(o[1]) {
				return fail(fmt.Errorf("output %s would contain the token; nothing was written", o[0]))
			}
		}
		if secrets.in(section) || secrets.in(list.Lines()) || secrets.in(strings.Join(exported, "\n")) {
			return fail(errors.New("the summary or environment would contain the token; nothing was written"))
		}
	}
	if secrets.in(printed) {
		return fail(errors.New("the output would contain the token; nothing was written"))
	}

	for _, w := range warnings {
		if annotate {
			act.Warning("copilot-route", w)
		} else {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if b != nil {
		if err := b.Commit(); err != nil {
			return fail(fmt.Errorf("write the step's outputs: %w", err))
		}
	}
	if _, err := io.WriteString(stdout, printed); err != nil {
		fmt.Fprintf(stderr, "copilot-route detect: write stdout: %v\n", err)
		return 1
	}
	if err := act.Err(); err != nil {
		fmt.Fprintf(stderr, "copilot-route detect: write stdout: %v\n", err)
		return 1
	}
	return 0
}

// detectInput gathers platform.Input from flags/inputs and the runner's variables.
func detectInput(env Env, value func(string) string) (platform.Input, bool, error) {
	in := platform.Input{
		ServerURL:        value("server-url"),
		APIURL:           value("api-url"),
		CopilotHost:      value("copilot-host"),
		CopilotAPITarget: value("copilot-api-target"),
		Platform:         value("platform"),
	}
	runnerServer := strings.TrimSpace(env.Getenv("GITHUB_SERVER_URL"))
	if in.ServerURL == "" {
		in.ServerURL = runnerServer
	}
	// The runner's API URLs describe the runner's own server. When the user names another server
	// (a github.com runner driving a tenant), they do not apply: using them would send a
	// tenant's API calls to api.github.com.
	if sameServer(in.ServerURL, runnerServer) {
		if in.APIURL == "" {
			in.APIURL = strings.TrimSpace(env.Getenv("GITHUB_API_URL"))
		}
		in.GraphQLURL = strings.TrimSpace(env.Getenv("GITHUB_GRAPHQL_URL"))
	}
	exportEnv, _, err := actions.ParseBool(value("export-env"))
	if err != nil {
		return in, false, &platform.InputError{Input: "export-env", Value: platform.Quote(value("export-env")),
			Problem: err.Error(), Example: "true"}
	}
	return in, exportEnv, nil
}

// startProxy reads input start-proxy (default true).
func startProxy(v string) (bool, error) {
	if strings.TrimSpace(v) == "" {
		return true, nil
	}
	on, _, err := actions.ParseBool(v)
	if err != nil {
		return false, &platform.InputError{Input: "start-proxy", Value: platform.Quote(v), Problem: err.Error(), Example: "true"}
	}
	return on, nil
}

// agentList is the allowlist of an agent in a sandbox: with the proxy, the proxy host and the
// user's domains, the proxied hosts blocked; without it, the whole list (the agent talks to the
// tenant itself).
func agentList(ep platform.Endpoints, list allowlist.List, opts allowlist.Options, proxyOn bool) (allowlist.Agent, error) {
	if !proxyOn {
		return allowlist.Agent{Allow: list.Domains}, nil
	}
	return allowlist.ForAgent(ep, opts)
}

// sameServer says whether two server URLs name the same host (both empty counts: the default).
func sameServer(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	ua, err1 := platform.ParseServerURL("server-url", a)
	ub, err2 := platform.ParseServerURL("server-url", b)
	return err1 == nil && err2 == nil && ua.Host == ub.Host
}

// renderDetect is what detect prints on stdout. Warnings go to stderr (or annotations), not here,
// so the list formats stay machine-readable.
func renderDetect(format string, ep platform.Endpoints, list allowlist.List, agent allowlist.Agent, proxyHost string) (string, error) {
	switch format {
	case "none":
		return "", nil
	case "json":
		domains := list.Domains
		if domains == nil {
			domains = []string{}
		}
		b, err := json.MarshalIndent(detectJSON{
			Platform: string(ep.Platform), Tenant: ep.Tenant, ServerURL: ep.ServerURL, GHHost: ep.GHHost,
			APIURL: ep.APIURL, CopilotHost: ep.CopilotHost, CopilotAPIURL: ep.CopilotAPIURL,
			TelemetryURL: ep.TelemetryURL, AllowedDomains: domains,
			AgentAllowedDomains: nonNil(agent.Allow), AgentBlockedDomains: nonNil(agent.Block),
		}, "", "  ")
		if err != nil {
			return "", err
		}
		return string(b) + "\n", nil
	case "comma":
		return list.Comma() + "\n", nil
	case "lines":
		return list.Lines() + "\n", nil
	case "harden-runner":
		return list.HardenRunner() + "\n", nil
	case "gh-aw":
		return ghaw.Frontmatter(ep, list, proxyHost), nil
	}
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, v)
	}
	p := string(ep.Platform)
	if ep.Tenant != "" {
		p += " (tenant " + ep.Tenant + ")"
	}
	row("platform", p)
	row("server", ep.ServerURL)
	row("GH_HOST", ep.GHHost)
	row("REST API", ep.APIURL)
	row("Copilot licensed on", ep.CopilotHost)
	row("Copilot REST API", ep.CopilotRESTAPIURL)
	row("Copilot API", ep.CopilotAPIURL)
	row("telemetry", ep.TelemetryURL)
	row("allowed domains", list.Comma())
	row("agent allows", strings.Join(agent.Allow, ","))
	row("agent blocks", strings.Join(agent.Block, ","))
	if err := tw.Flush(); err != nil {
		return "", err
	}
	return sb.String(), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func tokenKindLabel(k copilot.TokenKind) string {
	if k == copilot.KindNone {
		return ""
	}
	return string(k)
}

// secrets holds the step's token and every form of it that must never be printed.
type secrets struct {
	token string   // normalised
	forms []string // every form to mask and to refuse in output, longest first
}

func newSecrets(raws ...string) secrets {
	var s secrets
	seen := map[string]bool{}
	for _, raw := range raws {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		if s.token == "" {
			s.token = copilot.Normalize(raw)
		}
		for _, f := range append(copilot.MaskForms(raw), raw) {
			if strings.TrimSpace(f) != "" && !seen[f] {
				seen[f] = true
				s.forms = append(s.forms, f)
			}
		}
	}
	return s
}

// minSecretLen is the shortest token the containment checks look for: real tokens are 40+
// characters, and a check for a two-letter "token" would refuse ordinary host names.
const minSecretLen = 8

// in says whether v contains any secret (compared on each normalised line of the secret, in any
// case: host names are lower-cased on the way to an output).
func (s secrets) in(v string) bool {
	v = strings.ToLower(v)
	for _, f := range s.forms {
		for _, line := range strings.Split(f, "\n") {
			line = strings.ToLower(strings.TrimSpace(line))
			if len(line) >= minSecretLen && strings.Contains(v, line) {
				return true
			}
		}
	}
	return false
}

// redact replaces every secret line in a human-facing message. Lines under four characters are
// left alone: no real token is that short, and replacing every "a" would garble the message.
func (s secrets) redact(msg string) string {
	for _, f := range s.forms {
		for _, line := range strings.Split(f, "\n") {
			if line = strings.TrimSpace(line); len(line) >= 4 {
				msg = strings.ReplaceAll(msg, line, "***")
			}
		}
	}
	return msg
}

// redactWriter redacts secrets from each write. The flag package and this command write whole
// messages per call, so a secret is never split across writes.
type redactWriter struct {
	w io.Writer
	s secrets
}

func (r redactWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.s.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
