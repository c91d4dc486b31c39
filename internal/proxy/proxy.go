// Package proxy is copilot-route's routing reverse proxy. A sandboxed Copilot agent talks only to
// it, holding only a per-job client token; the proxy checks that token, swaps in the real
// credential and sends each request to the upstream chosen by configuration (never by the
// request): /copilot_internal/* to the licensing host's REST API, everything else to the Copilot
// API.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

	clientToken string
	publicURL   atomic.Pointer[string]

	// Header values added when the client left them out, built once.
	integrationID, apiVersion, interactionID []string
}

// upstream is one destination: its own pooled transports and its own Authorization scheme memory.
type upstream struct {
	name      string // "copilot-api" or "rest-api"
	target    *url.URL
	host      string // host name, for stats, logs and error replies
	source    string
	isCopilot bool            // add the headers the Copilot API needs
	transport *http.Transport // streamed routes: HTTP/2 when the upstream offers it
	plain     *http.Transport // every other route: HTTP/1.1 keep-alive
	// own carries the proxy's own requests with the real credential (discovery, exchange): a
	// connection each, never reused, never shared with agents' requests. An upstream that sends
	// a reply too many (HTTP/1.1 framing confusion) could otherwise hand the next request on that
	// connection a reply meant for another — an agent the proxy's exchanged Copilot token.
	own      *http.Transport
	rp       *httputil.ReverseProxy // replies of other routes
	rpStream *httputil.ReverseProxy // the same with smaller copy buffers, for streamed routes

	auto      bool         // --auth-scheme auto: may switch on a "badly formatted" reply
	scheme    atomic.Int32 // schemeBearer or schemeToken
	confirmed atomic.Bool  // a reply < 400 was seen with the current scheme
	bearer    []string     // "Bearer <token>", built once per credential
	token     []string     // "token <token>"
}

const (
	schemeBearer int32 = iota
	schemeToken
)

func schemeName(s int32) string {
	if s == schemeToken {
		return "token"
	}
	return "Bearer"
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
	return p, nil
}

func (p *Proxy) newUpstream(name, rawURL, source string, isCopilot bool) (*upstream, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%s upstream %q is not an http(s) URL: check --api-url / --copilot-api-target", name, rawURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	up := &upstream{
		name: name, target: u, host: u.Hostname(), source: source, isCopilot: isCopilot,
		transport: p.newTransport(true),
		auto:      p.cfg.AuthScheme == SchemeAuto,
		bearer:    []string{"Bearer " + p.cfg.Token.Reveal()},
		token:     []string{"token " + p.cfg.Token.Reveal()},
	}
	up.plain = p.newTransport(false)
	up.own = p.newTransport(false)
	up.own.DisableKeepAlives = true
	if p.cfg.AuthScheme == SchemeToken {
		up.scheme.Store(schemeToken)
	}
	up.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite(up),
		Transport: &credTransport{p: p, up: up},
		// 0, not -1: ReverseProxy flushes every write of a reply that is a stream (Content-Type
		// text/event-stream, or no Content-Length) whatever this says. For a reply of known
		// length, -1 only adds a timer, a goroutine and a lock per request (its "flush the
		// headers now" timer fires at once): ~3% of serve's CPU at 64 clients on GET /models.
		FlushInterval:  0,
		ErrorHandler:   p.upstreamFailed,
		ModifyResponse: nil,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BufferPool:     replyBuffers,
	}
	rs := *up.rp
	rs.BufferPool = streamBuffers
	up.rpStream = &rs
	return up, nil
}

