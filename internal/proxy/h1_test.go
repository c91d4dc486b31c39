package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive h1Transport directly over real loopback TLS sockets. Connections are counted
// on the server side (ConnState) and per path on the client side (the h1 dial and next's dial are
// wrapped separately), so reuse, retries and hand-offs are observed rather than assumed.

// h1Bound is how long a test waits for something that should happen at once. Exceeding it is a
// hang, not a slow run: no test asserts how long anything took.
const h1Bound = 10 * time.Second

var h1BigBody = bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB: chunked, larger than bufio's 4

// h1Upstream is an httptest TLS server whose connections the test counts.
type h1Upstream struct {
	srv     *httptest.Server
	pool    *x509.CertPool
	conns   atomic.Int64  // connections accepted
	closed  atomic.Int64  // connections closed or hijacked
	release chan struct{} // closed at clean-up; handlers that stall wait on it
	arrived chan string   // the path of each stalling request once it reached its handler

	gateWant int32 // "/gate" replies once this many requests are inside it
	gateN    atomic.Int32
	gateAll  chan struct{}
}

func startH1Upstream(tb testing.TB) *h1Upstream {
	tb.Helper()
	u := &h1Upstream{release: make(chan struct{}), arrived: make(chan string, 64), gateAll: make(chan struct{})}
	u.srv = httptest.NewUnstartedServer(u)
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.closed.Add(1)
		}
	}
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the untrusted-certificate case fails
	u.srv.StartTLS()
	tb.Cleanup(u.srv.Close)
	tb.Cleanup(func() { close(u.release) }) // runs first: stalled handlers return, then Close waits for them
	u.pool = x509.NewCertPool()
	u.pool.AddCert(u.srv.Certificate())
	return u
}

func (u *h1Upstream) stall(path string) {
	u.arrived <- path
	<-u.release
}

func (u *h1Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/small":
		io.WriteString(w, "hello")
	case "/big":
		w.Write(h1BigBody)
	case "/204":
		w.WriteHeader(http.StatusNoContent)
	case "/empty":
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case "/close":
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Host, b)
	case "/hints":
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	case "/slow-head":
		u.stall(r.URL.Path)
	case "/slow-body":
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		u.stall(r.URL.Path)
	case "/gate":
		if u.gateN.Add(1) == u.gateWant {
			close(u.gateAll)
		}
		select {
		case <-u.gateAll:
		case <-u.release:
		}
		io.WriteString(w, "through")
	case "/upgrade", "/many-1xx", "/until-close":
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		switch r.URL.Path {
		case "/upgrade":
			bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		case "/many-1xx":
			for range 9 {
				bw.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
			}
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		case "/until-close": // no length, no chunking: the body ends with the connection
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
		}
		bw.Flush()
	default:
		io.WriteString(w, r.URL.Path)
	}
}

// h1Client is an h1Transport built the way the proxy builds its plain path (newTransport(false)),
// with the h1 dial and next's dial counted apart.
type h1Client struct {
	h         *h1Transport
	next      *http.Transport
	h1Dials   atomic.Int64
	nextDials atomic.Int64
}

func newH1Client(tb testing.TB, rawURL string, roots *x509.CertPool, outbound func(*http.Request) (*url.URL, error)) *h1Client {
	tb.Helper()
	target, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{cfg: Config{RootCAs: roots, DialContext: loopbackOnly, Proxy: outbound, DialTimeout: h1Bound,
		TLSHandshakeTimeout: h1Bound, ResponseHeaderTimeout: time.Minute}}
	plain := p.newTransport(false)
	dial := plain.DialContext
	c := &h1Client{next: plain}
	c.h = newH1Transport(target, func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.h1Dials.Add(1)
		return dial(ctx, network, addr)
	}, plain.TLSClientConfig, plain)
	plain.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.nextDials.Add(1)
		return dial(ctx, network, addr)
	}
	tb.Cleanup(c.h.CloseIdleConnections)
	return c
}

func (c *h1Client) idleLen() int {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	return len(c.h.idle)
}

