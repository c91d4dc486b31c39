package proxy

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// StatsPath is where the proxy serves its figures (client token required). The stop command and
// the job-summary renderer decode the reply into Stats.
const StatsPath = "/_copilot-route/stats"

// HealthPath answers locally without authentication: no secret, no upstream call.
const HealthPath = "/_copilot-route/health"

// Stats is the traffic report of one proxy run, as served at StatsPath. Field names are part of
// the contract with `stop` and the job summary: add fields, never rename them.
type Stats struct {
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`

	// Upstreams are the hosts traffic was sent to, and how each was chosen.
	Upstreams []UpstreamInfo `json:"upstreams"`
	// Discovery is the outcome of the /copilot_internal/user look-up at start.
	Discovery DiscoveryStats `json:"discovery"`

	Requests int64 `json:"requests"` // every request answered, local ones and refusals included
	// Routes counts requests per route and status; sorted by route, then status.
	Routes   []RouteCount `json:"routes"`
	BytesIn  int64        `json:"bytes_in"`  // request bodies read from clients
	BytesOut int64        `json:"bytes_out"` // response bodies written to clients

	// LatencyMS is the time from receiving a proxied request to sending its response headers
	// (what the proxy plus the upstream add before the first byte); DurationMS runs to the last
	// byte. Requests answered locally (health, stats, refusals, 401s) are not in them.
	LatencyMS  Percentiles `json:"latency_ms"`
	DurationMS Percentiles `json:"duration_ms"`

	UpstreamErrors     []UpstreamError `json:"upstream_errors"`      // sorted by host, then kind
	SchemeSwitches     []SchemeSwitch  `json:"auth_scheme_switches"` // in the order they happened
	ClientAuthFailures int64           `json:"client_auth_failures"`
	Refused            int64           `json:"refused"`         // hostile, oversized or not-allowed requests, never sent upstream
	RefusedReasons     []ReasonCount   `json:"refused_reasons"` // sorted by reason
	Exchange           ExchangeStats   `json:"exchange"`
	// Policy is the route policy's report: what was allowed beyond the defaults, what was refused.
	Policy PolicyStats `json:"policy"`
	// ConnCapHits counts connections closed because the connection cap was reached (an idle one
	// evicted, or the new one refused).
	ConnCapHits int64 `json:"conn_cap_hits"`
	// Usage is what inference requests spent (per model, tokens, premium requests), the quota
	// snapshot the tenant sent, each budget's use, and what the model policy and budgets refused.
	Usage UsageStats `json:"usage"`
}

// UpstreamInfo names one upstream the proxy routes to.
type UpstreamInfo struct {
	Name   string `json:"name"`   // "copilot-api" or "rest-api"
	URL    string `json:"url"`    // e.g. https://copilot-api.acme.ghe.com
	Source string `json:"source"` // "derived", "copilot-api-target", "discovered"
	Scheme string `json:"scheme"` // Authorization scheme in use now: "Bearer" or "token"
}

// DiscoveryStats says what the start-up /copilot_internal/user look-up gave.
type DiscoveryStats struct {
	// State is "skipped" (explicit target, or a token kind that cannot look up), "used",
	// "rejected" (the advertised endpoint failed validation or did not connect), "absent" (no
	// endpoints.api) or "failed" (the look-up itself failed).
	State      string `json:"state"`
	Advertised string `json:"advertised,omitempty"` // endpoints.api as the platform sent it (a URL, no secret)
	Reason     string `json:"reason,omitempty"`
}

// RouteCount is the number of requests of one route that got one status.
type RouteCount struct {
	Route  string `json:"route"` // e.g. "/chat/completions", "/copilot_internal/user", "local:stats"
	Status int    `json:"status"`
	Count  int64  `json:"count"`
}

// Percentiles are latency figures in milliseconds, read from a fixed-bucket histogram (each value
// is the upper bound of its bucket, so they are slight over-estimates). Count is the sample size.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// UpstreamError counts failures talking to one upstream host of one kind.
type UpstreamError struct {
	Host  string `json:"host"`
	Kind  string `json:"kind"` // refused, reset, dns, tls, timeout, mid-stream, other
	Count int64  `json:"count"`
	Hint  string `json:"hint"` // what to do about it
}

// SchemeSwitch records one change of the Authorization scheme for a host (--auth-scheme auto).
type SchemeSwitch struct {
	Host string    `json:"host"`
	From string    `json:"from"`
	To   string    `json:"to"`
	At   time.Time `json:"at"`
}

// ReasonCount counts refused requests by reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// ExchangeStats says how the token-exchange shim fared.
type ExchangeStats struct {
	// State is "not-requested" (no client asked), "ok" (a Copilot token is used upstream),
	// "refused" (the platform refused the exchange; the GitHub token is used directly) or
	// "error" (the exchange failed otherwise; the GitHub token is used directly).
	State          string `json:"state"`
	Requests       int64  `json:"requests"`                  // exchange requests answered to clients
	UpstreamStatus int    `json:"upstream_status,omitempty"` // last status from the platform
	Message        string `json:"message,omitempty"`         // the platform's message, e.g. "Resource not accessible by personal access token"
}

// Latency histogram: fixed bucket upper bounds in microseconds, roughly ×1.5 apart from 50 µs to
// 10 min. Recording is one atomic add; percentiles are read from the counts.
var bucketBoundsUS = func() []int64 {
	var b []int64
	for v := 50.0; v < 600e6; v *= 1.5 {
		b = append(b, int64(v))
	}
	return append(b, 600e6)
}()

type histogram struct {
	counts []atomic.Int64 // len(bucketBoundsUS)+1; the last is the overflow bucket
	maxUS  atomic.Int64
}

func newHistogram() *histogram {
	return &histogram{counts: make([]atomic.Int64, len(bucketBoundsUS)+1)}
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	i := sort.Search(len(bucketBoundsUS), func(i int) bool { return bucketBoundsUS[i] >= us })
	h.counts[i].Add(1)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

func (h *histogram) percentiles() Percentiles {
	counts := make([]int64, len(h.counts))
	var total int64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	maxMS := float64(h.maxUS.Load()) / 1000
	p := Percentiles{Count: total, Max: maxMS}
	if total == 0 {
		return p
	}
	at := func(q float64) float64 {
		rank := int64(q*float64(total) + 0.999999)
		if rank < 1 {
			rank = 1
		}
		var seen int64
		for i, c := range counts {
			seen += c
			if seen >= rank {
				if i >= len(bucketBoundsUS) {
					return maxMS
				}
				return min(float64(bucketBoundsUS[i])/1000, maxMS)
			}
		}
		return maxMS
	}
	p.P50, p.P95, p.P99 = at(0.50), at(0.95), at(0.99)
	return p
}

// route is a stats label: counts are kept per label and status without a map or a lock on the
// hot path. Each rule of the route policy names its label; the rest are local answers and
// refusals.
type route uint8

// routeNames are the labels as the stats show them, indexed by route.
var routeNames = [numRoutes]string{
	routeNotAllowed:    "not-allowed",
	routeChat:          "/chat/completions",
	routeResponses:     "/responses",
	routeMessages:      "/v1/messages",
	routeModels:        "/models",
	routeMCPReadonly:   "/mcp/readonly",
	routeAgents:        "/agents/swe/…",
	routeUser:          "/copilot_internal/user",
	routeExchange:      "/copilot_internal/v2/token",
	routeInternal:      "/copilot_internal/* and /copilot/*",
	routeWidened:       "allow-routes",
	routeHealth:        "local:health",
	routeStats:         "local:stats",
	routeLocalNotFound: "local:not-found",
	routeRefused:       "refused",
}

const (
	routeNotAllowed route = iota // no rule of the policy matches (403), or not yet routed
	routeChat
	routeResponses
	routeMessages
	routeModels
	routeMCPReadonly
	routeAgents
	routeUser
	routeExchange
	routeInternal
	routeWidened
	routeHealth
	routeStats
	routeLocalNotFound
	routeRefused // malformed or hostile request targets (400), before any routing
	numRoutes
)

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// collector gathers the figures. The per-request path is atomic adds only; rare events (errors,
// switches, refusals) take a mutex.
type collector struct {
	started  time.Time
	requests atomic.Int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	authFail atomic.Int64
	refused  atomic.Int64

	connCapHits atomic.Int64
	// statusCounts[route][status-100] for statuses 100..599; anything else lands on 0 (read as 0).
	statusCounts [numRoutes][500]atomic.Int64
	latency      *histogram
	duration     *histogram

	mu        sync.Mutex
	errors    map[errKey]*UpstreamError
	switches  []SchemeSwitch
	reasons   map[string]int64
	exchange  ExchangeStats
	discovery DiscoveryStats
}

type errKey struct{ host, kind string }

func newCollector(now time.Time) *collector {
	return &collector{
		started:   now,
		latency:   newHistogram(),
		duration:  newHistogram(),
		errors:    map[errKey]*UpstreamError{},
		reasons:   map[string]int64{},
		exchange:  ExchangeStats{State: "not-requested"},
		discovery: DiscoveryStats{State: "skipped"},
	}
}

func (c *collector) countStatus(route route, status int) {
	if status < 100 || status > 599 {
		status = 100 // "unknown": shown as status 0
	}
	c.statusCounts[route][status-100].Add(1)
}

func (c *collector) upstreamError(host, kind, hint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := errKey{host, kind}
	if e := c.errors[k]; e != nil {
		e.Count++
		return
	}
	c.errors[k] = &UpstreamError{Host: host, Kind: kind, Count: 1, Hint: hint}
}

func (c *collector) schemeSwitch(s SchemeSwitch) {
	c.mu.Lock()
	c.switches = append(c.switches, s)
	c.mu.Unlock()
}

func (c *collector) refusal(reason string) {
	c.refused.Add(1)
	c.mu.Lock()
	c.reasons[reason]++
	c.mu.Unlock()
}

func (c *collector) setExchange(f func(*ExchangeStats)) {
	c.mu.Lock()
	f(&c.exchange)
	c.mu.Unlock()
}

func (c *collector) setDiscovery(d DiscoveryStats) {
	c.mu.Lock()
	c.discovery = d
	c.mu.Unlock()
}

func (c *collector) snapshot(now time.Time, upstreams []UpstreamInfo) Stats {
	s := Stats{
		StartedAt:          c.started.UTC(),
		UptimeSeconds:      now.Sub(c.started).Seconds(),
		Upstreams:          upstreams,
		Requests:           c.requests.Load(),
		BytesIn:            c.bytesIn.Load(),
		BytesOut:           c.bytesOut.Load(),
		LatencyMS:          c.latency.percentiles(),
		DurationMS:         c.duration.percentiles(),
		ClientAuthFailures: c.authFail.Load(),
		Refused:            c.refused.Load(),
		ConnCapHits:        c.connCapHits.Load(),
		Routes:             []RouteCount{},
		UpstreamErrors:     []UpstreamError{},
		SchemeSwitches:     []SchemeSwitch{},
		RefusedReasons:     []ReasonCount{},
	}
	for r := range numRoutes {
		for i := range c.statusCounts[r] {
			if n := c.statusCounts[r][i].Load(); n > 0 {
				st := i + 100
				if i == 0 {
					st = 0
				}
				s.Routes = append(s.Routes, RouteCount{Route: routeNames[r], Status: st, Count: n})
			}
		}
	}
	sort.Slice(s.Routes, func(i, j int) bool {
		a, b := s.Routes[i], s.Routes[j]
		if a.Route != b.Route {
			return a.Route < b.Route
		}
		return a.Status < b.Status
	})
	c.mu.Lock()
	for _, e := range c.errors {
		s.UpstreamErrors = append(s.UpstreamErrors, *e)
	}
	s.SchemeSwitches = append(s.SchemeSwitches, c.switches...)
	for r, n := range c.reasons {
		s.RefusedReasons = append(s.RefusedReasons, ReasonCount{Reason: r, Count: n})
	}
	s.Exchange = c.exchange
	s.Discovery = c.discovery
	c.mu.Unlock()
	sort.Slice(s.UpstreamErrors, func(i, j int) bool {
		a, b := s.UpstreamErrors[i], s.UpstreamErrors[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.Kind < b.Kind
	})
	sort.Slice(s.RefusedReasons, func(i, j int) bool { return s.RefusedReasons[i].Reason < s.RefusedReasons[j].Reason })
	return s
}