// newTransport builds an upstream transport. Streams (completions: long, many at once) share
// HTTP/2 connections: 1,000 of them need 4-6 connections and ~60 MiB, where one HTTP/1.1
// connection each needs 1,000 connections and 115-138 MiB (and a handler reading its own
// connection costs a read per event: 256 streams had a later first chunk and a 2-4x per-chunk
// p99). Short request/response traffic goes over HTTP/1.1 keep-alive, with no lock shared by all
// requests: GET /models, three alternating runs each, added p50 at 1 client 0.18 ms against
// 0.23, 64 clients 12.9-13.3k requests/s against 10.8-12.1k, 0.80-0.84 s of proxy CPU per 10k
// requests against 0.85-0.91 (docs/performance.md).
func (p *Proxy) newTransport(h2 bool) *http.Transport {
	dialer := &net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	dial := p.cfg.DialContext
	if dial == nil {
		dial = dialer.DialContext
	}
	if len(p.cfg.Resolve) > 0 {
		next, resolve := dial, p.cfg.Resolve
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := resolve[strings.ToLower(addr)]; ok {
				addr = to
			}
			return next(ctx, network, addr)
		}
	}
	t := &http.Transport{
		Proxy:       p.cfg.Proxy,
		DialContext: dial,
		// HTTP/1.1 connections are guarded against replies no request asked for (guard.go). Through
		// an outbound proxy net/http does the TLS itself (TLSClientConfig), unguarded.
		DialTLSContext: p.tlsDialer(dial, h2),
		TLSClientConfig: &tls.Config{
			RootCAs:    p.cfg.RootCAs,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:     h2,
		TLSHandshakeTimeout:   p.cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout: p.cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// An upstream's reply headers are a few KiB; net/http's default allows 10 MiB.
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		// The client's own Accept-Encoding goes upstream unchanged; without this, a client that
		// sent none would get a body the transport had asked gzipped and silently unpacked.
		DisableCompression:  true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		// Bounds the connections to one upstream. Without it, a burst of requests beyond the
		// server's HTTP/2 stream limit (250 on Go, often 100) makes the transport dial one new TLS
		// connection per waiting request: 1,000 streams opened at once gave ~600 upstream
		// connections and 95-116 MiB RSS; with the bound, 4-6 connections and ~71 MiB
		// (scripts/bench.sh, docs/performance.md). An HTTP/1.1-only upstream gets at most this
		// many requests at once; more wait for a free connection.
		MaxConnsPerHost: 128,
		IdleConnTimeout: 90 * time.Second,
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
	}
	if !h2 {
		// Short requests: as many connections as clients send at once (no queueing behind a
		// long request), and no HTTP/2 even through an outbound proxy's tunnel. 4 KiB buffers
		// (a larger read bypasses bufio anyway) instead of 32: the idle connections 64 clients
		// leave behind cost ~2.5 MiB less RSS.
		t.MaxConnsPerHost = 0
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		t.ReadBufferSize, t.WriteBufferSize = 4<<10, 4<<10
	}
	return t
}

// streamed says whether a route's replies are streams (server-sent events when the request
// asks for them), which go over the HTTP/2 transport.
func streamed(route route) bool {
	return route == routeChat || route == routeResponses || route == routeMessages
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
	return s
}

