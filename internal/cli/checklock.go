package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/ghaw"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/summary"
)

const checkLockFormats = "text, json, markdown, none"

// awfIntegrationID is the Copilot-Integration-Id awf's api-proxy sends by default; the live probe
// sends it too, so the target answers it as it will answer the agent.
const awfIntegrationID = "agentic-workflows"

// checkLockJSON is the --format json object.
type checkLockJSON struct {
	File        string       `json:"file"`
	Platform    string       `json:"platform"`
	CopilotHost string       `json:"copilot_host"`
	Fits        bool         `json:"fits"`
	Lock        lockJSON     `json:"lock"`
	Report      ghaw.Report  `json:"report"`
	Probe       *ghaw.Probed `json:"probe,omitempty"`
}

type lockJSON struct {
	Compiler   string   `json:"compiler_version"`
	Engine     string   `json:"engine"`
	CLIVersion string   `json:"copilot_cli_version"`
	AWFVersion string   `json:"awf_version"`
	Target     string   `json:"api_target"`
	Domains    []string `json:"allow_domains"`
}

// runCheckLock reads a compiled gh-aw workflow and says whether it will reach Copilot on this
// platform: exit 0 when it fits, 1 with findings, 2 when the file is not a gh-aw lock or cannot
// be read. With a token it proves the target with one live GET /models, sent with the
// Authorization scheme the lock's awf sends. In a step it writes the findings to the summary,
// each as an annotation, and the output lock-verdict.
func runCheckLock(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	act := actions.New(env.Getenv, stdout)
	inStep := act.InStep()
	annotate := inStep || env.Getenv("GITHUB_ACTIONS") == "true"

	rawToken, forms := stepToken(env, act, annotate)
	stderr = redactWriter{w: stderr, s: newSecrets(rawToken)}

	fs := flag.NewFlagSet("check-lock", flag.ContinueOnError)
	flags := addInputFlags(fs, pickInputs(detectInputs, "server-url", "api-url", "copilot-host", "copilot-api-target", "platform"), actions.InputEnv)
	format := fs.String("format", "text", "what to print on stdout: "+checkLockFormats)
	probe := fs.String("probe", "auto", "prove the target with one live GET /models: auto (when a token is given), true or false")
	timeout := fs.Duration("timeout", diagnose.DefaultTimeout, "time limit of the probe's requests")
	caFile := fs.String("ca-file", "", "PEM file of extra CA certificates to trust for the probe [env INPUT_CA_FILE]")
	resolve := resolveFlag{}
	fs.Var(resolve, "resolve", "HOST:PORT:ADDR[:PORT]: dial ADDR for HOST:PORT and refuse every other name (repeatable; tests)")
	file, code, ok := parseCheckLockArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if !probeFlagsOK("check-lock", *format, checkLockFormats, *timeout, stderr) {
		return 2
	}
	switch *probe {
	case "auto", "true", "false":
	default:
		fmt.Fprintf(stderr, "copilot-route check-lock: --probe %s: use auto, true or false\n", platform.Quote(*probe))
		return 2
	}
	value := flags.or(act.Input)
	unusable := func(err error) int {
		msg := scrubAll(err.Error(), forms)
		if annotate {
			act.Error("copilot-route: check-lock cannot read the lock", msg)
		}
		fmt.Fprintf(stderr, "copilot-route check-lock: %s\n", msg)
		return 2
	}
	if file == "" {
		file = act.Input("check-lock")
	}
	path, err := lockPath(file, env)
	if err != nil {
		return unusable(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return unusable(fmt.Errorf("read %s: %w; pass the compiled workflow, e.g. .github/workflows/NAME.lock.yml", path, err))
	}
	lock, err := ghaw.ParseLock(data)
	if err != nil {
		return unusable(fmt.Errorf("%s: %w", path, err))
	}

	in, _, err := detectInput(env, value)
	if err != nil {
		return unusable(err)
	}
	ep, err := platform.Detect(in)
	if err != nil {
		return unusable(err)
	}
	rep := ghaw.Check(lock, ep)

	var probed *ghaw.Probed
	token := copilot.NewToken(rawToken)
	probeable, notProbeable := rep.Probeable(ep)
	switch {
	case *probe == "false":
	case !probeable:
		probed = &ghaw.Probed{NotProbedBy: notProbeable}
	case token.IsZero() && *probe == "auto":
		probed = &ghaw.Probed{NotProbedBy: "no token (github-token or COPILOT_GITHUB_TOKEN)"}
	default:
		p, err := probeTarget(ctx, env, rep.Runtime, token, *timeout, valueOr(*caFile, act.Input("ca-file")), resolve)
		if err != nil {
			return unusable(err)
		}
		probed = &p
	}
	if probed != nil {
		rep.ApplyProbe(*probed, ep)
	}

	section := summary.LockCheck(summary.LockCheckData{File: file, Endpoints: ep, Report: rep, Probe: probed})
	var printed string
	switch *format {
	case "text":
		printed = summary.LockCheckText(summary.LockCheckData{File: file, Endpoints: ep, Report: rep, Probe: probed})
	case "markdown":
		printed = section
	case "json":
		b, err := json.MarshalIndent(checkLockJSON{File: file, Platform: string(ep.Platform), CopilotHost: ep.CopilotHost,
			Fits: rep.Fits(), Report: rep, Probe: probed,
			Lock: lockJSON{Compiler: lock.CompilerVersion, Engine: lock.Engine, CLIVersion: lock.CLIVersion,
				AWFVersion: lock.AWFVersion, Target: lock.CopilotTarget, Domains: lock.AllowDomains}}, "", "  ")
		if err != nil {
			return unusable(err)
		}
		printed = string(b) + "\n"
	}
	if containsAny(printed+section, forms) {
		return unusable(errors.New("the report would contain the token; nothing was printed"))
	}

	verdict := "fits"
	if !rep.Fits() {
		verdict = "findings"
	}
	if inStep {
		b := act.Stage()
		b.Output("lock-verdict", verdict)
		b.Summary(section)
		if err := b.Commit(); err != nil {
			return unusable(fmt.Errorf("write the step's summary: %w", err))
		}
	}
	if annotate {
		for _, f := range rep.Findings {
			title := "copilot-route check-lock: " + f.Kind
			msg := scrubAll(f.What+". "+f.Why+". Fix: "+strings.ReplaceAll(f.Fix, "\n", " "), forms)
			if f.Level == ghaw.Fail {
				act.Error(title, msg)
			} else {
				act.Warning(title, msg)
			}
		}
	}
	if _, err := io.WriteString(stdout, printed); err != nil {
		fmt.Fprintf(stderr, "copilot-route check-lock: write stdout: %v\n", err)
		return 2
	}
	if !rep.Fits() {
		fmt.Fprintf(stderr, "copilot-route check-lock: %s will not work as compiled on %s: %d finding(s), each with the frontmatter that fixes it\n",
			file, platform.HostOf(ep.ServerURL), len(rep.Findings))
		return 1
	}
	return 0
}

// parseCheckLockArgs parses flags before and after the one FILE argument.
func parseCheckLockArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (file string, code int, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: copilot-route check-lock [flags] FILE.lock.yml|self\n\n%s\n",
			"Reads a compiled gh-aw workflow and says whether it reaches Copilot on this platform (exit 0), with findings (1),\n"+
				"or that it is not a gh-aw lock (2). self is the running workflow's own lock (GITHUB_WORKFLOW_REF).\n"+
				"FILE defaults to INPUT_CHECK_LOCK. The token comes from INPUT_GITHUB_TOKEN or COPILOT_GITHUB_TOKEN, never a flag.")
		fs.PrintDefaults()
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", 0, false
			}
			return "", 2, false
		}
		if fs.NArg() == 0 {
			return file, 0, true
		}
		if file != "" {
			fmt.Fprintf(stderr, "copilot-route check-lock: one lock file at a time; unexpected %s\n", platform.Quote(fs.Arg(0)))
			return "", 2, false
		}
		file, args = fs.Arg(0), fs.Args()[1:]
	}
}

