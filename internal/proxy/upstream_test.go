package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// misbehaving is a raw TLS upstream that keeps connections alive and answers each request with
// whatever reply(n, req) writes: one response, two, a response with extra bytes after it, an
// endless header. Each reply that is meant for a request names it ("for=<query n>"), so a test
// sees at once when a client got a reply meant for another request.
type misbehaving struct {
	addr     string
	requests atomic.Int64
	auths    sync.Map // Authorization values seen
}

func startMisbehaving(t *testing.T, ca *testCA, reply func(n int64, req *http.Request, w io.Writer) (keep bool)) *misbehaving {
	t.Helper()
	m := &misbehaving{}
	cert := ca.leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "copilot-api.acme.ghe.com", "api.acme.ghe.com")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					m.auths.Store(req.Header.Get("Authorization"), true)
					n := m.requests.Add(1)
					if !reply(n, req, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	m.addr = ln.Addr().String()
	return m
}

func okFor(w io.Writer, req *http.Request, extra string) {
	body := `{"for":"` + req.URL.Query().Get("n") + `"}`
	fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s%s", len(body), body, extra)
}

const stray = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"for\":\"stray\"}"

// An upstream that sends more than one reply per request, or bytes after a reply that should
// have none, can never shift replies: each agent request gets the reply to itself or an error,
// never a reply meant for another request (the connection is dropped instead of reused). Each
// misbehaviour is written in one piece, so the extra bytes are in the proxy's buffers with the
// reply: a reply too many that arrives only after the next request was sent is, to any HTTP/1.1
// client, that request's reply (TestOwnRequestsOnConnectionsOfTheirOwn covers what matters then).
func TestMisbehavingUpstreamNoDesync(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	cases := []struct {
		name  string
		reply func(n int64, req *http.Request, w io.Writer) bool
	}{
		{"two responses to one GET", func(n int64, req *http.Request, w io.Writer) bool {
			extra := ""
			if n == 1 {
				extra = stray
			}
			okFor(w, req, extra) // one write: both replies are in the proxy's buffers at once
			return true
		}},
		{"204 followed by a response", func(n int64, req *http.Request, w io.Writer) bool {
			if n == 1 {
				io.WriteString(w, "HTTP/1.1 204 No Content\r\n\r\n"+stray)
				return true
			}
			okFor(w, req, "")
			return true
		}},
		{"304 with a body", func(n int64, req *http.Request, w io.Writer) bool {
			if n == 1 {
				io.WriteString(w, "HTTP/1.1 304 Not Modified\r\nContent-Length: 15\r\n\r\n{\"for\":\"stray\"}")
				return true
			}
			okFor(w, req, "")
			return true
		}},
		{"a reply longer than its Content-Length", func(n int64, req *http.Request, w io.Writer) bool {
			okFor(w, req, map[bool]string{true: stray, false: ""}[n == 1])
			return true
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := startMisbehaving(t, ca, tc.reply)
			h := misbehavingProxy(t, ca, up)
			for i := 1; i <= 6; i++ {
				status, _, b := h.do(t, http.MethodGet, fmt.Sprintf("/models?n=%d", i), h.bearer(), "", nil)
				if strings.Contains(string(b), "stray") {
					t.Fatalf("request %d got the stray reply meant for nobody: %d %s", i, status, b)
				}
				if status == http.StatusOK && !strings.Contains(string(b), fmt.Sprintf(`"for":"%d"`, i)) {
					t.Fatalf("request %d got a reply meant for another request: %s", i, b)
				}
				if status != http.StatusOK && status != http.StatusBadGateway && !(i == 1 && status < 400) {
					t.Fatalf("request %d: %d %s", i, status, b)
				}
			}
			// The last requests, after the upstream behaved again, were answered.
			if status, _, b := h.do(t, http.MethodGet, "/models?n=99", h.bearer(), "", nil); status != 200 || !strings.Contains(string(b), `"for":"99"`) {
				t.Fatalf("after the misbehaviour: %d %s", status, b)
			}
		})
	}
}

// A reply that arrives after the next request was written on its connection cannot be told from
// that request's reply by any HTTP/1.1 client. So the proxy's own requests with the real
// credential never share a connection with agents' requests: an upstream that sends an extra,
// late reply after the token exchange (a reply holding a Copilot token) cannot hand it to an
// agent.
func TestOwnRequestsOnConnectionsOfTheirOwn(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	up := startMisbehaving(t, ca, func(n int64, req *http.Request, w io.Writer) bool {
		if req.URL.Path == exchangePath {
			body := `{"token":"tid=fake;exchanged","expires_at":4102444800,"refresh_in":1500}`
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			time.Sleep(30 * time.Millisecond)
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			return true
		}
		okFor(w, req, "")
		return true
	})
	h := misbehavingProxy(t, ca, up)
	if status, _, b := h.do(t, http.MethodGet, exchangePath, h.bearer(), "", nil); status != 200 {
		t.Fatalf("exchange: %d %s", status, b)
	}
	for i := 1; i <= 20; i++ {
		// h.do fails the test on any reply holding the exchanged token ("tid=fake").
		status, _, b := h.do(t, http.MethodGet, fmt.Sprintf("/copilot_internal/user?n=%d", i), h.bearer(), "", nil)
		if status != 200 || !strings.Contains(string(b), fmt.Sprintf(`"for":"%d"`, i)) {
			t.Fatalf("request %d: %d %s", i, status, b)
		}
	}
}

