package diagnose

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/google/go-github/v60/github"
)

// Fixes that several probes give, kept in one place so they read the same everywhere.
const (
	fixClassicPAT = "Use a fine-grained PAT (github_pat_…) with the \"Copilot Requests\" permission, or the job's GITHUB_TOKEN with `permissions: copilot-requests: write`: Copilot refuses classic PATs (ghp_…)."
	fixNoToken    = "Pass the token with the github-token input (e.g. `github-token: ${{ secrets.COPILOT_GITHUB_TOKEN }}`) or set COPILOT_GITHUB_TOKEN."
	fixRetryLater = "A GitHub-side problem: run again later, and check https://www.githubstatus.com (or your GHES admin)."
)

func (r *runner) ep() platform.Endpoints { return r.cfg.Endpoints }

// tokenUsable says whether a probe may send the token at all: a classic PAT is refused by Copilot
// before any request (as the real CLI does), and there is nothing to send without one.
func (r *runner) tokenUsable() bool {
	return r.kind.WorksWithCopilot() || r.kind == copilot.KindUnknown
}

func (r *runner) skipped(name, title, method, url string) Probe {
	meaning := "not sent: Copilot refuses classic PATs, fix the token first"
	if r.kind == copilot.KindNone {
		meaning = "not sent: no token"
	}
	return Probe{Name: name, Title: title, Method: method, URL: url, Verdict: Skip, Meaning: meaning}
}

// ghesDefaultCopilot is the GHES case where nobody said where Copilot is licensed.
func (r *runner) ghesDefaultCopilot() bool {
	ep := r.ep()
	return ep.Platform == platform.GHES && strings.TrimSpace(ep.How("copilot_host")) != "from input copilot-host"
}

// withGHESHint adds, on GHES without copilot-host, the likely cause of an auth or seat failure.
func (r *runner) withGHESHint(fix string) string {
	if !r.ghesDefaultCopilot() {
		return fix
	}
	hint := "On GitHub Enterprise Server Copilot is licensed elsewhere and copilot-host defaults to github.com: if your seat is on a GHE.com tenant, set `copilot-host: NAME.ghe.com`; a token of the GHES instance itself does not work for Copilot."
	if fix == "" {
		return hint
	}
	return hint + " Otherwise: " + fix
}

// tokenFix is how to get a token Copilot accepts, by the kind of token the user has.
func (r *runner) tokenFix() string {
	switch r.kind {
	case copilot.KindFineGrainedPAT:
		return "Give the fine-grained PAT the \"Copilot Requests\" permission (or make a new one that has it), and check that it has not expired."
	case copilot.KindInstallation:
		return "Add `permissions: copilot-requests: write` to the job so its GITHUB_TOKEN may use Copilot, or pass a fine-grained PAT with the \"Copilot Requests\" permission."
	case copilot.KindOAuth, copilot.KindUserToServer:
		return "Sign in again for a fresh token, and check that the user has a Copilot seat."
	}
	return "Use a fine-grained PAT with the \"Copilot Requests\" permission."
}

func (r *runner) probeToken() Probe {
	p := Probe{Name: ProbeToken, Title: "Token kind", Verdict: OK}
	switch r.kind {
	case copilot.KindNone:
		p.Verdict, p.Meaning, p.Fix = Fail, "no token was given", fixNoToken
	case copilot.KindClassicPAT:
		p.Verdict, p.Meaning, p.Fix = Fail, "a classic PAT (ghp_…): Copilot refuses it before any request", fixClassicPAT
	case copilot.KindFineGrainedPAT:
		p.Meaning = "a fine-grained PAT (github_pat_…): it needs the \"Copilot Requests\" permission"
	case copilot.KindInstallation:
		p.Meaning = "an installation token (ghs_…, the Actions GITHUB_TOKEN or an App): the job needs `permissions: copilot-requests: write`"
	case copilot.KindOAuth:
		p.Meaning = "an OAuth token (gho_…)"
	case copilot.KindUserToServer:
		p.Meaning = "a user-to-server token (ghu_…)"
	default:
		p.Verdict, p.Meaning = Warn, "an unrecognised token shape (not gho_, ghu_, github_pat_ or ghs_)"
		p.Fix = "Copilot accepts fine-grained PATs (github_pat_…), OAuth tokens (gho_…, ghu_…) and installation tokens (ghs_…): check what the secret holds."
	}
	return p
}