// discover runs the start-up /copilot_internal/user look-up and adopts a validated endpoints.api.
func (p *Proxy) discover(ctx context.Context) {
	kind := p.cfg.Token.Kind()
	switch {
	case p.cfg.ExplicitTarget:
		p.stats.setDiscovery(DiscoveryStats{State: "skipped", Reason: "copilot-api-target given"})
		return
	case !kind.CanDiscover():
		p.stats.setDiscovery(DiscoveryStats{State: "skipped",
			Reason: fmt.Sprintf("a %s token cannot look up /copilot_internal/user", kind)})
		p.log.Info("discovery skipped", slog.String("token_kind", string(kind)))
		return
	}
	fallback := func(state, advertised, reason string) {
		p.stats.setDiscovery(DiscoveryStats{State: state, Advertised: advertised, Reason: reason})
		p.log.Warn("discovery not used; using the derived Copilot API",
			slog.String("state", state), slog.String("advertised", advertised),
			slog.String("reason", reason), slog.String("copilot_api", p.copilot.target.String()))
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	u, err := copilot.FetchUser(lctx, p.credClient(p.rest), p.rest.target.String(), p.cfg.Token)
	if err != nil {
		fallback("failed", "", err.Error())
		return
	}
	if u.Endpoints.API == "" {
		fallback("absent", "", "the reply names no endpoints.api")
		return
	}
	advertised := cutString(u.Endpoints.API, 200)
	tenant := ""
	if p.cfg.Endpoints.CopilotPlatform == platform.GHECom {
		tenant = p.cfg.Endpoints.CopilotHost
	}
	api, err := copilot.ValidateEndpoint(u.Endpoints.API, tenant)
	if err != nil {
		fallback("rejected", advertised, err.Error())
		return
	}
	target, _ := url.Parse(api) // ValidateEndpoint returns a well-formed https origin
	if err := p.probe(lctx, target); err != nil {
		fallback("rejected", advertised, err.Error())
		return
	}
	p.copilot.target = target
	p.copilot.host = target.Hostname()
	p.copilot.source = "discovered"
	p.stats.setDiscovery(DiscoveryStats{State: "used", Advertised: advertised})
	p.log.Info("discovery: using the advertised Copilot API", slog.String("copilot_api", api))
}

// probe checks that a discovered host connects before it replaces the derived one: a name that
// does not resolve, or that the runner cannot reach, must not break the whole job.
func (p *Proxy) probe(ctx context.Context, target *url.URL) error {
	addr := net.JoinHostPort(target.Hostname(), "443")
	if p.cfg.Proxy != nil {
		if pu, err := p.cfg.Proxy(&http.Request{URL: target}); err == nil && pu != nil {
			return nil // reached through the outbound proxy: it resolves the name, not us
		}
	}
	dial := p.rest.transport.DialContext
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s does not connect: %s", target.Hostname(), netErrText(err))
	}
	conn.Close()
	return nil
}

// reqState is one request's bookkeeping. It wraps the client's ResponseWriter (to count bytes and
// see the status) and travels to the transport in the request context.
type reqState struct {
	rw          http.ResponseWriter
	start       time.Time
	headerAt    time.Time
	status      int
	bytesOut    int64
	bytesIn     atomic.Int64 // the transport may read the body on its own goroutine
	route       route
	up          *upstream
	path        string       // the canonical path the policy allowed: what the upstream receives
	shim        bool         // authenticated with the exchange shim's token
	scheme      atomic.Int32 // scheme of the reply that reached the client
	retried     atomic.Bool
	tooLarge    atomic.Bool
	badBody     atomic.Bool
	errKind     string
	refusal     string
	wroteHeader bool
}

func (s *reqState) Header() http.Header { return s.rw.Header() }

func (s *reqState) WriteHeader(code int) {
	if s.wroteHeader {
		return
	}
	if code >= 200 {
		s.wroteHeader = true
		s.status = code
		s.headerAt = time.Now()
	}
	s.rw.WriteHeader(code)
}

func (s *reqState) Write(b []byte) (int, error) {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.rw.Write(b)
	s.bytesOut += int64(n)
	return n, err
}

func (s *reqState) Flush() {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	if f, ok := s.rw.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *reqState) Unwrap() http.ResponseWriter { return s.rw }

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// countingBody counts request body bytes as the transport reads them and notes an oversize body.
type countingBody struct {
	st *reqState
	rc io.ReadCloser
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.st.bytesIn.Add(int64(n))
	if err != nil && err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			b.st.tooLarge.Store(true)
		} else {
			b.st.badBody.Store(true) // the client's framing broke (bad chunk), not the upstream
		}
	}
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

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
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	if streamed(st.route) {
		up.rpStream.ServeHTTP(st, r)
		return
	}
	up.rp.ServeHTTP(st, r)
}