func misbehavingProxy(t *testing.T, ca *testCA, up *misbehaving) *harness {
	t.Helper()
	_, port, _ := net.SplitHostPort(up.addr)
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com"})
	if err != nil {
		t.Fatal(err)
	}
	return serveHarness(t, Config{Endpoints: ep, Token: copilot.NewToken("ghs_installationTokenSkipsDiscovery000001"),
		ClientToken: NewClientToken(), RootCAs: ca.pool, DialContext: loopbackOnly,
		Resolve: map[string]string{"copilot-api.acme.ghe.com:443": "127.0.0.1:" + port, "api.acme.ghe.com:443": "127.0.0.1:" + port}},
		&syncBuffer{})
}

// An upstream whose reply headers never end gets a 502 once they pass the limit: the proxy does
// not read (and hold) them without bound.
func TestUpstreamEndlessHeader(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var sent atomic.Int64
	up := startMisbehaving(t, ca, func(n int64, req *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for i := 0; i < 64<<10; i++ { // up to 64 MiB, far past the limit
			if _, err := io.WriteString(w, line); err != nil {
				return false
			}
			sent.Add(int64(len(line)))
		}
		return false
	})
	h := misbehavingProxy(t, ca, up)
	status, _, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
	if status != http.StatusBadGateway {
		t.Fatalf("endless header: %d %s, want 502", status, b)
	}
	if got := sent.Load(); got > 8*maxResponseHeaderBytes {
		t.Errorf("the upstream wrote %d MiB before the proxy gave up, want about %d MiB", got>>20, maxResponseHeaderBytes>>20)
	}
}

// The real credential never follows a redirect: the proxy's own requests (token exchange, the
// start-up user look-up) and the requests it forwards hand a 3xx back as is, and the listener the
// redirect names — another host, or plain http — never sees the token.
func TestRedirectsNeverCarryTheCredential(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var leaked atomic.Int64
	var hits atomic.Int64
	elsewhere, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { elsewhere.Close() })
	go func() {
		for {
			c, err := elsewhere.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				hits.Add(1)
				b, _ := io.ReadAll(io.LimitReader(c, 64<<10))
				if strings.Contains(string(b), realToken) {
					leaked.Add(1)
				}
			}()
		}
	}()
	for _, target := range []string{
		"http://" + elsewhere.Addr().String() + "/x",            // another host, plain http
		"https://" + elsewhere.Addr().String() + "/x",           // another host, https
		"http://copilot-api.acme.ghe.com/copilot_internal/user", // the same name, downgraded
		"/repos/OWNER/REPO", // the same host, another path
	} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			up := startMisbehaving(t, ca, func(n int64, req *http.Request, w io.Writer) bool {
				fmt.Fprintf(w, "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n", target)
				return true
			})
			_, port, _ := net.SplitHostPort(up.addr)
			ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com"})
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			// A gho_ token: discovery runs at start and meets the redirect.
			h := serveHarness(t, Config{Endpoints: ep, Token: copilot.NewToken(realToken),
				ClientToken: NewClientToken(), RootCAs: ca.pool, DialContext: redirectDialer(elsewhere.Addr().String()),
				Resolve: map[string]string{"copilot-api.acme.ghe.com:443": "127.0.0.1:" + port, "api.acme.ghe.com:443": "127.0.0.1:" + port}},
				logs)
			if d := h.p.Stats().Discovery; d.State != "failed" {
				t.Errorf("discovery after a redirect: %+v, want failed", d)
			}
			// The exchange shim asks the platform, which redirects.
			if status, _, b := h.do(t, http.MethodGet, "/copilot_internal/v2/token", h.bearer(), "", nil); status != 200 {
				t.Errorf("exchange: %d %s", status, b)
			}
			if ex := h.p.Stats().Exchange; ex.State != "error" || ex.UpstreamStatus != http.StatusFound {
				t.Errorf("exchange stats after a redirect: %+v, want error with 302", ex)
			}
			// A forwarded request: the client gets the 302 itself.
			status, hdr, _ := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
			if status != http.StatusFound || hdr.Get("Location") != target {
				t.Errorf("GET /models: %d Location %q, want the upstream's 302 as is", status, hdr.Get("Location"))
			}
			if n := up.requests.Load(); n != 3 {
				t.Errorf("the upstream saw %d requests, want 3 (discovery, exchange, /models): a redirect was followed", n)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let any stray connection be read
	if leaked.Load() != 0 || hits.Load() != 0 {
		t.Fatalf("the redirect target was reached %d times, %d with the real token", hits.Load(), leaked.Load())
	}
}

