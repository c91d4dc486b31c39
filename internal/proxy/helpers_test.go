package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// realToken is the GitHub token the fake accepts. It is shaped like an OAuth token, so discovery
// may run; tests that want it skipped pass a ghs_ token.
const realToken = "gho_RealTokenThatMustNeverReachAClient0001"

// syncBuffer is the proxy log: written by request goroutines, read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// loopbackOnly dials loopback addresses only: any name left unmapped by Config.Resolve fails as
// "no such host", so no test ever reaches DNS or the network.
func loopbackOnly(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, &net.OpError{Op: "dial", Net: network,
			Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func startTenant(t *testing.T, token string) *faketenant.Tenant {
	t.Helper()
	ft, err := faketenant.Start(faketenant.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ft.Close)
	return ft
}

// hostPort is "127.0.0.1:PORT" of the fake.
func hostPort(ft *faketenant.Tenant) string { return strings.TrimPrefix(ft.URL(), "https://") }

type harness struct {
	p      *Proxy
	url    string // http://127.0.0.1:PORT
	client string // client token
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
	ft     *faketenant.Tenant

	stopOnce sync.Once
	serveErr error
}

// stop ends Serve (graceful shutdown) and returns its result; safe to call more than once.
func (h *harness) stop() error {
	h.stopOnce.Do(func() {
		h.cancel()
		h.serveErr = <-h.done
	})
	return h.serveErr
}

// setup runs a proxy on a real loopback listener in front of ft. in is the platform input (an
// empty ServerURL means acme.ghe.com with both upstreams pointed at the fake by URL); mutate
// adjusts the Config.
func setup(t *testing.T, ft *faketenant.Tenant, in platform.Input, mutate func(*Config)) *harness {
	t.Helper()
	if in.ServerURL == "" {
		in = platform.Input{ServerURL: "https://acme.ghe.com", APIURL: ft.URL(), CopilotAPITarget: ft.URL()}
	}
	ep, err := platform.Detect(in)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	client := NewClientToken()
	cfg := Config{
		Endpoints:      ep,
		ExplicitTarget: in.CopilotAPITarget != "",
		Token:          copilot.NewToken(realToken),
		ClientToken:    client,
		RootCAs:        ft.CertPool(),
		DialContext:    loopbackOnly,
		Logger:         slog.New(slog.NewJSONHandler(logs, nil)),
		InteractionID:  "4242-1",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h := serveHarness(t, cfg, logs)
	h.ft = ft
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		scanSecrets(t, "the proxy log", logs.Bytes(), realToken, client.Reveal())
	})
	return h
}

// serveHarness starts a proxy from cfg on a real loopback listener; the caller stops it.
func serveHarness(t *testing.T, cfg Config, logs *syncBuffer) *harness {
	t.Helper()
	if cfg.Logger == nil && logs != nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &harness{p: p, url: "http://" + ln.Addr().String(), client: cfg.ClientToken.Reveal(), log: logs,
		cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- p.Serve(ctx, ln) }()
	return h
}

// do sends one request with the client token (auth "" means none) and returns status, headers
// and body.
func (h *harness) do(t *testing.T, method, path, auth string, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rb)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	// No reply, whatever it is, may carry the real token or a Copilot token the platform issued.
	var hb strings.Builder
	_ = resp.Header.Write(&hb)
	scanSecrets(t, "reply to "+method+" "+path, append([]byte(hb.String()), b...), realToken)
	return resp.StatusCode, resp.Header, b
}

func (h *harness) bearer() string { return "Bearer " + h.client }

// scanSecrets fails the test if any secret (or the fake's Copilot tokens, "tid=") is in b.
func scanSecrets(t *testing.T, where string, b []byte, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, "tid=fake") {
		if s != "" && bytes.Contains(b, []byte(s)) {
			t.Errorf("%s contains a secret (%.8s…)", where, s)
		}
	}
}

// rawRequest writes raw bytes to the proxy and returns the status line's code and the body.
func rawRequest(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a hang fails instead of blocking the run
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read reply to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("reply is not JSON: %v: %q", err, b)
	}
}

// logLines decodes the proxy's JSON log.
func logLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("log is not JSON lines: %v", err)
		}
		out = append(out, m)
	}
}

// requestsTo returns the fake's recorded requests whose path is path.
func requestsTo(ft *faketenant.Tenant, path string) []faketenant.Request {
	var out []faketenant.Request
	for _, r := range ft.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func copilotToken(raw string) copilot.Token { return copilot.NewToken(raw) }

// waitFor polls cond (figures are recorded just after a reply is sent, so a client can see the
// reply a moment before they are counted). It fails after a generous bound, never on speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

// frontOf runs a proxy (acme.ghe.com, both upstreams at up) in front of an upstream of the test's
// own, started with TLS; mutate adjusts the Config. The proxy stops with the test.
func frontOf(t *testing.T, up *httptest.Server, mutate func(*Config)) *harness {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	ep, err := platform.Detect(platform.Input{ServerURL: "https://acme.ghe.com", APIURL: up.URL, CopilotAPITarget: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Endpoints: ep, ExplicitTarget: true, Token: copilot.NewToken(realToken), ClientToken: NewClientToken(),
		RootCAs: roots, DialContext: loopbackOnly}
	if mutate != nil {
		mutate(&cfg)
	}
	h := serveHarness(t, cfg, &syncBuffer{})
	t.Cleanup(func() { h.stop() })
	return h
}