// h1Fetch sends one request through rt and reads the whole reply body.
func h1Fetch(ctx context.Context, rt http.RoundTripper, method, rawURL string, body io.Reader, edit func(*http.Request)) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return 0, "", err
	}
	if edit != nil {
		edit(req)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func h1Get(t *testing.T, rt http.RoundTripper, rawURL string) string {
	t.Helper()
	status, body, err := h1Fetch(context.Background(), rt, http.MethodGet, rawURL, nil, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d", rawURL, status)
	}
	return body
}

func h1Wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(h1Bound):
		t.Fatalf("nothing after %s: %s", h1Bound, what)
		var zero T
		return zero
	}
}

// Case 1: a reply read to its end gives its connection back, whatever delimits the body.
func TestH1ReusesOneConnection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"GET with Content-Length", http.MethodGet, "/small", 200, "hello"},
		{"GET chunked 10 KiB", http.MethodGet, "/big", 200, string(h1BigBody)},
		{"HEAD", http.MethodHead, "/small", 200, ""},
		{"204 No Content", http.MethodGet, "/204", 204, ""},
		{"Content-Length: 0", http.MethodGet, "/empty", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startH1Upstream(t)
			c := newH1Client(t, u.srv.URL, u.pool, nil)
			for i := range 20 {
				status, body, err := h1Fetch(context.Background(), c.h, tc.method, u.srv.URL+tc.path, nil, nil)
				if err != nil || status != tc.status || body != tc.body {
					t.Fatalf("request %d: status %d, %d bytes, %v; want %d and %d bytes", i, status, len(body), err, tc.status, len(tc.body))
				}
				if n := c.idleLen(); n != 1 {
					t.Fatalf("after request %d: %d idle connections, want 1", i, n)
				}
			}
			if n := u.conns.Load(); n != 1 {
				t.Errorf("20 sequential requests used %d connections, want 1", n)
			}
			if d, n := c.h1Dials.Load(), c.nextDials.Load(); d != 1 || n != 0 {
				t.Errorf("dials: h1 %d, next %d; want 1 and 0", d, n)
			}
		})
	}
}

// Case 2: a body closed before its end leaves the rest of the reply on the connection, which
// must not be reused.
func TestH1EarlyCloseDropsConnection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		read int
	}{{"closed unread", 0}, {"closed after 1 byte", 1}, {"closed after 5000 bytes", 5000}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startH1Upstream(t)
			c := newH1Client(t, u.srv.URL, u.pool, nil)
			req, _ := http.NewRequest(http.MethodGet, u.srv.URL+"/big", nil)
			resp, err := c.h.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, tc.read)
			if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, h1BigBody[:tc.read]) {
				t.Fatalf("first %d bytes: %q, %v", tc.read, got, err)
			}
			resp.Body.Close()
			if n := c.idleLen(); n != 0 {
				t.Fatalf("%d idle connections after an early close, want 0", n)
			}
			if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
				t.Errorf("read after close: %v, want %v", err, http.ErrBodyReadAfterClose)
			}
			if body := h1Get(t, c.h, u.srv.URL+"/small"); body != "hello" {
				t.Fatalf("next request: %q", body)
			}
			wantPool(t, u, c, 2, 1, "the early-closed one is not reused")
		})
	}
}

// Case 3: either side saying the connection ends with this reply keeps it out of the pool.
func TestH1ConnectionCloseNotReused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, path, body string
		reqClose         bool
	}{
		{"reply says Connection: close", "/close", "bye", false},
		{"request says Connection: close", "/small", "hello", true},
		{"reply delimited by the connection's end", "/until-close", "until close", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startH1Upstream(t)
			c := newH1Client(t, u.srv.URL, u.pool, nil)
			for i := range 2 {
				status, body, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+tc.path, nil,
					func(r *http.Request) { r.Close = tc.reqClose })
				if err != nil || status != 200 || body != tc.body {
					t.Fatalf("request %d: %d %q %v", i, status, body, err)
				}
				if n := c.idleLen(); n != 0 {
					t.Fatalf("after request %d: %d idle connections, want 0", i, n)
				}
			}
			if n := c.h1Dials.Load(); n != 2 {
				t.Errorf("%d dials for 2 requests, want 2", n)
			}
		})
	}
}

// h1TestCert is a certificate for 127.0.0.1 and the pool that trusts it, taken from a
// short-lived httptest server, for servers that speak raw bytes.
func h1TestCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.StartTLS()
	defer s.Close()
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return s.TLS.Certificates[0], pool
}

