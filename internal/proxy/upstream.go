package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
)

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
		ModifyResponse: p.modifyResponse,
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

// rewrite builds the outbound request: the upstream from configuration, the path the policy
// allowed (canonical, so the upstream reads the path that was judged), the client's credentials
// and forwarding headers removed (ReverseProxy with Rewrite already drops hop-by-hop headers,
// Forwarded and X-Forwarded-For/Host/Proto), missing Copilot headers added. The real credential
// is set by credTransport, so a scheme retry can change it.
func (p *Proxy) rewrite(up *upstream) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(up.target)
		st := stateOf(pr.In.Context())
		if st != nil && st.path != "" {
			pr.Out.URL.Path = up.target.Path + st.path
			pr.Out.URL.RawPath = ""
		}
		h := pr.Out.Header
		for k, vs := range h {
			if clientOnlyHeader(k) || p.holdsClientSecret(vs) {
				delete(h, k)
			}
		}
		// Replies the proxy reads (usage, the model list) come unencoded: a client's "br" must not
		// make them unreadable, nor hide the usage max-tokens counts.
		if st != nil && (st.inf != nil || st.route == routeModels) {
			h["Accept-Encoding"] = identityEncoding
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

// modifyResponse reads the replies to GET /models (models.go): every one under a model policy,
// which filters them; otherwise until one has given the multipliers the usage report prices with
// (a catalogue does not change during a job, and a reply passed on untouched costs nothing).
func (p *Proxy) modifyResponse(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK || resp.Request == nil || (p.gov.policy == nil && p.prices.Load() != nil) {
		return nil
	}
	if st := stateOf(resp.Request.Context()); st != nil && st.route == routeModels && st.up == p.copilot {
		return p.filterModels(resp)
	}
	return nil
}

var identityEncoding = []string{"identity"}

var (
	copilotIntegrationKey = http.CanonicalHeaderKey(copilot.HeaderIntegrationID)
	apiVersionKey         = http.CanonicalHeaderKey(copilot.HeaderAPIVersion)
	interactionKey        = http.CanonicalHeaderKey(copilot.HeaderInteractionID)
)

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

func (b bufferPool) Get() []byte { return *(b.pool.Get().(*[]byte)) }

func (b bufferPool) Put(buf []byte) { b.pool.Put(&buf) }