func (r *runner) probeMeta(ctx context.Context) Probe {
	url := r.ep().APIURL + "/meta"
	host := platform.HostOf(url)
	p := Probe{Name: ProbeMeta, Title: "REST API reachable", Method: http.MethodGet, URL: url}
	// /meta is public: the token is not sent, so reachability is checked even without one.
	a := r.sendGitHub(ctx, r.ep().APIURL, false, func(ctx context.Context, c *github.Client) (*github.Response, error) {
		_, resp, err := c.Meta.Get(ctx)
		return resp, err
	})
	p.fill(a, r)
	switch {
	case a.status == 0:
		p.Verdict = Fail
		p.Meaning, p.Fix = r.transportFinding(host, a)
	case a.status < 300:
		p.Verdict, p.Meaning = OK, "the REST API at "+host+" answers"
	case a.status < 400:
		p.Verdict = Fail
		p.Meaning = fmt.Sprintf("%s redirects /meta (to %s): this is not the REST API", host, orNone(a.location))
		p.Fix = "Set api-url to the REST API (https://api.HOST on github.com and GHE.com, https://HOST/api/v3 on GHES)."
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		p.Verdict = Warn
		p.Meaning = fmt.Sprintf("%s answers but wants authentication for /meta (%d): a private-mode instance?", host, a.status)
		p.Fix = "Nothing to do if the other checks pass."
	case a.status == http.StatusNotFound:
		p.Verdict = Fail
		p.Meaning = host + " has no /meta: api-url does not point at a GitHub REST API"
		p.Fix = "Set api-url to the REST API (https://api.HOST on github.com and GHE.com, https://HOST/api/v3 on GHES)."
	case a.status >= 500:
		p.Verdict, p.Meaning, p.Fix = Warn, fmt.Sprintf("%s answered %d", host, a.status), fixRetryLater
	default:
		p.Verdict, p.Meaning = Warn, fmt.Sprintf("%s answered %d%s", host, a.status, quoteMsg(a.message))
	}
	return p
}

func (r *runner) probeUser(ctx context.Context) Probe {
	url := r.ep().CopilotRESTAPIURL + "/copilot_internal/user"
	host := platform.HostOf(url)
	const title = "Copilot seat and endpoints"
	if !r.tokenUsable() {
		return r.skipped(ProbeUser, title, http.MethodGet, url)
	}
	p := Probe{Name: ProbeUser, Title: title, Method: http.MethodGet, URL: url}
	a, scheme := r.sendREST(ctx, url, schemeBearer)
	p.fill(a, r)
	p.Scheme = scheme
	installation := r.kind == copilot.KindInstallation
	switch {
	case a.status == 0:
		p.Verdict = Fail
		p.Meaning, p.Fix = r.transportFinding(host, a)
	case a.status == http.StatusOK:
		r.interpretUser(&p, a.body)
	case installation && (a.status == http.StatusForbidden || a.status == http.StatusNotFound):
		p.Verdict = OK
		p.Meaning = fmt.Sprintf("%d: installation tokens cannot read this (normal); the proxy does not need it and uses the derived Copilot API", a.status)
	case a.status == http.StatusUnauthorized:
		p.Verdict = Fail
		p.Meaning = host + " refused the token (401): invalid, expired or revoked" + quoteMsg(a.message)
		p.Fix = r.withGHESHint(r.tokenFix())
	case a.status == http.StatusNotFound:
		p.Verdict = Fail
		p.Meaning = "no Copilot seat for this token's user on " + r.ep().CopilotHost + " (404)"
		p.Fix = r.withGHESHint("Ask an administrator of " + r.ep().CopilotHost + " to assign you a Copilot seat; if your seat is on another host, set copilot-host (e.g. `copilot-host: " + r.otherHostExample() + "`).")
	case a.status == http.StatusForbidden:
		p.Verdict = Fail
		p.Meaning = "no Copilot access for this token on " + r.ep().CopilotHost + " (403)" + quoteMsg(a.message)
		p.Fix = r.withGHESHint("Ask an administrator of " + r.ep().CopilotHost + " to assign you a Copilot seat. " + r.tokenFix())
	case a.status >= 500:
		p.Verdict, p.Meaning, p.Fix = Warn, fmt.Sprintf("%s answered %d", host, a.status), fixRetryLater
	default:
		p.Verdict, p.Meaning = Warn, fmt.Sprintf("%s answered %d%s", host, a.status, quoteMsg(a.message))
	}
	if p.Verdict == Fail && !installation && (a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status == http.StatusNotFound) {
		r.whose(ctx, &p, a.status, a.message)
	}
	return p
}