// h1Raw is a TLS server that hands each accepted connection to serve and closes it after.
type h1Raw struct {
	url     string
	pool    *x509.CertPool
	accepts atomic.Int64
	closed  chan int // the accept number of each connection the server has closed
}

func startH1Raw(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) *h1Raw {
	t.Helper()
	cert, pool := h1TestCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &h1Raw{url: "https://" + ln.Addr().String(), pool: pool, closed: make(chan int, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(r.accepts.Add(1))
			go func() {
				c.SetDeadline(time.Now().Add(h1Bound))
				serve(n, c, bufio.NewReader(c))
				c.Close()
				r.closed <- n
			}()
		}
	}()
	return r
}

// h1KeepAliveReply reads one request and answers it promising to keep the connection open.
func h1KeepAliveReply(c net.Conn, br *bufio.Reader) bool {
	if _, err := http.ReadRequest(br); err != nil {
		return false
	}
	_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
	return err == nil
}

// Case 4: a keep-alive connection the upstream closed while idle fails before any reply byte;
// the request goes again, once, on a new connection. A new connection that fails is not retried.
func TestH1StaleConnectionRetried(t *testing.T) {
	t.Parallel()
	t.Run("one stale idle connection", func(t *testing.T) {
		t.Parallel()
		raw := startH1Raw(t, func(_ int, c net.Conn, br *bufio.Reader) { h1KeepAliveReply(c, br) })
		c := newH1Client(t, raw.url, raw.pool, nil)
		if body := h1Get(t, c.h, raw.url+"/a"); body != "ok" {
			t.Fatalf("first reply %q", body)
		}
		if n := c.idleLen(); n != 1 {
			t.Fatalf("%d idle connections, want 1: the client must believe it reusable", n)
		}
		h1Wait(t, raw.closed, "the server closing the idle connection")
		wantOKOn(t, c, raw, "/b", 2, "the stale one and its retry")
	})
	t.Run("every idle connection stale", func(t *testing.T) {
		// Two connections go idle and the upstream closes both (it restarted, or its idle timer
		// fired): the retry must use a new connection, not the next stale one from the pool.
		t.Parallel()
		var inside atomic.Int32
		both := make(chan struct{})
		raw := startH1Raw(t, func(n int, c net.Conn, br *bufio.Reader) {
			if n <= 2 {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				if inside.Add(1) == 2 {
					close(both)
				}
				select {
				case <-both:
				case <-time.After(h1Bound):
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return
			}
			h1KeepAliveReply(c, br)
		})
		c := newH1Client(t, raw.url, raw.pool, nil)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if _, body, err := h1Fetch(context.Background(), c.h, http.MethodGet, raw.url+"/", nil, nil); err != nil || body != "ok" {
					t.Errorf("concurrent GET: %q %v", body, err)
				}
			})
		}
		wg.Wait()
		if n := c.idleLen(); n != 2 {
			t.Fatalf("%d idle connections, want 2", n)
		}
		h1Wait(t, raw.closed, "the server closing idle connection 1")
		h1Wait(t, raw.closed, "the server closing idle connection 2")
		wantOKOn(t, c, raw, "/after", 3, "two stale ones, one retry on a new connection")
	})
	t.Run("retried once only", func(t *testing.T) {
		t.Parallel()
		raw := startH1Raw(t, func(n int, c net.Conn, br *bufio.Reader) {
			if n == 1 {
				h1KeepAliveReply(c, br)
				return
			}
			http.ReadRequest(br) // and close without a reply
		})
		c := newH1Client(t, raw.url, raw.pool, nil)
		h1Get(t, c.h, raw.url+"/a")
		h1Wait(t, raw.closed, "the server closing the idle connection")
		if _, _, err := h1Fetch(context.Background(), c.h, http.MethodGet, raw.url+"/b", nil, nil); err == nil {
			t.Fatal("no error although the new connection closed without a reply too")
		}
		if n := raw.accepts.Load(); n != 2 {
			t.Errorf("%d connections accepted, want 2 (the stale one and one retry)", n)
		}
	})
	t.Run("new connection not retried", func(t *testing.T) {
		t.Parallel()
		raw := startH1Raw(t, func(_ int, _ net.Conn, br *bufio.Reader) { http.ReadRequest(br) })
		c := newH1Client(t, raw.url, raw.pool, nil)
		if _, _, err := h1Fetch(context.Background(), c.h, http.MethodGet, raw.url+"/", nil, nil); err == nil {
			t.Fatal("no error although the server closed without a reply")
		}
		if n := raw.accepts.Load(); n != 1 {
			t.Errorf("%d connections accepted, want 1: a new connection that fails is not retried", n)
		}
	})
}

