package ghaw

import (
	"fmt"
	"slices"
	"strings"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// Finding kinds, stable for JSON consumers and tests.
const (
	// KindEngine: the lock's agent is not the Copilot CLI.
	KindEngine = "engine"
	// KindAPITarget: the Copilot API awf will send to is not this platform's.
	KindAPITarget = "api-target"
	// KindRESTHost: engine.api-target names the REST API host (api.NAME.ghe.com), which gh-aw's
	// engines reference shows but which serves no /models or inference.
	KindRESTHost = "api-target-rest-host"
	// KindAllowlist: a host Copilot needs is not admitted even after what awf adds by itself.
	KindAllowlist = "allowlist"
	// KindToken: the agent's Copilot credential cannot belong to where Copilot is licensed.
	KindToken = "copilot-token"
	// KindProxyEnv: engine.env points the agent or awf's api-proxy at copilot-route's proxy,
	// which awf replaces or cannot reach.
	KindProxyEnv = "proxy-env"
	// KindProxyUnused: a frontmatter step starts copilot-route's proxy, which no gh-aw agent uses.
	KindProxyUnused = "proxy-unused"
	// KindAuthScheme: the live target refuses the Authorization scheme the pinned awf sends.
	KindAuthScheme = "auth-scheme"
	// KindTargetProbe: the live target does not answer /models for this token.
	KindTargetProbe = "target-probe"
)

// Level says whether a finding stops the agent (fail) or is worth fixing (warn).
type Level string

const (
	Fail Level = "fail"
	Warn Level = "warn"
)

// Finding is one thing wrong with a lock on a platform: what, why, and the frontmatter that
// fixes it (YAML, to put in the workflow's .md and recompile).
type Finding struct {
	Kind  string `json:"kind"`
	Level Level  `json:"level"`
	What  string `json:"what"`
	Why   string `json:"why"`
	Fix   string `json:"fix"`
}

// Report is check-lock's verdict on one lock for one platform.
type Report struct {
	Lock     Lock      `json:"-"`
	Runtime  Runtime   `json:"runtime"`
	Findings []Finding `json:"findings"`
	// Notes say what awf will do by itself, so the author knows what not to add.
	Notes []string `json:"notes"`
}

// Fits says the lock will reach Copilot on this platform: no finding.
func (r Report) Fits() bool { return len(r.Findings) == 0 }

// TestedCLIVersions are the Copilot CLI versions this project's end-to-end tests run.
var TestedCLIVersions = []string{"1.0.102", "1.0.83"}

// Check decides whether l will reach Copilot on the platform ep describes. It models what the
// lock's pinned awf adds and derives by itself (RuntimeFor) and does not flag what awf fixes.
func Check(l Lock, ep platform.Endpoints) Report {
	rt := RuntimeFor(l, ep)
	r := Report{Lock: l, Runtime: rt}
	add := func(f Finding) { r.Findings = append(r.Findings, f) }

	if l.Engine != "" && l.Engine != "copilot" {
		add(Finding{Kind: KindEngine, Level: Fail,
			What: fmt.Sprintf("the agent is %s, not the Copilot CLI", l.Engine),
			Why:  "copilot-route checks the Copilot path (its target, credential and allowlist); other engines use other APIs",
			Fix:  "engine: copilot"})
		return r // the rest is about the Copilot path
	}

	want := platform.HostOf(ep.CopilotAPIURL)
	target := rt.Target
	fixTarget := "engine:\n  id: copilot\n  api-target: " + want
	switch {
	case target == "":
	case isRESTHost(target, ep):
		add(Finding{Kind: KindRESTHost, Level: Fail,
			What: fmt.Sprintf("the Copilot API target is %s (%s), the REST API host", target, rt.TargetFrom),
			Why: fmt.Sprintf("%s serves the GitHub REST API, not /models or inference: the Copilot CLI sends those to %s. "+
				"gh-aw's engines reference shows api.NAME.ghe.com as the tenant's api-target; its GHE troubleshooting page and the real CLI use copilot-api.NAME.ghe.com", target, want),
			Fix: fixTarget})
	case !targetFits(target, want, ep):
		add(Finding{Kind: KindAPITarget, Level: Fail,
			What: fmt.Sprintf("awf %s will send Copilot requests to %s (%s), but Copilot for this job is licensed on %s, whose Copilot API is %s", orUnknown(rt.AWFVersion), target, rt.TargetFrom, ep.CopilotHost, want),
			Why:  targetWhy(target, ep),
			Fix:  fixTarget})
	case target != want && ep.CopilotPlatform == platform.GitHubCom:
		add(Finding{Kind: KindAPITarget, Level: Warn,
			What: fmt.Sprintf("awf %s will send Copilot requests to the plan host %s (%s)", orUnknown(rt.AWFVersion), target, rt.TargetFrom),
			Why:  fmt.Sprintf("a plan host answers only seats of that plan; %s answers every plan (the live probe with the token tells whether %s works for this seat)", want, target),
			Fix:  fixTarget})
	}

	// The hosts a data-residency tenant's Copilot path needs, after what awf adds by itself.
	var need []string
	if ep.Platform == platform.GHECom {
		need = append(need, platform.HostOf(ep.ServerURL), platform.HostOf(ep.APIURL))
	}
	if ep.CopilotPlatform == platform.GHECom && target == want {
		need = append(need, want)
	}
	var missing []string
	for _, h := range uniq(need) {
		if !Admits(rt.Allowed, h) {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		why := fmt.Sprintf("awf's Squid admits only the lock's network.allowDomains plus what awf %s adds by itself (%s)", orUnknown(rt.AWFVersion), orNone(rt.Added))
		if ep.Platform == platform.GHECom && !AtLeast(rt.AWFVersion, awfTenantCopilotAPI) {
			why += fmt.Sprintf("; awf adds a tenant's hosts from GITHUB_SERVER_URL only from %s (its four hosts from %s)", awfAddsTenant, awfTenantCopilotAPI)
		}
		add(Finding{Kind: KindAllowlist, Level: Fail,
			What: "the allowlist does not admit " + strings.Join(missing, ", "),
			Why:  why,
			Fix:  "network:\n  allowed:\n    - defaults\n" + yamlList(missing, "    ")})
	}

	r.checkToken(ep, add)
	r.checkProxy(add)

	// Notes: what awf does by itself, and what runs in the sandbox.
	if len(rt.Added) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("awf %s adds %s to the allowlist by itself: no need to list them", orUnknown(rt.AWFVersion), strings.Join(rt.Added, ", ")))
	}
	if target != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("awf %s's api-proxy holds the credential and sends Copilot requests to https://%s (%s) with `Authorization: %s …`", orUnknown(rt.AWFVersion), target, rt.TargetFrom, rt.Scheme))
	}
	if l.CLIVersion != "" {
		n := fmt.Sprintf("the agent runs the Copilot CLI %s offline against awf's api-proxy (COPILOT_OFFLINE, a placeholder key); it calls no GitHub host itself", l.CLIVersion)
		if !slices.Contains(TestedCLIVersions, l.CLIVersion) {
			n += fmt.Sprintf("; copilot-route's end-to-end tests run %s", strings.Join(TestedCLIVersions, " and "))
		}
		r.Notes = append(r.Notes, n)
	}
	return r
}