// whose asks the same REST API whose token this is (GET /user, through go-github), which tells
// the three failures of the seat look-up apart: a user without a seat (the token is theirs here),
// a token of another host or an expired one (/user refuses it too), and a token that is valid
// but may not use Copilot (/user accepts what Copilot refuses).
func (r *runner) whose(ctx context.Context, p *Probe, seatStatus int, seatMessage string) {
	var login string
	a := r.sendGitHub(ctx, r.ep().CopilotRESTAPIURL, true, func(ctx context.Context, c *github.Client) (*github.Response, error) {
		u, resp, err := c.Users.Get(ctx, "")
		if u != nil {
			login = clean(u.GetLogin(), 60)
		}
		return resp, err
	})
	host, where := platform.HostOf(r.ep().CopilotRESTAPIURL), r.ep().CopilotHost
	switch {
	case a.status == http.StatusOK && login != "":
		p.Account = login
		switch seatStatus {
		case http.StatusNotFound:
			p.Meaning = fmt.Sprintf("the token is @%s's on %s, and @%s has no Copilot seat there (404)", login, where, login)
		case http.StatusUnauthorized:
			p.Meaning = fmt.Sprintf("the token is @%s's on %s (GET /user accepts it), but Copilot refused it (401): it lacks Copilot access", login, where) + quoteMsg(seatMessage)
		default:
			p.Meaning = fmt.Sprintf("the token is @%s's on %s, but Copilot denied it (403)", login, where) + quoteMsg(seatMessage)
		}
	case a.status == http.StatusUnauthorized:
		others := "github.com, another GHE.com tenant or a GHES"
		if r.ep().CopilotPlatform == platform.GitHubCom {
			others = "a GHE.com tenant or a GHES"
		}
		p.Meaning = fmt.Sprintf("%s does not know this token: /copilot_internal/user answered %d and GET /user 401, so it was issued by another host (%s) or has expired", host, seatStatus, others)
		p.Fix = r.withGHESHint(fmt.Sprintf("Use a token issued by %s: a fine-grained PAT created on %s with the \"Copilot Requests\" permission.", where, where))
	}
}

// interpretUser reads the seat reply and compares the advertised Copilot API with the derived one.
func (r *runner) interpretUser(p *Probe, body []byte) {
	ep := r.ep()
	reply, err := copilot.ParseUserReply(body)
	if err != nil {
		p.Verdict = Warn
		p.Meaning = "the seat reply is not the JSON Copilot sends; the proxy falls back to the derived Copilot API"
		return
	}
	p.Plan = clean(reply.CopilotPlan, 40)
	seat := "a Copilot seat"
	if p.Plan != "" {
		seat += " (plan " + p.Plan + ")"
	}
	derived := ep.CopilotAPIURL
	advRaw := strings.TrimSpace(reply.Endpoints.API)
	p.Advertised = r.scrub(clean(advRaw, 200))
	p.Verdict = OK
	if advRaw == "" {
		p.Meaning = seat + "; no Copilot API advertised, the proxy uses the derived " + platform.HostOf(derived)
		return
	}
	tenantHost := ""
	if ep.CopilotPlatform == platform.GHECom {
		tenantHost = ep.CopilotHost
	}
	adv, err := copilot.ValidateEndpoint(advRaw, tenantHost)
	advHost := platform.HostOf(adv)
	switch {
	case err != nil:
		p.Verdict = Warn
		p.Meaning = seat + "; the advertised Copilot API `" + p.Advertised + "` fails validation (" + clean(err.Error(), 160) + "), so the proxy ignores it and uses " + platform.HostOf(derived)
		p.Fix = "Nothing to do if the models check passes; otherwise set copilot-api-target to your Copilot API."
	case sameURL(adv, derived):
		p.Meaning = seat + "; it advertises the Copilot API detect derived (" + advHost + ")"
	case r.explicitTarget():
		p.Meaning = seat + "; it advertises " + advHost + ", copilot-api-target overrides it"
	case !r.kind.CanDiscover():
		r.advertised = ""
		p.Verdict = Warn
		p.Meaning = seat + "; it advertises " + advHost + " but detect derived " + platform.HostOf(derived) + ", and the proxy cannot look it up with this kind of token"
		p.Fix = "Set `copilot-api-target: " + advHost + "` so the proxy uses the advertised Copilot API."
	case ep.CopilotPlatform == platform.GitHubCom && slices.Contains(platform.PublicPlanCopilotHosts, advHost):
		r.advertised = adv
		p.Meaning = seat + "; it advertises the plan's Copilot API " + advHost + ", which the proxy uses (the allowlist has it)"
	case tenantHost != "":
		// Validation put it under the tenant, which the allowlist admits as a whole (awf: the
		// bare tenant domain; harden-runner and bullfrog: *.TENANT). What can still go wrong is
		// a client that uses the derived URL without the proxy.
		r.advertised = adv
		p.Verdict = Warn
		p.Meaning = seat + "; it advertises " + advHost + " but detect derived " + platform.HostOf(derived) + ": the proxy uses the advertised one, which the tenant's allowlist entries cover"
		p.Fix = "Nothing to do for the proxy. A client that uses the copilot-api-url output directly should use `" + adv + "` instead, or pin one for both with copilot-api-target."
	default:
		r.advertised = adv
		p.Verdict = Warn
		p.Meaning = seat + "; it advertises " + advHost + " but detect derived " + platform.HostOf(derived) + ": the proxy uses the advertised one"
		p.Fix = "Add " + advHost + " to extra-domains so the egress allowlist admits it, or pin the Copilot API with copilot-api-target."
	}
}