// Case 5: no reply header within headerTimeout fails like net/http's ResponseHeaderTimeout, and
// the request, which the upstream may be working on, is not sent again.
func TestH1ResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	for _, warm := range []bool{false, true} {
		t.Run(fmt.Sprintf("reused connection %v", warm), func(t *testing.T) {
			t.Parallel()
			u := startH1Upstream(t)
			c := newH1Client(t, u.srv.URL, u.pool, nil)
			c.h.headerTimeout = 200 * time.Millisecond
			if warm {
				h1Get(t, c.h, u.srv.URL+"/small")
			}
			_, _, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+"/slow-head", nil, nil)
			var ne net.Error
			if !errors.Is(err, errHeaderTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("error %v, want %v with Timeout()", err, errHeaderTimeout)
			}
			if !strings.Contains(err.Error(), "timeout awaiting response headers") {
				t.Errorf("error text %q", err)
			}
			if kind, status := classify(err); kind != "timeout" || status != http.StatusGatewayTimeout {
				t.Errorf("classify: %s %d, want timeout 504", kind, status)
			}
			wantPool(t, u, c, 1, 0, "a timed-out request is not retried")
		})
	}
}

// Case 6: TLS failures read like net/http's, so the proxy classifies them the same way.
func TestH1TLSFailures(t *testing.T) {
	t.Parallel()
	t.Run("untrusted certificate", func(t *testing.T) {
		t.Parallel()
		u := startH1Upstream(t)
		c := newH1Client(t, u.srv.URL, x509.NewCertPool(), nil)
		_, _, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+"/small", nil, nil)
		var certErr *tls.CertificateVerificationError
		if !errors.As(err, &certErr) {
			t.Fatalf("error %v, want a certificate verification error", err)
		}
		if kind, status := classify(err); kind != "tls" || status != http.StatusBadGateway {
			t.Errorf("classify: %s %d, want tls 502", kind, status)
		}
	})
	t.Run("handshake timeout", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never speaks TLS
		if err != nil {
			t.Fatal(err)
		}
		var held sync.Mutex
		var conns []net.Conn
		t.Cleanup(func() {
			ln.Close()
			held.Lock()
			closeConns(conns)
			held.Unlock()
		})
		go func() {
			for {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				held.Lock()
				conns = append(conns, nc)
				held.Unlock()
			}
		}()
		target := "https://" + ln.Addr().String()
		c := newH1Client(t, target, x509.NewCertPool(), nil)
		c.h.handshakeTimeout = 200 * time.Millisecond
		_, _, err = h1Fetch(context.Background(), c.h, http.MethodGet, target+"/", nil, nil)
		var ne net.Error
		if !errors.Is(err, errHandshakeTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("error %v, want %v with Timeout()", err, errHandshakeTimeout)
		}
		if kind, status := classify(err); kind != "timeout" || status != http.StatusGatewayTimeout {
			t.Errorf("classify: %s %d, want timeout 504", kind, status)
		}
	})
}

