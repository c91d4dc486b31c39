// Package diagnose probes the live GitHub and Copilot endpoints of a job with the real token and
// says what each answer means and how to fix it. It exists because the failures users meet
// (a tenant's token exchange answering 403, /models answering 400 for one Authorization scheme, a
// missing seat, a firewall dropping a host) look alike from inside an agent; here each gets a
// one-line meaning and a fix.
//
// A probe's failure is a finding, never an error: Run always returns a Report.
package diagnose

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Verdict is the outcome of one probe.
type Verdict string

const (
	OK   Verdict = "ok"
	Warn Verdict = "warn"
	Fail Verdict = "fail"
	Skip Verdict = "skip" // not run, because an earlier finding makes it pointless or unsafe
)

// Overall is the verdict of a whole report.
type Overall string

const (
	Ready             Overall = "ready"
	ReadyWithWarnings Overall = "ready with warnings"
	WillNotWork       Overall = "will not work"
)

// Probe names, stable for JSON consumers.
const (
	ProbeMeta     = "meta"
	ProbeUser     = "user"
	ProbeExchange = "exchange"
	ProbeModels   = "models"
	ProbeToken    = "token"
)

// DefaultTimeout bounds each request of a probe.
const DefaultTimeout = 5 * time.Second

// Probe is the result of one check. No field ever holds a secret.
type Probe struct {
	Name      string        `json:"name"`
	Title     string        `json:"title"`
	Method    string        `json:"method,omitempty"`
	URL       string        `json:"url,omitempty"` // never carries a token or a query
	Status    int           `json:"status,omitempty"`
	Latency   time.Duration `json:"-"`
	Verdict   Verdict       `json:"verdict"`
	Meaning   string        `json:"meaning"`
	Fix       string        `json:"fix,omitempty"`
	RequestID string        `json:"request_id,omitempty"` // X-GitHub-Request-Id, for GitHub support

	// Details some probes fill.
	Scheme     string `json:"scheme,omitempty"`       // models: the Authorization scheme that worked (Bearer or token)
	Models     int    `json:"models,omitempty"`       // models: how many the API listed
	Plan       string `json:"plan,omitempty"`         // user: the Copilot plan
	Account    string `json:"account,omitempty"`      // user: the token's owner, from GET /user when the seat look-up failed
	Advertised string `json:"advertised,omitempty"`   // user: endpoints.api as the platform advertised it
	Error      string `json:"error,omitempty"`        // the transport error, scrubbed of secrets
	Retried    bool   `json:"retried,omitempty"`      // models: the other scheme was tried
	FirstTry   int    `json:"first_status,omitempty"` // models: the status of the first scheme when it was retried
}

// MarshalJSON adds latency in milliseconds (a Duration marshals as nanoseconds, which nobody reads).
func (p Probe) MarshalJSON() ([]byte, error) {
	type plain Probe
	return json.Marshal(struct {
		plain
		LatencyMS int64 `json:"latency_ms"`
	}{plain(p), p.Latency.Milliseconds()})
}

// Report is every probe's result and the overall verdict.
type Report struct {
	Verdict Overall `json:"verdict"`
	Probes  []Probe `json:"probes"`
	// Notes are detection warnings that still apply after probing, each a sentence with its fix.
	Notes []string `json:"notes,omitempty"`
	// CopilotAPIURL is the Copilot API the models probe used: the one the proxy would use.
	CopilotAPIURL string `json:"copilot_api_url"`
	// CopilotAPIFrom says why that URL ("derived", "advertised by /copilot_internal/user",
	// "copilot-api-target").
	CopilotAPIFrom string `json:"copilot_api_from"`
}

// Probe returns the probe with the given name, or false.
func (r Report) Probe(name string) (Probe, bool) {
	for _, p := range r.Probes {
		if p.Name == name {
			return p, true
		}
	}
	return Probe{}, false
}

// Config is what Run needs. Endpoints come from platform.Detect.
type Config struct {
	Endpoints platform.Endpoints
	Token     copilot.Token
	// Client makes every request; nil means NewClient(ClientConfig{}). Tests inject one that
	// trusts the fake tenant's CA and dials it for every tenant host name.
	Client *http.Client
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
	// AuthScheme is the proxy's --auth-scheme: auto (Bearer, then token), bearer or token.
	AuthScheme    string
	IntegrationID string // Copilot-Integration-Id; "" means copilot.DefaultIntegrationID
	UserAgent     string // "" means copilot-route
}