// finish records the request's figures and its log line. ReverseProxy aborts a stream whose
// upstream fails mid-way with panic(http.ErrAbortHandler); the panic is passed on so the server
// cuts the connection and the client sees a truncated stream, not a clean end.
func (p *Proxy) finish(st *reqState, r *http.Request) {
	v := recover()
	if v != nil && v == http.ErrAbortHandler && st.errKind == "" {
		if r.Context().Err() != nil {
			st.errKind = "client-gone"
		} else if st.up != nil {
			st.errKind = "mid-stream"
			p.stats.upstreamError(st.up.host, st.errKind, hintFor(st.errKind, st.up.host))
		}
	}
	// A proxied reply of known length may still have its tail in net/http's buffers, which the
	// server writes only once the handler returns: send it now, so that the stats and the log
	// line below are not on the client's clock. (A reply without Content-Length is a stream,
	// flushed at every write; a local reply keeps net/http's automatic Content-Length.)
	if v == nil && st.up != nil && st.wroteHeader && st.rw.Header()["Content-Length"] != nil {
		if f, ok := st.rw.(http.Flusher); ok {
			f.Flush()
		}
	}
	end := time.Now()
	status := st.status
	if status == 0 && r.Context().Err() != nil {
		status = 499 // the client went away before any reply: nginx's code for it
		st.errKind = "client-gone"
	}
	p.stats.requests.Add(1)
	p.stats.countStatus(st.route, status)
	p.stats.bytesIn.Add(st.bytesIn.Load())
	p.stats.bytesOut.Add(st.bytesOut)
	// Latency figures describe proxied requests only: health polls, refusals and 401s answered
	// locally in microseconds would hide what the upstreams cost.
	if st.up != nil {
		if !st.headerAt.IsZero() {
			p.stats.latency.record(st.headerAt.Sub(st.start))
		}
		p.stats.duration.record(end.Sub(st.start))
	}

	logPath := cutString(r.URL.Path, 256)
	if st.refusal == "token-in-url" {
		logPath = redactedText
	}
	upHost, scheme := "", ""
	if st.up != nil {
		upHost, scheme = st.up.host, schemeName(st.scheme.Load())
	}
	attrs := [...]slog.Attr{
		slog.String("route", routeNames[st.route]),
		slog.String("method", r.Method),
		slog.String("path", logPath),
		slog.Int("status", status),
		slog.String("upstream", upHost),
		slog.Float64("duration_ms", float64(end.Sub(st.start).Microseconds())/1000),
		slog.Int64("bytes_in", st.bytesIn.Load()),
		slog.Int64("bytes_out", st.bytesOut),
		slog.String("scheme", scheme),
		slog.Bool("retry", st.retried.Load()),
		slog.String("error", st.errKind),
		slog.String("refused", st.refusal),
	}
	p.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:]...)
	if v != nil {
		panic(v)
	}
}

func (p *Proxy) serveLocal(st *reqState, r *http.Request) {
	switch r.URL.Path {
	case HealthPath:
		st.route = routeHealth
		writeJSON(st, http.StatusOK, map[string]string{"status": "ok"})
	case StatsPath:
		st.route = routeStats
		if !p.authorize(st, r) {
			return
		}
		writeJSON(st, http.StatusOK, p.Stats())
	default:
		st.route = routeLocalNotFound
		writeError(st, http.StatusNotFound, "no such copilot-route endpoint: use "+HealthPath+" or "+StatsPath, nil)
	}
}

// serveExchange answers /copilot_internal/v2/token itself: the client gets the shim token, which
// only this proxy accepts, and the proxy's own URL as endpoints.api. Upstream, requests made with
// the shim token carry the exchanged Copilot token when the platform grants one, else the GitHub
// token.
func (p *Proxy) serveExchange(st *reqState, r *http.Request) {
	_, err := p.exchanger.Token()
	p.stats.setExchange(func(e *ExchangeStats) {
		e.Requests++
		var ae *copilot.APIError
		switch {
		case err == nil:
			e.State, e.UpstreamStatus, e.Message = "ok", http.StatusOK, ""
		case errors.As(err, &ae) && ae.Refused():
			e.State, e.UpstreamStatus, e.Message = "refused", ae.Status, ae.Message
		case errors.As(err, &ae):
			e.State, e.UpstreamStatus, e.Message = "error", ae.Status, ae.Message
		default:
			e.State, e.UpstreamStatus, e.Message = "error", 0, netErrText(err)
		}
	})
	if err != nil {
		p.log.Warn("token exchange not available; the GitHub token is used directly upstream",
			slog.String("error", err.Error()))
	}
	// endpoints.api is where this client reached the proxy (its Host header: an agent container
	// reaches it by another name than 127.0.0.1), else the proxy's own URL.
	api := p.PublicURL()
	if h := r.Host; h != "" && !strings.ContainsAny(h, "/@\\ ?#%") {
		if _, _, err := net.SplitHostPort(h); err == nil || net.ParseIP(strings.Trim(h, "[]")) != nil || !strings.Contains(h, ":") {
			api = "http://" + h
		}
	}
	now := p.now()
	writeJSON(st, http.StatusOK, map[string]any{
		"token":        p.shimToken,
		"expires_at":   now.Add(30 * time.Minute).Unix(),
		"refresh_in":   1500,
		"chat_enabled": true,
		"sku":          "copilot-route",
		"endpoints":    map[string]string{"api": api},
	})
}