func closeConns(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// Case 7: the request's context ending stops a blocked read at once, as net/http does, and the
// connection (with the rest of the reply on it) is dropped.
func TestH1ContextCancel(t *testing.T) {
	t.Parallel()
	t.Run("while reading the body", func(t *testing.T) {
		t.Parallel()
		u := startH1Upstream(t)
		c := newH1Client(t, u.srv.URL, u.pool, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.srv.URL+"/slow-body", nil)
		resp, err := c.h.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		part := make([]byte, 4)
		if _, err := io.ReadFull(resp.Body, part); err != nil || string(part) != "part" {
			t.Fatalf("first bytes %q, %v", part, err)
		}
		h1Wait(t, u.arrived, "the handler stalling")
		errc := make(chan error, 1)
		go func() {
			_, err := resp.Body.Read(make([]byte, 64))
			errc <- err
		}()
		cancel()
		err = h1Wait(t, errc, "the read to return after the cancel")
		// context.Canceled, as net/http returns: ReverseProxy logs any other read error as an
		// upstream failure, although it was the client that went away.
		if !errors.Is(err, context.Canceled) {
			t.Errorf("read error %v, want %v", err, context.Canceled)
		}
		if n := c.idleLen(); n != 0 {
			t.Errorf("%d idle connections after the cancel, want 0", n)
		}
		if body := h1Get(t, c.h, u.srv.URL+"/small"); body != "hello" {
			t.Fatalf("next request: %q", body)
		}
		if n := u.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
	t.Run("while waiting for the header", func(t *testing.T) {
		t.Parallel()
		u := startH1Upstream(t)
		c := newH1Client(t, u.srv.URL, u.pool, nil)
		h1Get(t, c.h, u.srv.URL+"/small") // a reused connection: the cancel must not cause a retry
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, _, err := h1Fetch(ctx, c.h, http.MethodGet, u.srv.URL+"/slow-head", nil, nil)
			errc <- err
		}()
		h1Wait(t, u.arrived, "the handler stalling")
		cancel()
		if err := h1Wait(t, errc, "RoundTrip to return after the cancel"); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want %v", err, context.Canceled)
		}
		wantPool(t, u, c, 1, 0, "a cancelled request is not retried")
	})
}

// Case 8: 1xx replies before the final one are skipped; 101 (never asked for) is an error.
func TestH1Informational(t *testing.T) {
	t.Parallel()
	t.Run("103 Early Hints skipped", func(t *testing.T) {
		t.Parallel()
		u := startH1Upstream(t)
		c := newH1Client(t, u.srv.URL, u.pool, nil)
		for i := range 3 {
			if body := h1Get(t, c.h, u.srv.URL+"/hints"); body != "after hints" {
				t.Fatalf("request %d: body %q", i, body)
			}
		}
		if n := u.conns.Load(); n != 1 {
			t.Errorf("%d connections, want 1", n)
		}
	})
	cases := []struct {
		name, path string
		want       func(error) bool
	}{
		{"101 refused", "/upgrade", func(err error) bool { return errors.Is(err, errUpgrade) }},
		{"too many 1xx", "/many-1xx", func(err error) bool { return err != nil && strings.Contains(err.Error(), "1xx") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startH1Upstream(t)
			c := newH1Client(t, u.srv.URL, u.pool, nil)
			_, _, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+tc.path, nil, nil)
			if !tc.want(err) {
				t.Fatalf("error %v", err)
			}
			wantPool(t, u, c, 1, 0, "no retry")
		})
	}
}