// otherHostExample is an example copilot-host other than the one in use.
func (r *runner) otherHostExample() string {
	if r.ep().CopilotPlatform == platform.GHECom {
		return "github.com"
	}
	return "acme.ghe.com"
}

func (r *runner) explicitTarget() bool {
	return r.ep().How("copilot_api_url") == "from input copilot-api-target"
}

// needsDiscovery says whether the proxy would take the Copilot API from /copilot_internal/user.
func (r *runner) needsDiscovery() bool {
	return !r.explicitTarget() && r.kind.CanDiscover()
}

func (r *runner) probeExchange(ctx context.Context) Probe {
	url := r.ep().CopilotRESTAPIURL + "/copilot_internal/v2/token"
	host := platform.HostOf(url)
	const title = "Token exchange"
	if !r.tokenUsable() {
		return r.skipped(ProbeExchange, title, http.MethodGet, url)
	}
	p := Probe{Name: ProbeExchange, Title: title, Method: http.MethodGet, URL: url}
	a, scheme := r.sendREST(ctx, url, schemeToken)
	p.fill(a, r)
	p.Scheme = scheme
	const notNeeded = "the proxy does not need it (it sends the GitHub token itself, and answers older clients' exchanges)"
	lower := strings.ToLower(a.message)
	switch {
	case a.status == 0:
		// The proxy never depends on the exchange, so an unreachable exchange alone is a warning;
		// the other probes of the same host say whether it matters.
		p.Verdict = Warn
		p.Meaning, p.Fix = r.transportFinding(host, a)
	case a.status == http.StatusOK:
		p.Verdict, p.Meaning = OK, "this token can be exchanged for a Copilot token"
	case a.status == http.StatusForbidden && strings.Contains(lower, "personal access token"):
		p.Verdict = OK
		p.Meaning = "403 " + platform.Quote(a.message) + ": normal for fine-grained PATs on GHE.com; " + notNeeded
	case a.status == http.StatusForbidden && strings.Contains(lower, "integration"):
		p.Verdict = OK
		p.Meaning = "403 " + platform.Quote(a.message) + ": normal for the Actions token and App tokens; " + notNeeded
	case a.status == http.StatusForbidden || a.status == http.StatusNotFound:
		p.Verdict = OK
		p.Meaning = fmt.Sprintf("%d%s: this token cannot be exchanged here; %s", a.status, quoteMsg(a.message), notNeeded)
	case a.status == http.StatusUnauthorized:
		p.Verdict = Warn
		p.Meaning = host + " refused the token (401)" + quoteMsg(a.message)
		p.Fix = r.withGHESHint(r.tokenFix())
	case a.status >= 500:
		p.Verdict, p.Meaning, p.Fix = Warn, fmt.Sprintf("%s answered %d; %s", host, a.status, notNeeded), fixRetryLater
	default:
		p.Verdict, p.Meaning = Warn, fmt.Sprintf("%s answered %d%s; %s", host, a.status, quoteMsg(a.message), notNeeded)
	}
	return p
}