// rewrite builds the outbound request: the upstream from configuration, the path the policy
// allowed (canonical, so the upstream reads the path that was judged), the client's credentials
// and forwarding headers removed (ReverseProxy with Rewrite already drops hop-by-hop headers,
// Forwarded and X-Forwarded-For/Host/Proto), missing Copilot headers added. The real credential
// is set by credTransport, so a scheme retry can change it.
func (p *Proxy) rewrite(up *upstream) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(up.target)
		if st := stateOf(pr.In.Context()); st != nil && st.path != "" {
			pr.Out.URL.Path = up.target.Path + st.path
			pr.Out.URL.RawPath = ""
		}
		h := pr.Out.Header
		for k, vs := range h {
			if clientOnlyHeader(k) || p.holdsClientSecret(vs) {
				delete(h, k)
			}
		}
		if up.isCopilot {
			if _, ok := h[copilotIntegrationKey]; !ok {
				h[copilotIntegrationKey] = p.integrationID
			}
			if _, ok := h[apiVersionKey]; !ok {
				h[apiVersionKey] = p.apiVersion
			}
			if _, ok := h[interactionKey]; !ok {
				h[interactionKey] = p.interactionID
			}
		}
	}
}

var (
	copilotIntegrationKey = http.CanonicalHeaderKey(copilot.HeaderIntegrationID)
	apiVersionKey         = http.CanonicalHeaderKey(copilot.HeaderAPIVersion)
	interactionKey        = http.CanonicalHeaderKey(copilot.HeaderInteractionID)
)

// credTransport sets the real credential with the scheme the upstream wants, switches scheme once
// on a "badly formatted" Authorization reply (--auth-scheme auto), and retries a GET whose
// connection failed.
type credTransport struct {
	p  *Proxy
	up *upstream
	// own: the proxy's own requests (discovery, token exchange), on up.own: never a connection
	// an agent's request uses, so no reply to one can reach the other.
	own bool
}

