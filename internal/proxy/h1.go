package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// h1Transport is the upstream path of requests without a body (GET /models, the user look-up,
// the exchange): HTTP/1.1 keep-alive over TLS where the request is written and its reply read in
// the handler's own goroutine. net/http's Transport hands every request to a per-connection
// writer goroutine and its reply back from a per-connection reader goroutine; on this kind of
// machine those two hand-offs cost more than the proxy's own work (docs/performance.md).
// Requests it does not take (a body, an outbound proxy, another host) go to next.
//
// A body-less request can be sent again safely, so a reused keep-alive connection the upstream
// had closed while idle is retried once on a new connection, as net/http does.
type h1Transport struct {
	scheme, host, addr string // the one upstream it serves: "https", "host", "host:port"
	dial               func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig          *tls.Config
	viaProxy           bool // an outbound proxy is configured for the upstream: next takes everything
	handshakeTimeout   time.Duration
	headerTimeout      time.Duration
	idleTimeout        time.Duration
	maxIdle            int
	next               http.RoundTripper

	mu      sync.Mutex
	idle    []*h1Conn   // most recently used last
	janitor *time.Timer // runs prune while connections are idle
	armed   bool        // janitor is set to run
}

type h1Conn struct {
	t      *h1Transport
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	raw    syscall.RawConn // the socket, for idleQuiet; nil if the dialer gave no syscall.Conn
	idleAt time.Time
}

// errUpgrade: a 101 reply to a request that did not ask for one (the proxy refuses Upgrade).
var errUpgrade = errors.New("upstream switched protocols without being asked")

func newH1Transport(target *url.URL, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	tlsConfig *tls.Config, next *http.Transport) *h1Transport {
	port := target.Port()
	if port == "" {
		port = "443"
		if target.Scheme == "http" {
			port = "80"
		}
	}
	cfg := tlsConfig.Clone()
	cfg.ServerName = target.Hostname()
	cfg.NextProtos = []string{"http/1.1"}
	return &h1Transport{
		scheme: target.Scheme, host: target.Host, addr: net.JoinHostPort(target.Hostname(), port),
		dial: dial, tlsConfig: cfg, viaProxy: usesProxy(next.Proxy, target),
		handshakeTimeout: next.TLSHandshakeTimeout, headerTimeout: next.ResponseHeaderTimeout,
		idleTimeout: next.IdleConnTimeout, maxIdle: next.MaxIdleConnsPerHost, next: next,
	}
}

