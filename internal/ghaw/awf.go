package ghaw

import (
	"slices"
	"strconv"
	"strings"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// What awf does by itself at run time, by release. Each boundary is the first release tag that
// contains the change in github.com/github/gh-aw-firewall (the commit is named):
const (
	// v0.24.1 (ad7a4bc5, #1264): the api-proxy derives the Copilot target from GITHUB_SERVER_URL —
	// api.<tenant>.ghe.com for a tenant (the REST host: wrong), api.enterprise.githubcopilot.com
	// for any other non-github.com server. Before it: api.githubcopilot.com everywhere.
	awfDerivesTarget = "v0.24.1"
	// v0.24.2 (96676b4e, #1316): a tenant's NAME.ghe.com and api.NAME.ghe.com join the allowlist.
	awfAddsTenant = "v0.24.2"
	// v0.24.3 (2e7e15ad, #1331): the derived tenant target is copilot-api.NAME.ghe.com, and
	// copilot-api. and copilot-telemetry-service. join the allowlist.
	awfTenantCopilotAPI = "v0.24.3"
	// v0.27.2 (5f5bb2b2, #4755): "token <GitHub token>" to api.enterprise.githubcopilot.com.
	awfTokenEnterprise = "v0.27.2"
	// v0.27.4 (7684ab64, #5076): "token" whenever GITHUB_SERVER_URL is a GHES.
	awfTokenGHES = "v0.27.4"
	// v0.27.9 (acd06eef, #5415): "token" to api.business.githubcopilot.com.
	awfTokenBusiness = "v0.27.9"
	// v0.28.0 (757b5d44, #6991): "token" to copilot-api.NAME.ghe.com.
	awfTokenTenant = "v0.28.0"
)

// schemeReleases are the releases where awf's Authorization scheme changed, newest first: the
// candidates check-lock offers when a target refuses the scheme the pinned release sends.
var schemeReleases = []string{awfTokenTenant, "v0.27.44", awfTokenBusiness, awfTokenGHES, awfTokenEnterprise, "v0.27.1"}

// Runtime is what awf will do with a lock on one platform.
type Runtime struct {
	AWFVersion string
	// Target is the host the api-proxy sends Copilot requests to, and TargetFrom why.
	Target     string
	TargetFrom string
	// Scheme is the Authorization scheme awf puts before the GitHub token: "Bearer" or "token".
	Scheme string
	// Added are the hosts awf adds to the allowlist by itself (from GITHUB_SERVER_URL,
	// GITHUB_API_URL and the explicit target).
	Added []string
	// Allowed is the allowlist awf enforces: the lock's plus Added.
	Allowed []string
}

// RuntimeFor models awf at the lock's pinned release on the platform ep describes: the runner's
// GITHUB_SERVER_URL is ep.ServerURL and GITHUB_API_URL ep.APIURL (the agent step passes both).
func RuntimeFor(l Lock, ep platform.Endpoints) Runtime {
	v := l.AWFVersion
	rt := Runtime{AWFVersion: v}
	serverHost := platform.HostOf(ep.ServerURL)
	tenant := ep.Platform == platform.GHECom
	ghes := ep.Platform == platform.GHES

	// The target: engine.api-target, else COPILOT_API_TARGET or a literal COPILOT_PROVIDER_BASE_URL
	// the step passes with --env-all (src/copilot-api-resolver.ts), else derived
	// (containers/api-proxy/providers/copilot-auth.js deriveCopilotApiTarget).
	switch {
	case l.CopilotTarget != "":
		rt.Target, rt.TargetFrom = l.CopilotTarget, "engine.api-target"
	case literal(l.StepEnv["COPILOT_API_TARGET"]) != "":
		rt.Target, rt.TargetFrom = targetHost(l.StepEnv["COPILOT_API_TARGET"]), "engine.env COPILOT_API_TARGET"
	case literal(l.StepEnv["COPILOT_PROVIDER_BASE_URL"]) != "":
		rt.Target, rt.TargetFrom = targetHost(l.StepEnv["COPILOT_PROVIDER_BASE_URL"]), "engine.env COPILOT_PROVIDER_BASE_URL"
	case l.StepEnv["COPILOT_PROVIDER_BASE_URL"] != "":
		// An expression: its host is known only at run time.
		rt.TargetFrom = "the host of engine.env COPILOT_PROVIDER_BASE_URL at run time"
	case !AtLeast(v, awfDerivesTarget):
		rt.Target, rt.TargetFrom = "api.githubcopilot.com", "awf "+v+"'s default (it derives nothing from GITHUB_SERVER_URL before "+awfDerivesTarget+")"
	case tenant && AtLeast(v, awfTenantCopilotAPI):
		rt.Target, rt.TargetFrom = "copilot-api."+serverHost, "derived by awf "+v+" from GITHUB_SERVER_URL"
	case tenant:
		rt.Target, rt.TargetFrom = "api."+serverHost, "derived by awf "+v+" from GITHUB_SERVER_URL (before "+awfTenantCopilotAPI+" awf derived the REST host)"
	case ghes:
		rt.Target, rt.TargetFrom = "api.enterprise.githubcopilot.com", "derived by awf "+v+" for any server other than github.com and *.ghe.com"
	default:
		rt.Target, rt.TargetFrom = "api.githubcopilot.com", "awf's default"
	}

	// The scheme (copilotTargetRequiresGitHubTokenPrefix in copilot-auth.js, by release).
	rt.Scheme = "Bearer"
	switch {
	case rt.Target == "api.enterprise.githubcopilot.com" && AtLeast(v, awfTokenEnterprise),
		rt.Target == "api.business.githubcopilot.com" && AtLeast(v, awfTokenBusiness),
		isTenantCopilotAPI(rt.Target) && AtLeast(v, awfTokenTenant),
		ghes && AtLeast(v, awfTokenGHES):
		rt.Scheme = "token"
	}

	// The allowlist (src/api-proxy-config-domains.ts resolveApiTargetsToAllowedDomains).
	if tenant && AtLeast(v, awfAddsTenant) {
		rt.Added = append(rt.Added, serverHost, "api."+serverHost)
		if AtLeast(v, awfTenantCopilotAPI) {
			rt.Added = append(rt.Added, "copilot-api."+serverHost, "copilot-telemetry-service."+serverHost)
		}
	}
	if h := platform.HostOf(ep.APIURL); AtLeast(v, awfAddsTenant) && h != "api.github.com" && strings.HasSuffix(h, ".ghe.com") {
		rt.Added = append(rt.Added, h)
	}
	if l.CopilotTarget != "" || strings.HasPrefix(rt.TargetFrom, "engine.env") {
		rt.Added = append(rt.Added, rt.Target)
	}
	rt.Added = uniq(rt.Added)
	rt.Allowed = uniq(append(slices.Clone(l.AllowDomains), rt.Added...))
	return rt
}

// Admits says whether an awf allowlist admits host: a bare entry admits the name and its
// subdomains, "*.x" only subdomains, a scheme or port on an entry is ignored here.
func Admits(allowed []string, host string) bool {
	host = strings.ToLower(host)
	for _, e := range allowed {
		e = strings.ToLower(strings.TrimSpace(e))
		if _, rest, ok := strings.Cut(e, "://"); ok {
			e = rest
		}
		e, _, _ = strings.Cut(e, ":")
		e, _, _ = strings.Cut(e, "/")
		if sub, ok := strings.CutPrefix(e, "*."); ok {
			if strings.HasSuffix(host, "."+sub) {
				return true
			}
			continue
		}
		if host == e || strings.HasSuffix(host, "."+e) {
			return true
		}
	}
	return false
}

// AtLeast compares awf release versions (v0.28.15 ≥ v0.28.4). An unknown version counts as new:
// a lock without a pinned release runs whatever awf the runner has, most likely a recent one.
func AtLeast(v, min string) bool {
	a, okA := parseVersion(v)
	b, _ := parseVersion(min)
	if !okA {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return true
}

func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	parts := strings.Split(strings.TrimPrefix(strings.TrimSpace(v), "v"), ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

// SchemeAt is the scheme awf release v sends to target on the platform ep describes.
func SchemeAt(v, target string, ep platform.Endpoints) string {
	l := Lock{AWFVersion: v, CopilotTarget: target}
	return RuntimeFor(l, ep).Scheme
}

// ReleaseSending is the newest release in schemeReleases (no newer than v) that sends scheme to
// target on ep, or "" when none does.
func ReleaseSending(scheme, target, v string, ep platform.Endpoints) string {
	for _, r := range schemeReleases {
		if AtLeast(v, r) && strings.EqualFold(SchemeAt(r, target, ep), scheme) {
			return r
		}
	}
	return ""
}

func isTenantCopilotAPI(host string) bool {
	rest, ok := strings.CutPrefix(host, "copilot-api.")
	return ok && strings.HasSuffix(rest, ".ghe.com") && strings.Count(rest, ".") == 2
}

// literal is v when it is a plain value, "" when it holds a ${{ … }} expression: an expression
// is known only at run time.
func literal(v string) string {
	if strings.Contains(v, "${{") {
		return ""
	}
	return strings.TrimSpace(v)
}

func uniq(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