func (t *credTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.up.pinned(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	cred := t.p.cfg.Token.Reveal()
	bearer, token := t.up.bearer, t.up.token
	if st := stateOf(req.Context()); st != nil && st.shim && t.up.isCopilot {
		if ct, err := t.p.exchanger.Token(); err == nil {
			cred = ct.Reveal()
			bearer, token = []string{"Bearer " + cred}, []string{"token " + cred}
		}
	}
	resp, err := t.roundTrip(req, bearer, token)
	if err != nil {
		return nil, err
	}
	// An upstream that echoes the credential (a debugging proxy, a misconfigured gateway) must
	// not hand it to the agent: scrub reply headers, and the bodies of error replies.
	scrub(resp, cred, t.p.cfg.Token.Reveal())
	return resp, nil
}

func (t *credTransport) roundTrip(req *http.Request, bearer, token []string) (*http.Response, error) {
	up, p := t.up, t.p
	st := stateOf(req.Context())
	scheme := up.scheme.Load()
	// While the host's scheme is unconfirmed keep a small body, so a retry can resend it.
	replayable := req.Body == nil || req.Body == http.NoBody
	if up.auto && !replayable && !up.confirmed.Load() {
		var err error
		if replayable, err = bufferBody(req); err != nil {
			return nil, err
		}
	}
	setAuth(req, scheme, bearer, token)
	var tr http.RoundTripper = guardedTransport{up.plain}
	switch {
	case t.own:
		tr = up.own // a connection per request: nothing to guard
	case st != nil && streamed(st.route):
		tr = guardedTransport{up.transport}
	}
	resp, err := tr.RoundTrip(req)
	if err != nil && isDialError(err) && (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && req.Context().Err() == nil {
		resp, err = tr.RoundTrip(req)
	}
	if err != nil {
		return nil, err
	}
	if st != nil {
		st.scheme.Store(scheme)
	}
	if !up.auto || (resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized) {
		if resp.StatusCode < 400 && up.scheme.Load() == scheme {
			up.confirmed.Store(true)
		}
		return resp, nil
	}
	if !badlyFormatted(resp) || !replayable {
		return resp, nil
	}
	// Retry once with the other scheme before anything reaches the client.
	other := schemeToken
	if scheme == schemeToken {
		other = schemeBearer
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		body, gerr := req.GetBody()
		if gerr != nil {
			return resp, nil
		}
		retry.Body = body
	}
	setAuth(retry, other, bearer, token)
	resp2, err := tr.RoundTrip(retry)
	if err != nil {
		return resp, nil // the first reply says more than a failed retry
	}
	resp.Body.Close()
	if st != nil {
		st.retried.Store(true)
		st.scheme.Store(other)
	}
	if resp2.StatusCode < 400 || !badlyFormatted(resp2) {
		if up.scheme.CompareAndSwap(scheme, other) {
			sw := SchemeSwitch{Host: up.host, From: schemeName(scheme), To: schemeName(other), At: p.now().UTC()}
			p.stats.schemeSwitch(sw)
			p.log.Warn("upstream wants another Authorization scheme; switched for the rest of the run",
				slog.String("upstream", up.host), slog.String("from", sw.From), slog.String("to", sw.To),
				slog.Int("status_before", resp.StatusCode), slog.Int("status_after", resp2.StatusCode))
		}
		if resp2.StatusCode < 400 {
			up.confirmed.Store(true)
		}
	}
	return resp2, nil
}

const redactedText = "[REDACTED]"

// scrub replaces the secrets in reply headers and in the first MiB of an error reply's body
// (identity-encoded). Success bodies, streams above all, are passed on untouched: scanning them
// would cost every chunk, and no Copilot or GitHub endpoint echoes credentials in them.
func scrub(resp *http.Response, secrets ...string) {
	has := func(v string) bool {
		for _, s := range secrets {
			if s != "" && strings.Contains(v, s) {
				return true
			}
		}
		return false
	}
	clean := func(v string) string {
		for _, s := range secrets {
			if s != "" {
				v = strings.ReplaceAll(v, s, redactedText)
			}
		}
		return v
	}
	for _, vs := range resp.Header {
		for i, v := range vs {
			if has(v) {
				vs[i] = clean(v)
			}
		}
	}
	if resp.StatusCode < 400 || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return
	}
	const limit = 1 << 20
	head, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	rest := resp.Body
	if err != nil || !has(string(head)) {
		resp.Body = readCloser{io.MultiReader(strings.NewReader(string(head)), rest), rest}
		return
	}
	cleaned := clean(string(head))
	resp.Body = readCloser{io.MultiReader(strings.NewReader(cleaned), rest), rest}
	if len(head) < limit {
		resp.ContentLength = int64(len(cleaned))
		resp.Header.Set("Content-Length", strconv.Itoa(len(cleaned)))
	} else {
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
}

func setAuth(req *http.Request, scheme int32, bearer, token []string) {
	if scheme == schemeToken {
		req.Header["Authorization"] = token
	} else {
		req.Header["Authorization"] = bearer
	}
}

// bufferBody reads a body of up to retryBodyLimit into memory and makes it replayable. A larger
// body is passed on as a stream (no retry for it).
func bufferBody(req *http.Request) (bool, error) {
	if req.ContentLength > retryBodyLimit {
		return false, nil
	}
	orig := req.Body
	buf, err := io.ReadAll(io.LimitReader(orig, retryBodyLimit+1))
	if err != nil {
		return false, err
	}
	if len(buf) > retryBodyLimit {
		req.Body = readCloser{io.MultiReader(strings.NewReader(string(buf)), orig), orig}
		return false, nil
	}
	orig.Close()
	req.ContentLength = int64(len(buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(buf))), nil }
	req.Body, _ = req.GetBody()
	return true, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// badlyFormatted peeks at a 400/401 reply for GitHub's complaint about the Authorization scheme,
// and puts the peeked bytes back.
func badlyFormatted(resp *http.Response) bool {
	peek, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body = readCloser{io.MultiReader(strings.NewReader(string(peek)), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	s := strings.ToLower(string(peek))
	return strings.Contains(s, "badly formatted") ||
		(strings.Contains(s, "authorization") && (strings.Contains(s, "malformed") || strings.Contains(s, "invalid authorization header")))
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// upstreamFailed answers a request whose upstream failed before a reply: 502 or 504 JSON naming
// the host and a hint, never a secret.
func (p *Proxy) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	if st == nil {
		writeError(w, http.StatusBadGateway, "upstream failed", nil)
		return
	}
	if st.tooLarge.Load() {
		st.refusal = "too-large"
		p.stats.refusal(st.refusal)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d MiB: copilot-route refuses it", p.cfg.MaxBodyBytes>>20), nil)
		return
	}
	// Before the client-gone check: a client that half-closes mid-body also cancels the context,
	// and would otherwise get the empty 200 the server sends for a handler that wrote nothing.
	if st.badBody.Load() {
		st.refusal = "bad-body"
		p.stats.refusal(st.refusal)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusBadRequest, "copilot-route refuses this request (bad-body): its body ended early or its chunked encoding is malformed", nil)
		return
	}
	if r.Context().Err() != nil {
		st.errKind = "client-gone"
		return // nobody to answer
	}
	kind, status := classify(err)
	st.errKind = kind
	host := st.up.host
	hint := hintFor(kind, host)
	p.stats.upstreamError(host, kind, hint)
	p.log.Warn("upstream failed", slog.String("upstream", host), slog.String("kind", kind),
		slog.String("detail", netErrText(err)))
	writeError(w, status, fmt.Sprintf("copilot-route: upstream %s failed (%s)", host, kind),
		map[string]string{"upstream": host, "kind": kind, "hint": hint})
}

// classify names what went wrong talking to an upstream and the status to answer with.
func classify(err error) (kind string, status int) {
	var dnsErr *net.DNSError
	var ne net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &dnsErr):
		return "dns", http.StatusBadGateway
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &recErr), errors.As(err, &alert):
		return "tls", http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout", http.StatusGatewayTimeout
	case isRefused(err):
		return "refused", http.StatusBadGateway
	case isReset(err):
		return "reset", http.StatusBadGateway
	}
	if strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
		return "tls", http.StatusBadGateway
	}
	return "other", http.StatusBadGateway
}

