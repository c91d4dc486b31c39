package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/allowlist"
	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/summary"
)

// diagnoseInputs are the action inputs diagnose reads, each also a flag of the same name.
var diagnoseInputs = []struct{ name, usage string }{
	{"server-url", "GitHub server URL (default: GITHUB_SERVER_URL, else https://github.com)"},
	{"api-url", "REST API URL (default: GITHUB_API_URL when it belongs to the server, else derived)"},
	{"copilot-host", "where Copilot is licensed, for GHES: github.com (default) or NAME.ghe.com"},
	{"copilot-api-target", "host or https URL of the Copilot API, overriding the derived one"},
	{"platform", "auto, github.com, ghe.com or ghes"},
	{"ca-file", "PEM file of extra CA certificates to trust (a TLS-inspecting proxy, a private GHES CA)"},
	{"auth-scheme", "the proxy's Authorization scheme: auto (Bearer, then token), bearer or token"},
	{"integration-id", "Copilot-Integration-Id sent to the Copilot API (default copilot-developer-cli)"},
}

const diagnoseFormats = "text, json, markdown, none"

// diagnoseJSON is the --format json object: the report plus where it was run.
type diagnoseJSON struct {
	Platform    string `json:"platform"`
	CopilotHost string `json:"copilot_host"`
	diagnose.Report
}

// runDiagnose probes the live endpoints with the real token and explains each answer. A failed
// probe is a finding, not an error: the exit code is 0 unless --strict (or the input
// diagnose: strict) is set and the verdict is "will not work". In an Actions step it also writes
// the summary page, a verdict output and annotations carrying each fix.
func runDiagnose(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	act := actions.New(env.Getenv, stdout)
	inStep := act.InStep()
	annotate := inStep || env.Getenv("GITHUB_ACTIONS") == "true"

	rawToken, forms := stepToken(env, act, annotate)

	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	flags := addInputFlags(fs, diagnoseInputs, actions.InputEnv)
	defaultFormat := "text"
	format := fs.String("format", defaultFormat, "what to print on stdout: "+diagnoseFormats)
	strict := fs.Bool("strict", false, "exit 1 when the verdict is \"will not work\" [env INPUT_DIAGNOSE=strict]")
	timeout := fs.Duration("timeout", diagnose.DefaultTimeout, "time limit of each probe's request")
	resolve := resolveFlag{}
	fs.Var(resolve, "resolve", "HOST:PORT:ADDR[:PORT]: dial ADDR for HOST:PORT and refuse every other name (repeatable; tests and demos; also env COPILOT_ROUTE_RESOLVE, space-separated)")
	if code, ok := parseFlags(fs, args, stderr, "Probes the REST API, the Copilot seat, the token exchange and the Copilot API with the real token\n"+
		"(from INPUT_GITHUB_TOKEN or COPILOT_GITHUB_TOKEN, never a flag) and says what each answer means."); !ok {
		return code
	}
	if !probeFlagsOK("diagnose", *format, diagnoseFormats, *timeout, stderr) {
		return 2
	}
	value := flags.or(act.Input)

	mode := strings.ToLower(act.Input("diagnose"))
	if mode == "strict" {
		*strict = true
	}
	// A check that cannot run is fatal only when the user asked for strict checks: in a step
	// otherwise it is a warning, and the job goes on as it would without diagnose.
	fail := func(title string, err error) int {
		msg := scrubAll(err.Error(), forms)
		if inStep && !*strict {
			act.Warning(title, msg+" (the checks did not run; the job goes on, as diagnose is not strict)")
			fmt.Fprintf(stderr, "%s: %s\n", title, msg)
			return 0
		}
		if annotate {
			act.Error(title, msg)
		}
		fmt.Fprintf(stderr, "%s: %s\n", title, msg)
		return 1
	}

	switch mode {
	case "", "true", "false", "strict":
	default:
		return fail("copilot-route: bad input diagnose", &platform.InputError{Input: "diagnose", Value: platform.Quote(mode),
			Problem: "use true, false or strict", Example: "true"})
	}
	scheme := strings.ToLower(value("auth-scheme"))
	switch scheme {
	case "", "auto", "bearer", "token":
	default:
		return fail("copilot-route: bad input auth-scheme", &platform.InputError{Input: "auth-scheme", Value: platform.Quote(scheme),
			Problem: "use auto, bearer or token", Example: "auto"})
	}

	in, _, err := detectInput(env, value)
	if err != nil {
		return fail("copilot-route: bad input", err)
	}
	ep, err := platform.Detect(in)
	if err != nil {
		var ie *platform.InputError
		title := "copilot-route: diagnose failed"
		if errors.As(err, &ie) {
			title = "copilot-route: bad input " + ie.Input
		}
		return fail(title, err)
	}

	var caPEM []byte
	if path := value("ca-file"); path != "" {
		caPEM, err = os.ReadFile(path)
		if err != nil {
			return fail("copilot-route: bad input ca-file", fmt.Errorf("read the CA file: %w (give a readable PEM file)", err))
		}
	}
	client, title, err := probeClient(env, caPEM, resolve)
	if err != nil {
		return fail(title, err)
	}

	rep := diagnose.Run(ctx, diagnose.Config{
		Endpoints:     ep,
		Token:         copilot.NewToken(rawToken),
		Client:        client,
		Timeout:       *timeout,
		AuthScheme:    scheme,
		IntegrationID: value("integration-id"),
		UserAgent:     "copilot-route/" + Version,
	})

	var printed string
	switch *format {
	case "text":
		printed = summary.DiagnoseText(rep, ep)
	case "json":
		b, err := json.MarshalIndent(diagnoseJSON{Platform: string(ep.Platform), CopilotHost: ep.CopilotHost, Report: rep}, "", "  ")
		if err != nil {
			return fail("copilot-route: diagnose failed", err)
		}
		printed = string(b) + "\n"
	case "markdown":
		printed = diagnosePage(ep, rep, act)
	}
	// The last guard: the token was never put where a reply could carry it, but nothing leaves
	// this process if it contains it anyway.
	if containsAny(printed, forms) {
		return fail("copilot-route: diagnose failed", errors.New("the report would contain the token; nothing was printed"))
	}

	if inStep {
		b := act.Stage()
		b.Output("verdict", string(rep.Verdict))
		page := diagnosePage(ep, rep, act)
		if containsAny(page, forms) {
			return fail("copilot-route: diagnose failed", errors.New("the summary would contain the token; nothing was written"))
		}
		b.Summary(page)
		if err := b.Commit(); err != nil {
			return fail("copilot-route: diagnose failed", fmt.Errorf("write the step's summary: %w", err))
		}
	}
	if annotate {
		for _, a := range summary.Annotations(rep) {
			msg := scrubAll(a.Message, forms)
			if a.Level == "error" {
				act.Error(a.Title, msg)
			} else {
				act.Warning(a.Title, msg)
			}
		}
	}
	if _, err := io.WriteString(stdout, printed); err != nil {
		fmt.Fprintf(stderr, "copilot-route diagnose: write stdout: %v\n", err)
		return 1
	}
	if *strict && rep.Verdict == diagnose.WillNotWork {
		fmt.Fprintln(stderr, "copilot-route diagnose: the checks say Copilot will not work here (strict); see the fixes above")
		return 1
	}
	return 0
}

