package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// serveControl runs p.ServeControl on a unix socket in a fresh directory and returns a client
// that reaches it; the server ends with the test.
func serveControl(t *testing.T, p *Proxy) *http.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.ServeControl(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	})
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func controlGet(t *testing.T, c *http.Client, method, path string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://copilot-route"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s on the control socket: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	scanSecrets(t, "control reply to "+path, b, realToken)
	return resp.StatusCode, b
}

// The control socket answers health and the figures without a client token, answers nothing
// else, sends nothing upstream and does not count itself as traffic.
func TestControlSocketAnswersFiguresOnly(t *testing.T) {
	t.Parallel()
	h := setup(t, startTenant(t, realToken), platform.Input{}, nil)
	ctl := serveControl(t, h.p)

	if code, _, _ := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil); code != http.StatusOK {
		t.Fatalf("GET /models through the proxy = %d", code)
	}
	var s Stats
	waitFor(t, "the /models request in the figures", func() bool {
		code, b := controlGet(t, ctl, http.MethodGet, StatsPath, nil)
		decodeJSON(t, b, &s)
		return code == http.StatusOK && strings.Contains(fmt.Sprint(s.Routes), "/models")
	})
	before := s.Requests
	upstreamBefore := len(h.ft.Requests())

	cases := []struct {
		method, path string
		hdr          map[string]string
		want         int
	}{
		{http.MethodGet, HealthPath, nil, http.StatusOK},
		{http.MethodGet, StatsPath, nil, http.StatusOK},
		{http.MethodPost, StatsPath, nil, http.StatusMethodNotAllowed},
		{"get", HealthPath, nil, http.StatusMethodNotAllowed},
		{http.MethodGet, "/models", map[string]string{"Authorization": h.bearer()}, http.StatusNotFound},
		{http.MethodPost, "/chat/completions", map[string]string{"Authorization": h.bearer()}, http.StatusNotFound},
		{http.MethodGet, "/copilot_internal/v2/token", map[string]string{"Authorization": h.bearer()}, http.StatusNotFound},
		{http.MethodGet, "/_copilot-route/other", nil, http.StatusNotFound},
	}
	for _, tc := range cases {
		code, b := controlGet(t, ctl, tc.method, tc.path, tc.hdr)
		if code != tc.want {
			t.Errorf("%s %s on the control socket = %d %s, want %d", tc.method, tc.path, code, b, tc.want)
		}
	}
	if n := len(h.ft.Requests()); n != upstreamBefore {
		t.Errorf("the control socket sent %d requests upstream", n-upstreamBefore)
	}
	_, b := controlGet(t, ctl, http.MethodGet, StatsPath, nil)
	decodeJSON(t, b, &s)
	if s.Requests != before {
		t.Errorf("requests = %d after control requests, want %d: the control socket is not agent traffic", s.Requests, before)
	}
	// The TCP listener still wants the client token for the figures.
	if code, _, _ := h.do(t, http.MethodGet, StatsPath, "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET %s on TCP without the client token = %d, want 401", StatsPath, code)
	}
}

// capListener holds at most n accepted connections open: Accept waits for one to close. It stands
// in for the connection cap on the proxy's TCP listener (Config.MaxConns, being added): with it
// full, a new TCP connection waits in the kernel's backlog.
type capListener struct {
	net.Listener
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newCapListener(ln net.Listener, n int) *capListener {
	return &capListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *capListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &capConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *capListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// With every connection the TCP listener allows held open by idle keep-alive clients (what a
// hostile agent does), a figures request on TCP waits; the control socket still answers, with
// figures that count those clients' requests.
func TestControlSocketAnswersWhileTCPIsFull(t *testing.T) {
	t.Parallel()
	const maxConns = 16
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	_ = h.stop() // the harness's listener closes; the same proxy is served below on a capped one
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.p.Serve(ctx, newCapListener(tcp, maxConns)) }()
	t.Cleanup(func() { cancel(); <-served })
	ctl := serveControl(t, h.p)

	// Fill the cap: each connection sends one request, reads the reply and stays open.
	idle := make([]net.Conn, maxConns)
	for i := range idle {
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", HealthPath)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("idle client %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
		idle[i] = c
	}
	waiting := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tcp.Addr().String()+StatsPath, nil)
		req.Header.Set("Authorization", h.bearer())
		resp, err := (&http.Transport{}).RoundTrip(req)
		if err != nil {
			waiting <- -1
			return
		}
		resp.Body.Close()
		waiting <- resp.StatusCode
	}()

	var s Stats
	waitFor(t, "the idle clients' requests in the figures", func() bool {
		code, b := controlGet(t, ctl, http.MethodGet, StatsPath, nil)
		decodeJSON(t, b, &s)
		return code == http.StatusOK && s.Requests >= maxConns
	})
	select {
	case code := <-waiting:
		t.Fatalf("a TCP request was answered (%d) while the cap was full: the test did not saturate the listener", code)
	default:
	}
	// Freeing one slot lets the waiting TCP request through: it was waiting on the cap.
	idle[0].Close()
	if code := <-waiting; code != http.StatusOK {
		t.Errorf("the TCP figures request after a slot freed = %d, want 200", code)
	}
}