func hintFor(kind, host string) string {
	switch kind {
	case "dns":
		return host + " does not resolve: check the host name (copilot-api-target, api-url) and the runner's DNS"
	case "tls":
		return "the TLS certificate of " + host + " is not trusted or not for that name: behind a TLS-inspecting proxy pass its CA with --ca-file"
	case "timeout":
		return host + " did not answer in time: check that the egress firewall admits " + host + ", or retry later"
	case "refused":
		return "nothing accepts connections at " + host + ": check copilot-api-target / api-url and that the egress firewall admits it"
	case "reset":
		return host + " closed the connection: often an egress firewall that does not admit " + host
	case "mid-stream":
		return host + " broke off a reply mid-stream: retry the request; if it keeps happening, check proxies or firewalls that cut long responses"
	}
	return "could not reach " + host + ": see the proxy log for the detail"
}

// netErrText is an error's innermost text, without the URL the http package prefixes.
func netErrText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return cutString(err.Error(), 300)
}

// refuseReason says why a request is refused before anything goes upstream, or "".
func refuseReason(r *http.Request) string {
	if r.Method == http.MethodConnect {
		return "connect"
	}
	// TRACE/TRACK make an upstream echo the request, real credential included, in a success body
	// (which scrub does not read).
	if r.Method == "TRACE" || r.Method == "TRACK" {
		return "method"
	}
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' || r.URL.Host != "" || r.URL.Scheme != "" {
		return "absolute-form"
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return "upgrade"
	}
	for _, v := range r.Header["Connection"] {
		if containsFold(v, "upgrade") {
			return "upgrade"
		}
	}
	raw := uri
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	return badPath(raw)
}