// checkToken: the agent's Copilot credential must be a token of the licensing host. With
// permissions copilot-requests: write the lock passes the job's own token (github.token), which
// belongs to the server the job runs on.
func (r *Report) checkToken(ep platform.Endpoints, add func(Finding)) {
	cred, ok := r.Lock.StepEnv["COPILOT_GITHUB_TOKEN"]
	serverHost := platform.HostOf(ep.ServerURL)
	switch {
	case r.Lock.StepEnv["COPILOT_PROVIDER_BASE_URL"] != "":
		// BYOK: the provider's key is the credential, and checkProxy says what is wrong with it.
	case !ok || strings.TrimSpace(cred) == "":
		add(Finding{Kind: KindToken, Level: Fail,
			What: "the agent step passes no COPILOT_GITHUB_TOKEN",
			Why:  "awf's api-proxy takes the Copilot credential from COPILOT_GITHUB_TOKEN; without it the agent has no Copilot access",
			Fix:  "permissions:\n  copilot-requests: write   # where the job's own token may use Copilot; else the secret COPILOT_GITHUB_TOKEN"})
	case jobToken(cred) && !strings.EqualFold(serverHost, ep.CopilotHost):
		add(Finding{Kind: KindToken, Level: Fail,
			What: fmt.Sprintf("the agent's Copilot credential is the job's own token (%s, from permissions copilot-requests: write), a token of %s", strings.TrimSpace(cred), serverHost),
			Why:  fmt.Sprintf("Copilot for this job is licensed on %s: only a token of %s works there (a GHES token never does)", ep.CopilotHost, ep.CopilotHost),
			Fix: fmt.Sprintf("permissions:\n  copilot-requests: none   # and store a fine-grained PAT of %s with the \"Copilot Requests\" permission as the secret COPILOT_GITHUB_TOKEN",
				ep.CopilotHost)})
	}
}