const fromAdvertised = "advertised by /copilot_internal/user"

// modelsTarget is the Copilot API the proxy would use: copilot-api-target, else a valid advertised
// endpoint when the token can discover it, else the derived one.
func (r *runner) modelsTarget() (string, string) {
	switch {
	case r.explicitTarget():
		return r.ep().CopilotAPIURL, "copilot-api-target"
	case r.advertised != "" && r.kind.CanDiscover():
		return r.advertised, fromAdvertised
	}
	return r.ep().CopilotAPIURL, "derived"
}

// firstScheme is the Authorization scheme the proxy sends first.
func (r *runner) firstScheme() string {
	if r.cfg.AuthScheme == "token" {
		return schemeToken
	}
	return schemeBearer
}

func other(scheme string) string {
	if scheme == schemeBearer {
		return schemeToken
	}
	return schemeBearer
}

// probeModels runs the models probe against the Copilot API the proxy would use. When that
// depends on discovery, it probes the derived API at once, alongside the seat probe, and probes
// again only when the seat reply names another valid API: the usual case waits for nothing.
func (r *runner) probeModels(ctx context.Context, userDone <-chan struct{}) Probe {
	if !r.needsDiscovery() {
		base, from := r.modelsTarget()
		r.copilotURL, r.copilotFrom = base, from
		p, _ := r.modelsAt(ctx, base)
		return p
	}
	derived := r.ep().CopilotAPIURL
	early := make(chan Probe, 1)
	go func() {
		p, _ := r.modelsAt(ctx, derived)
		early <- p
	}()
	<-userDone
	base, from := r.modelsTarget()
	if sameURL(base, derived) {
		r.copilotURL, r.copilotFrom = derived, "derived"
		return <-early
	}
	p, dead := r.modelsAt(ctx, base)
	fallback := <-early // always awaited, so no request outlives Run
	if !dead {
		r.copilotURL, r.copilotFrom = base, from
		return p
	}
	// The proxy checks that an advertised host connects before adopting it and otherwise keeps
	// the derived one; so does this probe.
	advHost := platform.HostOf(base)
	r.advertisedDead = advHost
	r.copilotURL, r.copilotFrom = derived, "derived (the advertised "+advHost+" does not connect)"
	fallback.Meaning = "the advertised " + advHost + " does not connect, so the proxy keeps the derived API: " + fallback.Meaning
	return fallback
}