// badPath refuses paths that could leave the upstream's base path or be read differently by the
// upstream: '//' anywhere, '.' or '..' segments, backslashes, control bytes, and the same hidden
// behind percent-encoding (decoded up to three times, for double encoding).
func badPath(raw string) string {
	if len(raw) > 1 && raw[1] == '/' {
		return "double-slash"
	}
	s := raw
	for i := 0; i < 3 && strings.IndexByte(s, '%') >= 0; i++ {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "bad-escape"
		}
		if d == s {
			break
		}
		s = d
	}
	if strings.Contains(s, "//") {
		return "double-slash"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "bad-character"
		}
	}
	for rest := s; rest != ""; {
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest = rest, ""
		}
		if seg == "." || seg == ".." {
			return "traversal"
		}
	}
	return ""
}

// tokenInURI says whether the client or shim token is in the request target, as sent or
// percent-decoded (the upstream decodes it).
func (p *Proxy) tokenInURI(r *http.Request) bool {
	q := r.URL.RawQuery
	if strings.IndexByte(q, '%') >= 0 {
		if d, err := url.QueryUnescape(q); err == nil {
			q = d
		}
	}
	for _, s := range [...]string{r.RequestURI, r.URL.Path, q} {
		if strings.Contains(s, p.clientToken) || strings.Contains(s, p.shimToken) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, status int, msg string, extra map[string]string) {
	body := map[string]string{"message": msg}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"message":"copilot-route: could not encode the reply"}`)
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func cutString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

const (
	alnumAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	hexAlphabet   = "0123456789abcdef"
)

// randomString draws n characters from alphabet with crypto/rand, without modulo bias.
func randomString(n int, alphabet string) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	limit := 256 - 256%len(alphabet)
	for len(out) < n {
		rand.Read(buf) // never fails (Go 1.24+: it crashes the program rather than return an error)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// NewClientToken makes a client token shaped like an Actions token (ghs_ + 36 characters), the
// shape that makes the Copilot CLI skip its REST look-ups and send everything to COPILOT_API_URL.
func NewClientToken() copilot.Token {
	return copilot.NewToken("ghs_" + randomString(36, alnumAlphabet))
}

// bufferPool shares ReverseProxy's copy buffers of one size across requests (it would allocate
// 32 KiB per request). Streams get 8 KiB: an open stream holds its buffer for its whole life, and
// a heap profile with 1,000 open streams showed 34 MB of a ~56 MB heap in 32 KiB buffers that
// each carried ~100-byte events, which kept the collector running against serve's GOMEMLIMIT.
// Other replies (GET /models is tens of KiB on the real API) get 16 KiB: a read from TLS returns
// at most one record, 16 KiB, and each buffer's worth costs a write to the client, so a smaller
// buffer would mean more writes.
type bufferPool struct{ pool *sync.Pool }

func newBufferPool(size int) bufferPool {
	return bufferPool{&sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

var (
	streamBuffers = newBufferPool(8 << 10)
	replyBuffers  = newBufferPool(16 << 10)
)

func (b bufferPool) Get() []byte    { return *(b.pool.Get().(*[]byte)) }
func (b bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE)
}