// Run probes concurrently and interprets the answers. It never fails: a probe that cannot run is
// a finding in the report.
func Run(ctx context.Context, cfg Config) Report {
	if cfg.Client == nil {
		cfg.Client, _ = NewClient(ClientConfig{})
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.IntegrationID == "" {
		cfg.IntegrationID = copilot.DefaultIntegrationID
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "copilot-route"
	}
	cfg.AuthScheme = strings.ToLower(strings.TrimSpace(cfg.AuthScheme))
	r := &runner{cfg: cfg, kind: cfg.Token.Kind()}

	tokenProbe := r.probeToken()
	var meta, user, exchange, models Probe
	var wg sync.WaitGroup
	userDone := make(chan struct{})
	wg.Add(4)
	go func() { defer wg.Done(); meta = r.probeMeta(ctx) }()
	go func() { defer wg.Done(); defer close(userDone); user = r.probeUser(ctx) }()
	go func() { defer wg.Done(); exchange = r.probeExchange(ctx) }()
	go func() { defer wg.Done(); models = r.probeModels(ctx, userDone) }()
	wg.Wait()

	if r.advertisedDead != "" {
		// The user probe spoke before the models probe found the advertised host dead.
		user.Verdict = Warn
		user.Meaning = fmt.Sprintf("it advertises %s, which does not connect from this runner: the proxy keeps the derived %s",
			r.advertisedDead, platform.HostOf(r.cfg.Endpoints.CopilotAPIURL))
		if user.Plan != "" {
			user.Meaning = "a Copilot seat (plan " + user.Plan + "); " + user.Meaning
		}
		user.Fix = "If " + r.advertisedDead + " is where your Copilot API is, allow it in the runner's egress rules (the proxy adopts it on its next start); otherwise nothing to do."
	}
	probes := []Probe{meta, user, exchange, models, tokenProbe}
	for i := range probes {
		if probes[i].Status == 0 {
			probes[i].Scheme = "" // no answer says nothing about a scheme
		}
	}
	rep := Report{
		Probes:         probes,
		CopilotAPIURL:  r.copilotURL,
		CopilotAPIFrom: r.copilotFrom,
	}
	rep.Notes = r.notes(rep)
	rep.Verdict = overall(rep)
	return rep
}

// overall: any failure means the agent will not work; any warning (or note) is worth reading.
func overall(r Report) Overall {
	v := Ready
	if len(r.Notes) > 0 {
		v = ReadyWithWarnings
	}
	for _, p := range r.Probes {
		switch p.Verdict {
		case Fail:
			return WillNotWork
		case Warn:
			v = ReadyWithWarnings
		}
	}
	return v
}

// Fixes lists the distinct fixes of the probes' warnings and failures, failures first, in probe
// order: what an annotation or the summary's "what to do" list shows.
func (r Report) Fixes() []Finding {
	var out []Finding
	seen := map[string]bool{}
	for _, want := range []Verdict{Fail, Warn} {
		for _, p := range r.Probes {
			if p.Verdict != want || p.Fix == "" || seen[p.Fix] {
				continue
			}
			seen[p.Fix] = true
			out = append(out, Finding{Level: want, Probe: p.Name, Title: p.Title, Meaning: p.Meaning, Fix: p.Fix})
		}
	}
	// Notes are not repeated here: they are detection's warnings, which detect already shows
	// and annotates.
	return out
}

// Finding is one thing to act on, for annotations.
type Finding struct {
	Level   Verdict // Fail or Warn
	Probe   string  // probe name, "" for a detection note
	Title   string
	Meaning string
	Fix     string
}

// notes are the detection warnings that still apply. On GHES without copilot-host, detect warns
// that it assumed github.com; a seat found there confirms the assumption, so the warning goes.
func (r *runner) notes(rep Report) []string {
	confirmed := false
	if p, ok := rep.Probe(ProbeModels); ok && p.Verdict == OK {
		confirmed = true
	}
	if p, ok := rep.Probe(ProbeUser); ok && p.Verdict == OK && p.Status == http.StatusOK {
		confirmed = true
	}
	var out []string
	for _, w := range r.cfg.Endpoints.Warnings {
		if confirmed && r.ghesDefaultCopilot() && strings.Contains(w, "copilot-host") {
			continue
		}
		out = append(out, w)
	}
	return out
}