// diagnosePage is the summary page of a diagnose run. The allowlist adds the firewall snippets;
// a bad extra-domains input is detect's to report, so here it only leaves the additions out.
func diagnosePage(ep platform.Endpoints, rep diagnose.Report, act *actions.Actions) string {
	list, err := allowlist.For(ep, allowlist.Options{ProxyHost: act.Input("proxy-host"), ExtraDomains: act.Input("extra-domains")})
	if err != nil {
		list, _ = allowlist.For(ep, allowlist.Options{})
	}
	return summary.RenderPage(summary.Page{Endpoints: ep, List: list, Report: &rep})
}

// probeFlagsOK checks the --format (one of "text, json, markdown, none") and --timeout of a
// command that probes, and says what is wrong on stderr.
func probeFlagsOK(cmd, format, formats string, timeout time.Duration, stderr io.Writer) bool {
	switch format {
	case "text", "json", "markdown", "none":
	default:
		fmt.Fprintf(stderr, "copilot-route %s: unknown --format %s; use one of %s\n", cmd, platform.Quote(format), formats)
		return false
	}
	if timeout <= 0 || timeout > time.Minute {
		fmt.Fprintf(stderr, "copilot-route %s: --timeout must be between 1ms and 1m, e.g. 5s\n", cmd)
		return false
	}
	return true
}

// stepToken reads the real token (INPUT_GITHUB_TOKEN, else COPILOT_GITHUB_TOKEN) and, in a
// step, masks every form of it before anything else can reach the log.
func stepToken(env Env, act *actions.Actions, annotate bool) (string, []string) {
	raw := env.Getenv(actions.InputEnv("github-token"))
	if strings.TrimSpace(raw) == "" {
		raw = env.Getenv("COPILOT_GITHUB_TOKEN")
	}
	forms := secretForms(raw)
	if annotate {
		for _, f := range forms {
			act.Mask(f)
		}
	}
	return raw, forms
}

// probeClient is the HTTP client of live probes: extra roots from a CA file, and the --resolve
// table (plus COPILOT_ROUTE_RESOLVE) for tests and demos. On error, title names what was bad.
func probeClient(env Env, caPEM []byte, resolve resolveFlag) (*http.Client, string, error) {
	for _, r := range strings.Fields(env.Getenv("COPILOT_ROUTE_RESOLVE")) {
		if err := resolve.Set(r); err != nil {
			return nil, "copilot-route: bad COPILOT_ROUTE_RESOLVE", err
		}
	}
	cc := diagnose.ClientConfig{ExtraCAPEM: caPEM}
	if len(resolve) > 0 {
		cc.DialContext = diagnose.StaticDialer(resolve)
	}
	client, err := diagnose.NewClient(cc)
	if err != nil {
		return nil, "copilot-route: bad input ca-file", err
	}
	return client, "", nil
}

// secretForms are the token's forms to mask and to keep out of any output.
func secretForms(raw string) []string {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	return copilot.MaskForms(raw)
}

// containsAny says whether s holds any form at least 8 characters long (shorter "tokens" would
// match ordinary words; real tokens are 40+ characters).
func containsAny(s string, forms []string) bool {
	for _, f := range forms {
		if f = strings.TrimSpace(f); len(f) >= 8 && strings.Contains(s, f) {
			return true
		}
	}
	return false
}

func scrubAll(s string, forms []string) string {
	if raw := firstForm(forms); raw != "" {
		s = diagnose.Scrub(s, copilot.NewToken(raw))
	}
	return s
}

func firstForm(forms []string) string {
	if len(forms) == 0 {
		return ""
	}
	return forms[0]
}