// redirectDialer dials loopback only, and sends copilot-api.acme.ghe.com:80 (a downgraded
// redirect) to the listener that records tokens, so a followed downgrade would be seen.
func redirectDialer(elsewhere string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "copilot-api.acme.ghe.com:80" {
			addr = elsewhere
		}
		return loopbackOnly(ctx, network, addr)
	}
}

// Whatever URL a request names, credTransport sets the real credential only for its upstream's
// own scheme and host.
func TestCredentialPinnedToUpstream(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	var seen atomic.Int64
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			seen.Add(1)
			c.Close()
		}
	}()
	client := h.p.credClient(h.p.rest)
	base := h.p.rest.target
	for _, u := range []string{
		"http://" + other.Addr().String() + "/copilot_internal/user",
		"https://" + other.Addr().String() + "/copilot_internal/user",
		"http://" + base.Host + "/copilot_internal/user", // right host, plain http
		"https://" + strings.Replace(base.Host, "127.0.0.1", "localhost", 1) + "/copilot_internal/user",
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: answered %s, want the request refused before it left", u, resp.Status)
			continue
		}
		if !strings.Contains(err.Error(), "only to the configured upstreams") {
			t.Errorf("%s: %v", u, err)
		}
	}
	if seen.Load() != 0 {
		t.Errorf("a listener the credential was not for was dialled %d times", seen.Load())
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base.String()+"/copilot_internal/user", nil)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the configured upstream itself: %v %v", resp, err)
	}
	resp.Body.Close()
}

// The connection cap: an agent holding every slot with keep-alive connections cannot lock others
// out (the longest-idle connection makes room), a connection just accepted is never the one
// evicted, and with every slot busy a new connection is closed at once, counted and logged,
// while the busy ones finish normally.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	up := startMisbehaving(t, ca, func(n int64, req *http.Request, w io.Writer) bool {
		if req.URL.Query().Get("stall") != "" {
			<-release
		}
		okFor(w, req, "")
		return true
	})
	t.Cleanup(free) // registered after the upstream's own cleanup, so it runs first
	_, port, _ := net.SplitHostPort(up.addr)
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	const max = 8
	h := serveHarness(t, Config{Endpoints: ep, Token: copilot.NewToken("ghs_installationTokenSkipsDiscovery000001"),
		ClientToken: NewClientToken(), RootCAs: ca.pool, DialContext: loopbackOnly, MaxConns: max,
		Resolve: map[string]string{"copilot-api.acme.ghe.com:443": "127.0.0.1:" + port}}, logs)
	addr := strings.TrimPrefix(h.url, "http://")

	// Keep-alive connections between requests fill every slot; new requests still get through,
	// each evicting the longest idle.
	var idle []net.Conn
	t.Cleanup(func() { closeAll(idle) })
	for i := 0; i < 3*max; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: p\r\n\r\n", HealthPath)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		resp.Body.Close()
	}
	for i := 1; i <= 3; i++ {
		if status, _, b := h.do(t, http.MethodGet, fmt.Sprintf("/models?n=%d", i), h.bearer(), "", nil); status != 200 {
			t.Fatalf("with the slots held by idle connections, request %d: %d %s", i, status, b)
		}
	}
	// Busy connections fill every slot: a new one is closed without a reply. (A busy client whose
	// connection is refused tries again: a slot is freed by eviction only once the connection in
	// it is idle, and a connection that has just answered may not be idle yet.)
	busy := make(chan int, max)
	for i := 0; i < max; i++ {
		go func(i int) {
			for try := 0; try < 200; try++ {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					busy <- 0
					return
				}
				fmt.Fprintf(c, "GET /models?stall=1&n=%d HTTP/1.1\r\nHost: p\r\nAuthorization: %s\r\n\r\n", i, h.bearer())
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				c.Close()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				resp.Body.Close()
				busy <- resp.StatusCode
				return
			}
			busy <- -1
		}(i)
	}
	for i := 0; up.requests.Load() < int64(3+max); i++ {
		if i == 2000 {
			t.Fatalf("the stalled requests did not all reach the upstream: it saw %d of %d", up.requests.Load(), 3+max)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /models?n=over HTTP/1.1\r\nHost: p\r\nAuthorization: %s\r\n\r\n", h.bearer())
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("a connection over the cap was served (%d bytes, %v), want it closed", n, err)
	}
	c.Close()
	free()
	for i := 0; i < max; i++ {
		if s := <-busy; s != 200 {
			t.Errorf("a request busy when the cap was hit ended with %d, want 200", s)
		}
	}
	if hits := h.p.Stats().ConnCapHits; hits < 4 {
		t.Errorf("conn_cap_hits = %d, want every eviction and refusal counted", hits)
	}
	if !strings.Contains(string(logs.Bytes()), "connection cap reached") {
		t.Errorf("no log line for the cap")
	}
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}