// checkProxy: copilot-route's proxy cannot be in a gh-aw agent's path (docs/gh-aw.md): awf sets
// the agent's COPILOT_API_URL and COPILOT_PROVIDER_BASE_URL to its own api-proxy after --env-all
// (src/services/optional-services.ts applies agentEnvAdditions last;
// src/services/credentials/copilot-credential-env.ts), and its api-proxy sends only to
// https://HOST:443, taking the host of a COPILOT_PROVIDER_BASE_URL the step passes.
func (r *Report) checkProxy(add func(Finding)) {
	env := r.Lock.StepEnv
	if v, ok := env["COPILOT_PROVIDER_BASE_URL"]; ok && pointsAtProxy(v) {
		add(Finding{Kind: KindProxyEnv, Level: Fail,
			What: fmt.Sprintf("engine.env sets COPILOT_PROVIDER_BASE_URL to %s", strings.TrimSpace(v)),
			Why:  "awf's api-proxy then treats it as a BYOK provider and sends to https://<its host>:443 (scheme, port and path dropped), where copilot-route's proxy does not listen; the agent itself keeps talking to the api-proxy",
			Fix:  "engine:\n  env: {}   # remove COPILOT_PROVIDER_BASE_URL; set engine.api-target to the Copilot API instead"})
	}
	for _, k := range []string{"COPILOT_API_URL", "COPILOT_GITHUB_TOKEN"} {
		v, ok := env[k]
		if !ok || !pointsAtProxy(v) || (k == "COPILOT_GITHUB_TOKEN" && !stepOutput(v)) {
			continue // the token is meant to be a secret or the job's token
		}
		what := fmt.Sprintf("engine.env sets %s to %s", k, strings.TrimSpace(v))
		why := "awf replaces the agent's COPILOT_API_URL with its own api-proxy after --env-all: the agent never sends to copilot-route's proxy"
		if k == "COPILOT_GITHUB_TOKEN" {
			why = "awf's api-proxy would then hold copilot-route's client token and send it upstream, which the platform refuses"
		}
		add(Finding{Kind: KindProxyEnv, Level: Warn, What: what, Why: why,
			Fix: "engine:\n  env: {}   # remove " + k + "; the api-proxy routes by engine.api-target"})
	}
	for _, s := range r.Lock.Before {
		if !isCopilotRoute(s.Uses) {
			continue
		}
		if v := strings.ToLower(strings.TrimSpace(s.With["start-proxy"])); v == "false" {
			continue
		}
		add(Finding{Kind: KindProxyUnused, Level: Warn,
			What: fmt.Sprintf("the step %q starts copilot-route's proxy, which no gh-aw agent uses", stepLabel(s)),
			Why:  "the agent's Copilot traffic goes to awf's api-proxy, never to a proxy on the runner; the proxy would only hold the real token for nothing",
			Fix:  "steps:\n  - uses: " + s.Uses + "\n    with:\n      start-proxy: false   # diagnose and check-lock still run"})
	}
}