// Case 9: requests the lean path does not take reach the upstream through next.
func TestH1HandsOffToNext(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		method string
		body   string
		other  bool // to a second server
		host   string
		via    string // "h1" or "next"
		want   string
	}{
		{name: "GET without a body", method: http.MethodGet, via: "h1", want: "GET %s "},
		{name: "HEAD", method: http.MethodHead, via: "h1", want: ""},
		{name: "POST with a body", method: http.MethodPost, body: "payload", via: "next", want: "POST %s payload"},
		{name: "GET with a body", method: http.MethodGet, body: "odd", via: "next", want: "GET %s odd"},
		{name: "DELETE without a body", method: http.MethodDelete, via: "next", want: "DELETE %s "},
		{name: "another host", method: http.MethodGet, other: true, via: "next", want: "GET %s "},
		{name: "another Host header", method: http.MethodGet, host: "other.example", via: "next", want: "GET other.example "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startH1Upstream(t)
			dest := u
			if tc.other {
				dest = startH1Upstream(t)
			}
			roots := x509.NewCertPool()
			roots.AddCert(u.srv.Certificate())
			roots.AddCert(dest.srv.Certificate())
			c := newH1Client(t, u.srv.URL, roots, nil)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			status, got, err := h1Fetch(context.Background(), c.h, tc.method, dest.srv.URL+"/echo", body, func(r *http.Request) {
				if tc.host != "" {
					r.Host = tc.host
				}
			})
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, strings.TrimPrefix(dest.srv.URL, "https://"))
			}
			if err != nil || status != 200 || got != want {
				t.Fatalf("reply %d %q %v, want %q", status, got, err, want)
			}
			h1d, nextd := c.h1Dials.Load(), c.nextDials.Load()
			if (tc.via == "h1") != (h1d == 1 && nextd == 0) || (tc.via == "next") != (h1d == 0 && nextd == 1) {
				t.Errorf("dials: h1 %d, next %d; want the request on %s", h1d, nextd, tc.via)
			}
		})
	}
	t.Run("outbound proxy configured", func(t *testing.T) {
		t.Parallel()
		u := startH1Upstream(t)
		var connects atomic.Int64
		var seen atomic.Pointer[string]
		outbound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodConnect {
				http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
				return
			}
			connects.Add(1)
			seen.Store(&r.Host)
			up, err := loopbackOnly(r.Context(), "tcp", r.Host)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			cl, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				up.Close()
				return
			}
			brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
			brw.Flush()
			go func() {
				io.Copy(up, brw.Reader)
				up.Close()
			}()
			io.Copy(cl, up)
			cl.Close()
		}))
		t.Cleanup(outbound.Close)
		proxyURL, _ := url.Parse(outbound.URL)
		c := newH1Client(t, u.srv.URL, u.pool, http.ProxyURL(proxyURL))
		if !c.h.viaProxy {
			t.Fatal("viaProxy false with an outbound proxy configured for the target")
		}
		want := "GET " + strings.TrimPrefix(u.srv.URL, "https://") + " "
		if got := h1Get(t, c.h, u.srv.URL+"/echo"); got != want {
			t.Fatalf("reply %q, want %q", got, want)
		}
		if n := connects.Load(); n != 1 {
			t.Fatalf("the outbound proxy saw %d CONNECTs, want 1", n)
		}
		if h := *seen.Load(); h != strings.TrimPrefix(u.srv.URL, "https://") {
			t.Errorf("CONNECT to %q", h)
		}
		if n := c.h1Dials.Load(); n != 0 {
			t.Errorf("h1 dialed %d times; everything must go through the outbound proxy", n)
		}
	})
}

// Case 10: a connection idle longer than idleTimeout is closed instead of reused.
func TestH1IdleTimeout(t *testing.T) {
	t.Parallel()
	u := startH1Upstream(t)
	c := newH1Client(t, u.srv.URL, u.pool, nil)
	c.h.idleTimeout = time.Hour
	h1Get(t, c.h, u.srv.URL+"/small")
	h1Get(t, c.h, u.srv.URL+"/small")
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("%d connections before any timed out, want 1", n)
	}
	c.h.mu.Lock()
	c.h.idle[0].idleAt = time.Now().Add(-2 * time.Hour)
	c.h.mu.Unlock()
	h1Get(t, c.h, u.srv.URL+"/small")
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the expired one is not reused", n)
	}
	waitFor(t, "the expired connection to be closed", func() bool { return u.closed.Load() == 1 })
	if n := c.idleLen(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

// Case 11: at most maxIdle connections are kept; the rest are closed when their reply ends.
func TestH1MaxIdle(t *testing.T) {
	t.Parallel()
	const clients = 5
	u := startH1Upstream(t)
	u.gateWant = clients // every request waits for all the others: five connections at once
	c := newH1Client(t, u.srv.URL, u.pool, nil)
	c.h.maxIdle = 2
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			if _, body, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+"/gate", nil, nil); err != nil || body != "through" {
				t.Errorf("GET /gate: %q %v", body, err)
			}
		})
	}
	wg.Wait()
	wantPool(t, u, c, clients, 2, "maxIdle 2")
	waitFor(t, "the connections beyond maxIdle to be closed", func() bool { return u.closed.Load() == clients-2 })
}