// lockPath resolves FILE: "self" is the running workflow's file, from GITHUB_WORKFLOW_REF
// (OWNER/REPO/.github/workflows/NAME.lock.yml@REF) under GITHUB_WORKSPACE.
func lockPath(file string, env Env) (string, error) {
	file = strings.TrimSpace(file)
	switch file {
	case "":
		return "", errors.New("no lock file: pass FILE.lock.yml (or the input check-lock)")
	case "self":
		ref := env.Getenv("GITHUB_WORKFLOW_REF")
		p, _, _ := strings.Cut(ref, "@")
		parts := strings.SplitN(p, "/", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], ".github/workflows/") {
			return "", fmt.Errorf("check-lock self needs GITHUB_WORKFLOW_REF (OWNER/REPO/.github/workflows/NAME.lock.yml@REF), got %s; pass the path instead", platform.Quote(ref))
		}
		return filepath.Join(env.Getenv("GITHUB_WORKSPACE"), filepath.FromSlash(parts[2])), nil
	}
	return file, nil
}

// probeTarget sends the one live GET /models to the target awf will use, with awf's scheme first.
func probeTarget(ctx context.Context, env Env, rt ghaw.Runtime, tok copilot.Token, timeout time.Duration, caFile string, resolve resolveFlag) (ghaw.Probed, error) {
	var caPEM []byte
	if caFile != "" {
		var err error
		if caPEM, err = os.ReadFile(caFile); err != nil {
			return ghaw.Probed{}, fmt.Errorf("read the CA file: %w (give a readable PEM file)", err)
		}
	}
	client, _, err := probeClient(env, caPEM, resolve)
	if err != nil {
		return ghaw.Probed{}, err
	}
	sp := diagnose.ProbeModelsWith(ctx, diagnose.Config{Token: tok, Client: client, Timeout: timeout, UserAgent: "copilot-route/" + Version},
		"https://"+rt.Target, rt.Scheme, awfIntegrationID)
	p := ghaw.Probed{URL: sp.URL, Scheme: rt.Scheme, Status: sp.FirstStatus, Works: sp.Works, Models: sp.Models,
		Meaning: sp.Meaning, Fix: sp.Fix, RequestID: sp.RequestID}
	if sp.Works != "" {
		p.WorksStatus = sp.Status
	}
	if sp.Verdict == diagnose.Skip {
		p.NotProbedBy = sp.Meaning
	}
	return p, nil
}

func valueOr(v, fallback string) string {
	if strings.TrimSpace(v) != "" {
		return v
	}
	return fallback
}