func isCopilotRoute(uses string) bool {
	repo, _, _ := strings.Cut(strings.ToLower(uses), "@")
	return strings.HasSuffix(repo, "/copilot-route") || strings.Contains(repo, "/copilot-route/")
}

func stepLabel(s Step) string {
	if s.Name != "" {
		return s.Name
	}
	if s.ID != "" {
		return s.ID
	}
	return s.Uses
}

// pointsAtProxy: a value that is an expression (a step output such as copilot-route's proxy-url
// or client-token), plain http, or host.docker.internal — not a real https provider.
func pointsAtProxy(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	return strings.Contains(v, "${{") || strings.HasPrefix(v, "http://") || strings.Contains(v, "host.docker.internal")
}

// stepOutput: an expression reading a step's output (copilot-route's client-token, proxy-url).
func stepOutput(v string) bool {
	return strings.Contains(strings.ReplaceAll(v, " ", ""), "steps.")
}

// jobToken says whether a credential expression is the job's own GITHUB_TOKEN.
func jobToken(expr string) bool {
	e := strings.ToLower(strings.ReplaceAll(expr, " ", ""))
	return strings.Contains(e, "github.token") || strings.Contains(e, "secrets.github_token")
}

// isRESTHost: the REST API host of the server or of the licensing host (api.NAME.ghe.com,
// api.github.com).
func isRESTHost(h string, ep platform.Endpoints) bool {
	return h == platform.HostOf(ep.APIURL) || h == platform.HostOf(ep.CopilotRESTAPIURL) || h == "api.github.com"
}

// targetFits: the target is this platform's Copilot API, or (Copilot on github.com) a public plan
// host, which the warn case above discusses.
func targetFits(target, want string, ep platform.Endpoints) bool {
	if target == want {
		return true
	}
	if ep.CopilotPlatform == platform.GitHubCom {
		return target == "api.githubcopilot.com" || slices.Contains(platform.PublicPlanCopilotHosts, target)
	}
	return false
}

func targetWhy(target string, ep platform.Endpoints) string {
	switch {
	case ep.Platform == platform.GHES && ep.CopilotPlatform == platform.GHECom && target == "api.enterprise.githubcopilot.com":
		return "on GitHub Enterprise Server awf derives api.enterprise.githubcopilot.com from GITHUB_SERVER_URL, which is wrong when the Copilot seat is on a GHE.com tenant: only engine.api-target can say so"
	case ep.CopilotPlatform == platform.GHECom && strings.HasSuffix(target, ".githubcopilot.com"):
		return "a data-residency tenant's Copilot is served only under its own NAME.ghe.com; public githubcopilot.com hosts do not know its seats (and the tenant's data must not go there)"
	case strings.HasSuffix(target, ".ghe.com"):
		return "that is another tenant's host (or not a Copilot API): seats and tokens are per tenant"
	}
	return "the Copilot API must be the licensing host's: a token and seat are valid only there"
}

func yamlList(items []string, indent string) string {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s- %q\n", indent, it)
	}
	return strings.TrimRight(b.String(), "\n")
}

