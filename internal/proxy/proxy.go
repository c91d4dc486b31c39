// Package proxy is copilot-route's routing reverse proxy. A sandboxed Copilot agent talks only to
// it, holding only a per-job client token; the proxy checks that token, swaps in the real
// credential and sends each request to the upstream chosen by configuration (never by the
// request): /copilot_internal/* to the licensing host's REST API, everything else to the Copilot
// API.
package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes          = 32 << 20
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 5 * time.Minute // a non-streamed completion sends headers only when done
	DefaultShutdownGrace         = 10 * time.Second
	// retryBodyLimit bounds the request body kept in memory so it can be replayed with the other
	// Authorization scheme, while the scheme a host wants is still unknown.
	retryBodyLimit = 1 << 20
)

// Auth schemes for --auth-scheme.
const (
	SchemeAuto   = "auto"
	SchemeBearer = "bearer"
	SchemeToken  = "token"
)

// Config is everything the proxy needs; the CLI fills it from flags and the environment, tests
// build it directly.
type Config struct {
	Endpoints platform.Endpoints
	// ExplicitTarget is true when the Copilot API URL was given (copilot-api-target): discovery
	// may not override it.
	ExplicitTarget bool

	Token       copilot.Token // the real GitHub token; never leaves towards a client
	ClientToken copilot.Token // the per-job token clients must present; required

	AuthScheme    string // auto (default), bearer or token
	IntegrationID string // Copilot-Integration-Id added when the client sent none
	APIVersion    string // X-GitHub-Api-Version added when the client sent none
	InteractionID string // X-Interaction-Id added when the client sent none; random when empty

	RootCAs *x509.CertPool // roots for upstream TLS; nil means the system roots
	// DialContext dials upstreams; nil means a net.Dialer. Resolve maps "host:port" to the
	// address to dial instead (like curl --resolve), applied before DialContext.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	Resolve     map[string]string
	// Proxy chooses an outbound HTTP proxy per request (http.ProxyFromEnvironment); nil: none.
	Proxy func(*http.Request) (*url.URL, error)

	Logger *slog.Logger     // one JSON line per request; nil discards
	Now    func() time.Time // nil means time.Now

	MaxBodyBytes          int64
	DialTimeout           time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
	ShutdownGrace         time.Duration
	// PublicURL is the proxy's own URL as clients reach it (the exchange reply's endpoints.api);
	// empty means http://LISTEN-ADDRESS, set by Serve.
	PublicURL string

	// AllowRoutes widens the route policy: "METHOD /path" or "METHOD /prefix/*" (policy.go).
	AllowRoutes []string
	// MaxConns caps the client connections open at once (0: DefaultMaxConns); at the cap the
	// longest-idle connection is closed for a new one, or the new one is refused.
	MaxConns int

	// The model policy (models.go): case-insensitive globs ('*' any run of characters) an
	// inference request's model must match (AllowedModels, when set) and must not match
	// (BlockedModels). GET /models replies are filtered to the permitted models.
	AllowedModels, BlockedModels []string
	// Budgets (budget.go), 0 for none: inference requests forwarded, premium requests (Copilot's
	// accounting, decimal) and input + output tokens.
	MaxRequests        int64
	MaxPremiumRequests float64
	MaxTokens          int64
}

// Proxy is the routing proxy. It is an http.Handler; Serve runs it on a listener.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	stats     *collector
	rest      *upstream // /copilot_internal/*
	copilot   *upstream // everything else
	exchanger *copilot.Exchanger
	shimToken string // what the exchange shim hands out instead of a Copilot token
	policy    *policy
	gov       governance
	usage     *usageCollector
	// prices are the model multipliers: the proxy's own GET /models, or one read from a reply to
	// an agent; modelsMemo the last /models reply and what was made of it.
	prices     atomic.Pointer[priceList]
	priceFetch priceFetch
	modelsMemo atomic.Pointer[modelsMemo]

	clientToken string
	publicURL   atomic.Pointer[string]

	// Header values added when the client left them out, built once.
	integrationID, apiVersion, interactionID []string
}