// Case 12: concurrent use (run with -race): every reply reaches its own request, and no more
// connections are opened than requests are in flight.
func TestH1Concurrent(t *testing.T) {
	t.Parallel()
	const workers, each = 16, 50
	u := startH1Upstream(t)
	c := newH1Client(t, u.srv.URL, u.pool, nil)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				path := fmt.Sprintf("/w%d/r%d", w, i)
				if _, body, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+path, nil, nil); err != nil || body != path {
					t.Errorf("GET %s: %q %v", path, body, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := u.conns.Load(); n > workers {
		t.Errorf("%d connections for %d concurrent clients", n, workers)
	}
	if n := c.idleLen(); n < 1 || n > workers {
		t.Errorf("%d idle connections", n)
	}
}

// BenchmarkH1Transport compares the lean path with net/http's Transport (configured as the proxy
// configures it) for a small GET over loopback TLS.
func BenchmarkH1Transport(b *testing.B) {
	u := startH1Upstream(b)
	c := newH1Client(b, u.srv.URL, u.pool, nil)
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h1", c.h}, {"net-http", c.next}} {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			req, _ := http.NewRequest(http.MethodGet, u.srv.URL+"/small", nil)
			for b.Loop() {
				resp, err := rt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// A connection idle for longer than idleCheckAfter is checked before reuse: bytes the upstream
// sent on it while idle (here an unsolicited 408, as some servers send before closing an idle
// connection) must not be read as the reply to the next request.
func TestH1IdleConnectionChecked(t *testing.T) {
	t.Parallel()
	stray := make(chan struct{})
	raw := startH1Raw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if !h1KeepAliveReply(c, br) || n > 1 {
			return
		}
		io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		close(stray)
		io.Copy(io.Discard, br) // keep the connection open until the client closes it
	})
	c := newH1Client(t, raw.url, raw.pool, nil)
	if body := h1Get(t, c.h, raw.url+"/a"); body != "ok" {
		t.Fatalf("first reply %q", body)
	}
	h1Wait(t, stray, "the server writing on the idle connection")
	waitFor(t, "the stray reply to reach the client's socket", func() bool {
		c.h.mu.Lock()
		defer c.h.mu.Unlock()
		return len(c.h.idle) == 1 && !idleQuiet(c.h.idle[0].raw)
	})
	c.h.mu.Lock()
	c.h.idle[0].idleAt = time.Now().Add(-time.Second)
	c.h.mu.Unlock()
	wantOKOn(t, c, raw, "/b", 2, "the connection with stray bytes is not reused")
	h1Wait(t, raw.closed, "the client closing the connection with stray bytes")
}

// wantPool checks how many connections the upstream accepted and how many the client keeps idle.
func wantPool(t *testing.T, u *h1Upstream, c *h1Client, conns int64, idle int, why string) {
	t.Helper()
	if n := u.conns.Load(); n != conns {
		t.Errorf("%d connections, want %d (%s)", n, conns, why)
	}
	if n := c.idleLen(); n != idle {
		t.Errorf("%d idle connections, want %d (%s)", n, idle, why)
	}
}

// Connections left idle below the top of the stack (after a burst, with no request coming to
// look at them) are closed once idleTimeout has passed, not kept open until the process ends.
func TestH1IdleConnectionsPruned(t *testing.T) {
	t.Parallel()
	const clients = 3
	u := startH1Upstream(t)
	u.gateWant = clients // three connections at once
	c := newH1Client(t, u.srv.URL, u.pool, nil)
	c.h.idleTimeout = 50 * time.Millisecond
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			if _, body, err := h1Fetch(context.Background(), c.h, http.MethodGet, u.srv.URL+"/gate", nil, nil); err != nil || body != "through" {
				t.Errorf("GET /gate: %q %v", body, err)
			}
		})
	}
	wg.Wait()
	if n := u.conns.Load(); n != clients {
		t.Fatalf("%d connections, want %d", n, clients)
	}
	waitFor(t, "every idle connection to be closed with no further request", func() bool {
		return u.closed.Load() == clients && c.idleLen() == 0
	})
	// The pool still works afterwards, and its timer is armed again.
	h1Get(t, c.h, u.srv.URL+"/small")
	waitFor(t, "the new idle connection to be closed too", func() bool {
		return u.closed.Load() == clients+1 && c.idleLen() == 0
	})
}

// wantOKOn sends a GET for path through c, wants the raw server's "ok", and wants it to have
// accepted this many connections in all.
func wantOKOn(t *testing.T, c *h1Client, raw *h1Raw, path string, accepts int64, why string) {
	t.Helper()
	if body := h1Get(t, c.h, raw.url+path); body != "ok" {
		t.Fatalf("GET %s: reply %q", path, body)
	}
	if n := raw.accepts.Load(); n != accepts {
		t.Errorf("%d connections accepted, want %d (%s)", n, accepts, why)
	}
}