func (t *h1Transport) takes(req *http.Request) bool {
	if (req.Body != nil && req.Body != http.NoBody) || (req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		req.URL.Scheme != t.scheme || req.URL.Host != t.host || (req.Host != "" && req.Host != t.host) {
		return false
	}
	return !t.viaProxy
}

// usesProxy says whether requests to target go through an outbound proxy (or whether the proxy
// function fails for it, which next reports).
func usesProxy(proxy func(*http.Request) (*url.URL, error), target *url.URL) bool {
	if proxy == nil {
		return false
	}
	u, err := proxy(&http.Request{URL: &url.URL{Scheme: target.Scheme, Host: target.Host}, Header: http.Header{}})
	return err != nil || u != nil
}

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.takes(req) {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		var c *h1Conn
		var reused bool
		var err error
		if attempt == 0 {
			c, reused, err = t.get(ctx)
		} else {
			// Not from the pool: the upstream may have closed every idle connection at once
			// (a restart, its idle timer), and the next one would fail the same way.
			c, err = t.dialConn(ctx)
		}
		if err != nil {
			return nil, err
		}
		resp, sent, err := c.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A keep-alive connection the upstream closed while it sat idle fails before any reply
		// byte: send the request again once, on a new connection.
		if reused && attempt == 0 && !sent && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

// get takes the most recently used idle connection, or dials one. A connection idle for more
// than idleCheckAfter is first checked for anything that arrived while it sat idle (the upstream
// closing it, an unsolicited reply), which would otherwise be read as the next reply or cost a
// retry; under load connections come back within milliseconds and skip the check.
func (t *h1Transport) get(ctx context.Context) (*h1Conn, bool, error) {
	now := time.Now()
	for {
		var stale []*h1Conn
		var c *h1Conn
		t.mu.Lock()
		for len(t.idle) > 0 && c == nil {
			c = t.idle[len(t.idle)-1]
			t.idle[len(t.idle)-1] = nil
			t.idle = t.idle[:len(t.idle)-1]
			if t.idleTimeout > 0 && now.Sub(c.idleAt) > t.idleTimeout {
				stale = append(stale, c)
				c = nil
			}
		}
		t.mu.Unlock()
		closeAll(stale)
		if c == nil {
			c, err := t.dialConn(ctx)
			return c, false, err
		}
		if now.Sub(c.idleAt) <= idleCheckAfter || (c.br.Buffered() == 0 && (c.raw == nil || idleQuiet(c.raw))) {
			return c, true, nil
		}
		c.nc.Close()
	}
}

// idleCheckAfter: connections idle longer than this are checked before reuse (see get).
const idleCheckAfter = 250 * time.Millisecond

func closeAll(cs []*h1Conn) {
	for _, c := range cs {
		c.nc.Close()
	}
}

func (t *h1Transport) put(c *h1Conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	if len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, c)
		c = nil
		if !t.armed && t.idleTimeout > 0 {
			t.armed = true
			if t.janitor == nil {
				t.janitor = time.AfterFunc(t.idleTimeout, t.prune)
			} else {
				t.janitor.Reset(t.idleTimeout)
			}
		}
	}
	t.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// prune closes the connections idle for longer than idleTimeout. get only ever looks at the top
// of the stack, so after a burst the connections below would otherwise stay open (and, once the
// upstream closes its side, sit in CLOSE_WAIT) until the process ends; net/http's Transport has a
// timer per idle connection for the same reason. One timer per transport, armed while any
// connection is idle, runs this every idleTimeout.
func (t *h1Transport) prune() {
	now := time.Now()
	var stale []*h1Conn
	t.mu.Lock()
	keep := t.idle[:0]
	for _, c := range t.idle {
		if now.Sub(c.idleAt) > t.idleTimeout {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(t.idle[len(keep):])
	t.idle = keep
	t.armed = len(t.idle) > 0
	if t.armed {
		t.janitor.Reset(t.idleTimeout)
	}
	t.mu.Unlock()
	closeAll(stale)
}

// CloseIdleConnections closes the idle connections of this path and of next.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	closeAll(idle)
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// dialConn dials the upstream and, for https, completes the TLS handshake within
// handshakeTimeout. Errors read like net/http's (a *net.OpError "dial", a tls or x509 error, a
// handshake timeout), which is what the proxy's error replies are built from.
func (t *h1Transport) dialConn(ctx context.Context) (*h1Conn, error) {
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	raw := rawOf(nc)
	if t.scheme == "https" {
		tc := tls.Client(nc, t.tlsConfig)
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if t.handshakeTimeout > 0 {
			hctx, cancel = context.WithTimeoutCause(ctx, t.handshakeTimeout, errHandshakeTimeout)
		}
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			if errors.Is(context.Cause(hctx), errHandshakeTimeout) {
				return nil, errHandshakeTimeout
			}
			return nil, err
		}
		nc = tc
	}
	return &h1Conn{t: t, nc: nc, raw: raw, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// timeoutError is a net.Error that says Timeout(), as net/http's own timeouts do.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Timeout() bool { return true }

func (e *timeoutError) Temporary() bool { return true }

var (
	errHandshakeTimeout = &timeoutError{"net/http: TLS handshake timeout"}
	errHeaderTimeout    = &timeoutError{"net/http: timeout awaiting response headers"}
)

// aLongTimeAgo, set as a deadline, makes blocked reads and writes on a connection return now.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req and reads the reply's header. sent says whether the upstream may have
// seen the request: false when nothing of a reply came back (the connection was dead).
func (c *h1Conn) roundTrip(req *http.Request) (resp *http.Response, sent bool, err error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	defer func() {
		if err != nil {
			stop()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
	}()
	if c.t.headerTimeout > 0 {
		c.nc.SetDeadline(time.Now().Add(c.t.headerTimeout))
	}
	if err := req.Write(c.bw); err != nil {
		return nil, false, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, false, err
	}
	if _, err := c.br.Peek(1); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && ctx.Err() == nil {
			return nil, true, errHeaderTimeout
		}
		return nil, false, err
	}
	for range 8 {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() && ctx.Err() == nil {
				err = errHeaderTimeout
			}
			return nil, true, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, true, errUpgrade
		}
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			break
		}
		// 1xx informational replies (103 Early Hints) are skipped, as net/http does.
	}
	if resp.StatusCode < 200 {
		return nil, true, fmt.Errorf("upstream sent too many 1xx replies")
	}
	c.nc.SetDeadline(time.Time{})
	if ctx.Err() != nil { // cancelled while the deadline was being cleared
		return nil, true, ctx.Err()
	}
	b := &h1Body{c: c, body: resp.Body, ctx: ctx, stop: stop, reusable: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		b.release(true)
		return resp, true, nil
	}
	resp.Body = b
	return resp, true, nil
}

// h1Body is a reply body: at its end the connection goes back to the pool; closed before its
// end (or failed), the connection is closed, since the rest of the reply is still on it. A read
// blocked on a stalled upstream ends when the request's context does (ReverseProxy's case: the
// client went away); Close waits for a read in progress rather than interrupting it, unlike
// net/http's bodies, so a caller must not count on Close from another goroutine to unblock one.
type h1Body struct {
	c        *h1Conn
	body     io.ReadCloser
	ctx      context.Context
	stop     func() bool
	reusable bool

	mu   sync.Mutex
	done bool
	rerr error // what reads return once done: io.EOF, the read error, or ErrBodyReadAfterClose
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, b.rerr
	}
	n, err := b.body.Read(p)
	if err != nil {
		if err != io.EOF && b.ctx.Err() != nil {
			// The context's error, as net/http returns, not the "i/o timeout" of the deadline
			// that ended the read: ReverseProxy logs any other read error as an upstream failure.
			err = b.ctx.Err()
		}
		b.rerr = err
		b.release(err == io.EOF)
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.rerr = http.ErrBodyReadAfterClose
		b.release(false)
	}
	return nil
}

func (b *h1Body) release(complete bool) {
	b.done = true
	// stop is false when the request's context already ended, whose callback has set (or is
	// setting) a deadline in the past on the connection.
	if b.stop() && complete && b.reusable {
		b.c.t.put(b.c)
		return
	}
	b.c.nc.Close()
}