func orUnknown(v string) string {
	if v == "" {
		return "(version not pinned)"
	}
	return v
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// Probed is one live GET /models of the target with the real token, sent with the scheme the
// pinned awf sends (and the other one when that is refused): what check-lock's probe saw.
type Probed struct {
	URL         string `json:"url"`
	Scheme      string `json:"scheme"`       // the scheme awf sends, sent first
	Status      int    `json:"status"`       // its answer; 0: no answer
	Works       string `json:"works"`        // the scheme that got a 2xx; "" when neither did
	Models      int    `json:"models"`       // models listed by the 2xx answer
	Meaning     string `json:"meaning"`      // what the deciding answer means (diagnose's words)
	Fix         string `json:"fix"`          // diagnose's fix for a failure
	RequestID   string `json:"request_id"`   // X-GitHub-Request-Id of the deciding answer
	NotProbedBy string `json:"not_probed"`   // why there was no probe (no token …), when none
	WorksStatus int    `json:"works_status"` // status of the scheme that worked
}

// Probeable says whether the live probe may send the token to the target: only when the target
// is this platform's Copilot API (or, for Copilot on github.com, a public plan host). A token of
// a data-residency tenant must never go to a public host, nor any token to a host that is not a
// Copilot API for it; the static finding already says what is wrong with such a target.
func (r Report) Probeable(ep platform.Endpoints) (bool, string) {
	t := r.Runtime.Target
	switch {
	case t == "":
		return false, "the target is known only at run time"
	case isRESTHost(t, ep) || !targetFits(t, platform.HostOf(ep.CopilotAPIURL), ep):
		return false, fmt.Sprintf("%s is not the Copilot API of %s, so the token is not sent there; fix the target first", t, ep.CopilotHost)
	}
	return true, ""
}

// ApplyProbe adds what the live probe proved: a target that answers with awf's scheme confirms
// the lock (and settles a plan-host warning); one that wants the other scheme is an auth-scheme
// finding with the awf release to pin; one that refuses both, or does not answer, a target-probe
// finding.
func (r *Report) ApplyProbe(p Probed, ep platform.Endpoints) {
	rt := r.Runtime
	if p.NotProbedBy != "" {
		r.Notes = append(r.Notes, "the target was not probed: "+p.NotProbedBy)
		return
	}
	switch {
	case p.Works != "" && strings.EqualFold(p.Works, p.Scheme):
		r.Findings = slices.DeleteFunc(r.Findings, func(f Finding) bool { return f.Kind == KindAPITarget && f.Level == Warn })
	case p.Works != "":
		fix := fmt.Sprintf("# no awf release up to %s sends `%s` to %s: keep this lock and report it at github/gh-aw-firewall", orUnknown(rt.AWFVersion), p.Works, rt.Target)
		if rel := ReleaseSending(p.Works, rt.Target, rt.AWFVersion, ep); rel != "" {
			fix = fmt.Sprintf("sandbox:\n  agent:\n    version: %s   # the newest awf release that sends `%s` to %s", rel, p.Works, rt.Target)
		}
		r.Findings = append(r.Findings, Finding{Kind: KindAuthScheme, Level: Fail,
			What: fmt.Sprintf("%s refused `Authorization: %s` (%d) and answered `%s` (%d)%s", rt.Target, p.Scheme, p.Status, p.Works, p.WorksStatus, reqID(p.RequestID)),
			Why: fmt.Sprintf("awf %s sends `%s` to this target and has no setting for it (its choice changed in %s, %s, %s and %s); the agent would fail on its first request",
				orUnknown(rt.AWFVersion), p.Scheme, awfTokenEnterprise, awfTokenGHES, awfTokenBusiness, awfTokenTenant),
			Fix: fix})
	default:
		what := fmt.Sprintf("GET %s answered %d with `Authorization: %s`", p.URL, p.Status, p.Scheme)
		if p.Status == 0 {
			what = fmt.Sprintf("GET %s got no answer from this runner", p.URL)
		}
		fix := p.Fix
		if p.Status == 404 || p.Status == 0 {
			want := platform.HostOf(ep.CopilotAPIURL)
			if rt.Target != want {
				fix = "engine:\n  id: copilot\n  api-target: " + want
			}
		}
		r.Findings = append(r.Findings, Finding{Kind: KindTargetProbe, Level: Fail, What: what + reqID(p.RequestID), Why: p.Meaning, Fix: fix})
	}
}

func reqID(id string) string {
	if id == "" {
		return ""
	}
	return " (request id " + id + ")"
}