// modelsAt probes GET base/models with the proxy's scheme, and the other one when refused.
// dead reports that the host did not even connect (what makes the proxy drop an advertised one).
func (r *runner) modelsAt(ctx context.Context, base string) (p Probe, dead bool) {
	url := base + "/models"
	host := platform.HostOf(url)
	const title = "Copilot API: models"
	if !r.tokenUsable() {
		return r.skipped(ProbeModels, title, http.MethodGet, url), false
	}
	p = Probe{Name: ProbeModels, Title: title, Method: http.MethodGet, URL: url}
	hdr := http.Header{}
	hdr.Set(copilot.HeaderIntegrationID, r.cfg.IntegrationID)
	hdr.Set(copilot.HeaderAPIVersion, copilot.DefaultAPIVersion)

	first := r.firstScheme()
	a := r.send(ctx, http.MethodGet, url, first, hdr)
	dead = a.status == 0 && dialFailed(a.err)
	p.fill(a, r)
	p.Scheme = first
	retryable := a.status == http.StatusBadRequest || a.status == http.StatusUnauthorized || a.status == http.StatusForbidden
	if !retryable {
		r.interpretModels(&p, a, host)
		return p, dead
	}
	second := other(first)
	b := r.send(ctx, http.MethodGet, url, second, hdr)
	p.Retried, p.FirstTry = true, a.status
	p.fill(b, r)
	p.Latency += a.latency
	p.Scheme = second
	switch {
	case b.status >= 200 && b.status < 300:
		count := countModels(b.body)
		p.Models = count
		forced := r.cfg.AuthScheme == "bearer" || r.cfg.AuthScheme == "token"
		firstSaid := fmt.Sprintf("%d with `%s`%s", a.status, first, quoteMsg(a.message))
		switch {
		case forced:
			p.Verdict = Fail
			p.Meaning = fmt.Sprintf("%s, but %s with `%s`: the proxy is set to send `%s`", firstSaid, modelsListed(count), second, first)
			p.Fix = fmt.Sprintf("Set `auth-scheme: %s`.", strings.ToLower(second))
			return p, dead
		case !badScheme(a):
			// In auto mode the proxy switches only when the refusal says the header is badly
			// formatted; any other refusal goes back to the agent.
			p.Verdict = Fail
			p.Meaning = fmt.Sprintf("%s, but %s with `%s`: the proxy switches schemes only on a \"badly formatted\" refusal, so it keeps `%s`", firstSaid, modelsListed(count), second, first)
			p.Fix = fmt.Sprintf("Set `auth-scheme: %s`.", strings.ToLower(second))
			return p, dead
		}
		p.Verdict = Warn
		p.Meaning = fmt.Sprintf("%s, but %s with `%s`: the proxy switches to `%s` by itself (auth-scheme auto)", firstSaid, modelsListed(count), second, second)
		p.Fix = fmt.Sprintf("Nothing is required; set `auth-scheme: %s` to skip the refused first request.", strings.ToLower(second))
	case b.status == 0:
		r.interpretModels(&p, a, host) // the first answer is the one that says something
		p.Scheme = first
	default:
		// Both refused: the worse of the two statuses explains it (401 over 403 over 400).
		worst := a
		if rank(b.status) > rank(a.status) {
			worst = b
		}
		r.interpretModels(&p, worst, host)
		if a.status == b.status {
			p.Meaning = fmt.Sprintf("with `%s` and `%s` alike, %s", first, second, p.Meaning)
		} else {
			p.Meaning = fmt.Sprintf("%d with `%s`, %d with `%s`: %s", a.status, first, b.status, second, p.Meaning)
		}
		p.Scheme = ""
	}
	return p, dead
}

func rank(status int) int {
	switch status {
	case http.StatusUnauthorized:
		return 3
	case http.StatusForbidden:
		return 2
	case http.StatusBadRequest:
		return 1
	}
	return 0
}

// interpretModels reads one /models answer (the retry logic is in probeModels).
func (r *runner) interpretModels(p *Probe, a answer, host string) {
	switch {
	case a.status == 0:
		p.Verdict = Fail
		p.Meaning, p.Fix = r.transportFinding(host, a)
		p.Fix += " Copilot will not work until " + host + " answers."
	case a.status >= 200 && a.status < 300:
		p.Models = countModels(a.body)
		p.Verdict = OK
		p.Meaning = fmt.Sprintf("%s with `%s`", modelsListed(p.Models), p.Scheme)
	case a.status < 400:
		p.Verdict = Fail
		p.Meaning = fmt.Sprintf("%s redirects /models (to %s): not a Copilot API", host, orNone(a.location))
		p.Fix = r.withGHESHint("Set copilot-api-target to your Copilot API, or copilot-host to where Copilot is licensed.")
	case a.status == http.StatusUnauthorized:
		p.Verdict = Fail
		p.Meaning = "the Copilot API refused the token: invalid, expired, or lacking the required permission" + quoteMsg(a.message)
		p.Fix = r.withGHESHint(r.tokenFix())
	case a.status == http.StatusForbidden:
		p.Verdict = Fail
		p.Meaning = "access denied by policy: no Copilot seat or the Copilot CLI is disabled for this user" + quoteMsg(a.message)
		p.Fix = "Ask an administrator to give you a Copilot seat and enable the Copilot CLI policy for you or your organization. " + r.tokenFix()
	case a.status == http.StatusBadRequest:
		p.Verdict = Fail
		p.Meaning = "the Copilot API refused the request (the CLI shows \"Failed to load models\")" + quoteMsg(a.message)
		p.Fix = "Run with auth-scheme auto; if that still fails, quote the request id to GitHub support."
	case a.status == http.StatusNotFound:
		p.Verdict = Fail
		p.Meaning = host + " has no /models (404): this is not the Copilot API for this token"
		p.Fix = r.withGHESHint("Set copilot-host to where your Copilot seat is (e.g. `copilot-host: " + r.otherHostExample() + "`) or copilot-api-target to your Copilot API.")
	case a.status == http.StatusTooManyRequests:
		p.Verdict = Warn
		p.Meaning = "rate limited (429)"
		if a.retryAt != "" {
			p.Meaning += ", retry after " + a.retryAt + " s"
		}
		p.Fix = "Wait and run again; a burst of agent runs on one token shares its Copilot quota."
	case a.status >= 500:
		// The agent's first call would meet the same answer: right now it will not work.
		p.Verdict, p.Meaning, p.Fix = Fail, fmt.Sprintf("the Copilot API answered %d: it is failing right now", a.status), fixRetryLater
	default:
		p.Verdict, p.Meaning = Warn, fmt.Sprintf("the Copilot API answered %d%s", a.status, quoteMsg(a.message))
	}
}

