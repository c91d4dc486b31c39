package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/1.1 has no request ids: a client pairs replies with requests by order alone. An upstream
// that sends a reply too many (two replies to one GET, a 204 or 304 with a body, bytes past its
// Content-Length) leaves bytes that the next request on that connection would read as its own
// reply, and that request's real reply would then be dropped as unsolicited. net/http notices such
// bytes while a connection is idle, but a request can take the connection from the idle pool
// before the transport's reader has looked: a window of microseconds in which a reply meant for
// nobody, or for another request, reaches the wrong client.
//
// The guard closes that window for every upstream connection that speaks HTTP/1.1 (HTTP/2 has
// stream ids and needs none):
//   - a request may be written on a connection only once the transport's reader is blocked on the
//     socket itself, with nothing buffered above it (bufio, TLS), so every byte it reads from then
//     on arrived after the request was sent;
//   - a reply that reaches the round trip before its request went out cannot be its reply:
//     it is dropped with its connection, and a body-less request is retried once on a new
//     connection.
//
// A reply that arrives after the next request was sent is indistinguishable from that request's
// reply to any HTTP/1.1 client; the proxy's own requests with the real credential (credClient)
// therefore never share a connection with agents' requests.

// guardedConn is an upstream HTTP/1.1 connection over TLS.
type guardedConn struct {
	*tls.Conn

	mu         sync.Mutex
	wake       chan struct{} // closed and replaced whenever parked or closed may have changed
	upper      bool          // the transport's reader is inside Read
	rawReading bool          // TLS is reading the socket
	armed      bool          // the next Write starts a request: it waits until the reader is parked
	closed     bool
}

// rawConn is the TCP connection under TLS; it tells whether TLS is waiting for socket bytes.
type rawConn struct {
	net.Conn
	g *guardedConn
}

func (r *rawConn) Read(p []byte) (int, error) {
	g := r.g
	g.mu.Lock()
	g.rawReading = true
	if g.upper {
		g.signalLocked()
	}
	g.mu.Unlock()
	n, err := r.Conn.Read(p)
	g.mu.Lock()
	g.rawReading = false
	g.mu.Unlock()
	return n, err
}

func (g *guardedConn) signalLocked() {
	close(g.wake)
	g.wake = make(chan struct{})
}

// parkedLocked: the reader waits on the socket with nothing above it buffered.
func (g *guardedConn) parkedLocked() bool { return g.upper && g.rawReading }

func (g *guardedConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	g.upper = true
	if g.rawReading {
		g.signalLocked()
	}
	g.mu.Unlock()
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	g.upper = false
	g.mu.Unlock()
	return n, err
}

// guardWait bounds how long a request waits for the reader to park; a connection whose reader
// does not get there in time is not used.
const guardWait = 5 * time.Second

var errGuard = errors.New("copilot-route: the upstream connection had reply bytes no request asked for; dropped it")

func (g *guardedConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	if g.armed {
		deadline := time.NewTimer(guardWait)
		defer deadline.Stop()
		for !g.parkedLocked() && !g.closed {
			w := g.wake
			g.mu.Unlock()
			select {
			case <-w:
			case <-deadline.C:
				g.Close()
				return 0, errGuard
			}
			g.mu.Lock()
		}
		if g.closed {
			g.mu.Unlock()
			return 0, errGuard
		}
		g.armed = false // the request goes out now: bytes read from here on are its reply's
	}
	g.mu.Unlock()
	return g.Conn.Write(p)
}

func (g *guardedConn) Close() error {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		g.signalLocked()
	}
	g.mu.Unlock()
	return g.Conn.Close()
}

func (g *guardedConn) arm() {
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
}

// unsent says whether the request the connection was armed for has not gone out yet.
func (g *guardedConn) unsent() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.armed
}

// tlsDialer dials an upstream and does the TLS handshake itself, so that an HTTP/1.1 connection
// can be guarded; an HTTP/2 one (offered only when h2 is true) is handed to net/http as the
// *tls.Conn it needs.
func (p *Proxy) tlsDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), h2 bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{RootCAs: p.cfg.RootCAs, MinVersion: tls.VersionTLS12, ServerName: host,
			NextProtos: []string{"http/1.1"}}
		if h2 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		g := &guardedConn{wake: make(chan struct{})}
		rc := &rawConn{Conn: raw, g: g}
		tc := tls.Client(rc, cfg)
		hctx, cancel := context.WithTimeout(ctx, p.cfg.TLSHandshakeTimeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			// net/http wants the *tls.Conn itself for HTTP/2; the raw wrapper only counts.
			return tc, nil
		}
		g.Conn = tc
		return g, nil
	}
}

// guardedTransport arms the connection a request gets and drops a reply that came before the
// request was written (see above).
type guardedTransport struct{ *http.Transport }

func (t guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err, stray := t.roundTrip(req)
	if stray && err == nil && (req.Body == nil || req.Body == http.NoBody) {
		// Once, on a new connection: the dropped one was closed.
		resp, err, stray = t.roundTrip(req)
	}
	if stray && err == nil {
		resp.Body.Close()
		return nil, errGuard
	}
	return resp, err
}

func (t guardedTransport) roundTrip(req *http.Request) (*http.Response, error, bool) {
	var conn atomic.Pointer[guardedConn]
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if g, ok := info.Conn.(*guardedConn); ok {
				g.arm()
				conn.Store(g)
			}
		},
	}
	resp, err := t.Transport.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil {
		return nil, err, false
	}
	// (httptrace's WroteRequest fires when the request is in net/http's write buffer, before it
	// reaches the connection: it cannot tell this.)
	if g := conn.Load(); g != nil && g.unsent() {
		// The reply came before the request went out: it belongs to no request of ours.
		g.Close()
		resp.Body.Close()
		return resp, nil, true
	}
	return resp, nil, false
}