// New builds the proxy. When the token can (not ghs_) and no target was given, it looks up
// /copilot_internal/user once and uses a validated endpoints.api as the Copilot API.
func New(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.ClientToken.IsZero() {
		return nil, errors.New("no client token: clients must authenticate (set COPILOT_ROUTE_CLIENT_TOKEN or let serve generate one)")
	}
	if cfg.Token.IsZero() {
		return nil, errors.New("no GitHub token: set COPILOT_GITHUB_TOKEN (or name another variable with --token-env)")
	}
	switch cfg.AuthScheme {
	case "":
		cfg.AuthScheme = SchemeAuto
	case SchemeAuto, SchemeBearer, SchemeToken:
	default:
		return nil, fmt.Errorf("auth scheme %q: use auto, bearer or token", cfg.AuthScheme)
	}
	if cfg.IntegrationID == "" {
		cfg.IntegrationID = copilot.DefaultIntegrationID
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = copilot.DefaultAPIVersion
	}
	if cfg.InteractionID == "" {
		cfg.InteractionID = randomString(32, hexAlphabet)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	pol, err := newPolicy(cfg.AllowRoutes)
	if err != nil {
		return nil, err
	}
	gov, err := newGovernance(cfg)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:           cfg,
		log:           cfg.Logger,
		now:           cfg.Now,
		stats:         newCollector(cfg.Now()),
		clientToken:   cfg.ClientToken.Reveal(),
		shimToken:     "copilot-route_" + randomString(40, alnumAlphabet),
		integrationID: []string{cfg.IntegrationID},
		apiVersion:    []string{cfg.APIVersion},
		interactionID: []string{cfg.InteractionID},
		policy:        pol,
		gov:           gov,
		usage:         newUsageCollector(cfg.Now),
	}
	if cfg.PublicURL != "" {
		p.SetPublicURL(cfg.PublicURL)
	}
	p.rest, err = p.newUpstream("rest-api", cfg.Endpoints.CopilotRESTAPIURL, "derived", false)
	if err != nil {
		return nil, err
	}
	source := "derived"
	if cfg.ExplicitTarget {
		source = "copilot-api-target"
	}
	p.copilot, err = p.newUpstream("copilot-api", cfg.Endpoints.CopilotAPIURL, source, true)
	if err != nil {
		return nil, err
	}
	p.exchanger = copilot.NewExchanger(p.credClient(p.rest), p.rest.target.String(), cfg.Token, 30*time.Second)
	p.discover(ctx)
	if gov.budget.limit[1] > 0 {
		// The premium budget prices requests with the tenant's own multipliers: read them now, so
		// the first request does not wait (a failure is retried when a request needs them).
		_, _ = p.ownPrices(ctx)
	}
	return p, nil
}

// SetPublicURL sets the URL clients reach the proxy at (the exchange reply names it).
func (p *Proxy) SetPublicURL(u string) {
	u = strings.TrimRight(u, "/")
	p.publicURL.Store(&u)
}

// PublicURL is the URL clients reach the proxy at, or "" before Serve.
func (p *Proxy) PublicURL() string {
	if u := p.publicURL.Load(); u != nil {
		return *u
	}
	return ""
}

// Upstreams describes where traffic goes.
func (p *Proxy) Upstreams() []UpstreamInfo {
	out := make([]UpstreamInfo, 0, 2)
	for _, up := range []*upstream{p.copilot, p.rest} {
		out = append(out, UpstreamInfo{Name: up.name, URL: up.target.String(), Source: up.source,
			Scheme: schemeName(up.scheme.Load())})
	}
	return out
}

// Stats is a snapshot of the traffic figures.
func (p *Proxy) Stats() Stats {
	s := p.stats.snapshot(p.now(), p.Upstreams())
	s.Policy = p.policy.stats()
	s.Usage = p.usageStats()
	return s
}

// ServeHTTP checks, authenticates, routes and proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{rw: w, start: time.Now(), route: routeNotAllowed}
	defer p.finish(st, r)

	reason := refuseReason(r)
	if reason == "" && p.tokenInURI(r) {
		reason = "token-in-url" // it would travel upstream and into access logs
	}
	if reason != "" {
		st.route, st.refusal = routeRefused, reason
		p.stats.refusal(reason)
		writeError(st, http.StatusBadRequest, "copilot-route refuses this request ("+reason+
			"): send origin-form requests (GET /path) straight to the proxy, without CONNECT, Upgrade, '//' or '..'", nil)
		return
	}
	if hasPrefix(r.URL.Path, "/_copilot-route/") {
		p.serveLocal(st, r)
		return
	}
	path, bad := canonicalPath(r)
	var rl *rule
	if bad == "" {
		rl = p.policy.match(r.Method, path)
	}
	if rl != nil {
		st.route = rl.label
	}
	// Authentication first: only a client holding the client token learns what the policy is.
	if !p.authorize(st, r) {
		return
	}
	if rl == nil {
		if bad != "" {
			path = r.URL.EscapedPath()
		}
		p.refuseRoute(st, r, path, bad)
		return
	}
	if r.ContentLength > p.cfg.MaxBodyBytes {
		st.refusal = "too-large"
		p.stats.refusal(st.refusal)
		w.Header().Set("Connection", "close")
		writeError(st, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d MiB: copilot-route refuses it", p.cfg.MaxBodyBytes>>20), nil)
		return
	}
	if rl.dest == destExchange {
		p.serveExchange(st, r)
		return
	}
	up := p.copilot
	if rl.dest == destREST {
		up = p.rest
	}
	st.up, st.path = up, path
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{st: st, rc: http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes)}
	}
	// The model policy and the budgets (govern.go), before anything goes upstream.
	switch {
	case isInference(rl):
		if !p.admitInference(st, r) {
			return
		}
	case rl.widen && p.gov.on:
		if !p.admitWidened(st, r, rl, path) {
			return
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	if streamed(st.route) {
		up.rpStream.ServeHTTP(st, r)
		return
	}
	up.rp.ServeHTTP(st, r)
}