// fill copies what every probe reports from an answer.
func (p *Probe) fill(a answer, r *runner) {
	p.Status = a.status
	p.Latency = a.latency
	p.RequestID = a.reqID
	p.Error = r.errText(a)
}

func countModels(body []byte) int {
	var list struct {
		Data []json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &list) != nil {
		return 0
	}
	return len(list.Data)
}

func modelsListed(n int) string {
	switch n {
	case 0:
		return "the models answered"
	case 1:
		return "1 model listed"
	}
	return fmt.Sprintf("%d models listed", n)
}

func quoteMsg(m string) string {
	if m == "" {
		return ""
	}
	return " " + platform.Quote(m)
}

func orNone(s string) string {
	if s == "" {
		return "nowhere"
	}
	return s
}

func sameURL(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
}

// SchemeProbe is one GET /models sent as a client that knows a single Authorization scheme
// would send it (check-lock: the scheme the pinned awf sends), and, when that is refused, with
// the other scheme, which tells a refused scheme from a refused token.
type SchemeProbe struct {
	Probe
	// FirstScheme and FirstStatus are the client's own scheme and its answer (0: no answer).
	FirstScheme string `json:"first_scheme"`
	FirstStatus int    `json:"first_status_code,omitempty"`
	// Works is the scheme that got a 2xx, "" when neither did.
	Works string `json:"works,omitempty"`
}

// ProbeModelsWith probes GET base/models with scheme first, then (on 400, 401 or 403) with the
// other scheme. The Probe's Meaning and Fix interpret the answer that decides (as modelsAt does).
func ProbeModelsWith(ctx context.Context, cfg Config, base, scheme, integrationID string) SchemeProbe {
	if cfg.Client == nil {
		cfg.Client, _ = NewClient(ClientConfig{})
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "copilot-route"
	}
	r := &runner{cfg: cfg, kind: cfg.Token.Kind()}
	url := strings.TrimRight(base, "/") + "/models"
	host := platform.HostOf(url)
	sp := SchemeProbe{FirstScheme: scheme}
	if !r.tokenUsable() {
		sp.Probe = r.skipped(ProbeModels, "Copilot API: models", http.MethodGet, url)
		return sp
	}
	hdr := http.Header{}
	hdr.Set(copilot.HeaderIntegrationID, integrationID)
	hdr.Set(copilot.HeaderAPIVersion, copilot.DefaultAPIVersion)
	p := Probe{Name: ProbeModels, Title: "Copilot API: models", Method: http.MethodGet, URL: url, Scheme: scheme}
	a := r.send(ctx, http.MethodGet, url, scheme, hdr)
	p.fill(a, r)
	sp.FirstStatus = a.status
	decide := a
	if a.status == http.StatusBadRequest || a.status == http.StatusUnauthorized || a.status == http.StatusForbidden {
		second := other(scheme)
		b := r.send(ctx, http.MethodGet, url, second, hdr)
		p.Retried, p.FirstTry = true, a.status
		if b.status >= 200 && b.status < 300 {
			p.fill(b, r)
			p.Scheme = second
			decide = b
		}
	}
	r.interpretModels(&p, decide, host)
	if p.Verdict == OK {
		sp.Works = p.Scheme
	}
	sp.Probe = p
	return sp
}
