package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

const pieces = "AAAAAAAABBBBBBBBCCCCCCCC" // three chunks: AAAAAAAA, BBBBBBBB, CCCCCCCC

// streamReader reads an SSE reply line by line, keeping everything seen.
type streamReader struct {
	t    *testing.T
	r    *bufio.Reader
	seen strings.Builder
}

// until reads until the text seen so far contains s; a read error fails the test.
func (sr *streamReader) until(s string) {
	sr.t.Helper()
	for !strings.Contains(sr.seen.String(), s) {
		line, err := sr.r.ReadString('\n')
		sr.seen.WriteString(line)
		if err != nil {
			got := sr.seen.String()
			if len(got) > 400 {
				got = "…" + got[len(got)-400:]
			}
			sr.t.Fatalf("stream ended (%v) before %q; got %q", err, s, got)
		}
	}
}

// openStream posts a streaming request through the proxy. The context bounds a hang: a proxy
// that buffered would block the read forever, and the test must fail rather than stall.
func openStream(t *testing.T, h *harness, path string) (*http.Response, *streamReader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	body := `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}],"input":"hi","max_tokens":10}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", h.bearer())
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s = %d %s %s, want a 200 event stream", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return resp, &streamReader{t: t, r: bufio.NewReader(resp.Body)}
}

// Each chunk reaches the client before the fake is even allowed to write the next one: the fake
// waits on a gate the test opens only after it has read the chunk through the proxy. The same with
// a model policy and every budget set: reading the usage delays no chunk.
func TestStreamingChunkByChunk(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/chat/completions", "/responses", "/v1/messages"} {
		for _, gov := range []func(*Config){nil, governed} {
			name := strings.TrimPrefix(path, "/") + map[bool]string{true: " governed"}[gov != nil]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ft := startTenant(t, realToken)
				gate := make(chan struct{})
				ft.Set(func(b *faketenant.Behavior) { b.Gate, b.StreamChunks, b.ReplyText = gate, 3, pieces })
				h := setup(t, ft, platform.Input{}, gov)
				_, sr := openStream(t, h, path)
				sr.until("AAAAAAAA")
				if strings.Contains(sr.seen.String(), "BBBB") {
					t.Fatal("chunk 2 arrived before the gate opened")
				}
				gate <- struct{}{}
				sr.until("BBBBBBBB")
				gate <- struct{}{}
				sr.until("CCCCCCCC")
				rest, err := io.ReadAll(sr.r)
				if err != nil {
					t.Fatalf("end of stream: %v", err)
				}
				all := sr.seen.String() + string(rest)
				end := map[string]string{"/chat/completions": "[DONE]", "/responses": "response.completed", "/v1/messages": "message_stop"}[path]
				if !strings.Contains(all, end) {
					t.Errorf("stream lacks its end marker %q: %q", end, all)
				}
				scanSecrets(t, "stream", []byte(all), realToken)
				waitFor(t, "the stream settled", func() bool { return h.p.Stats().Usage.Requests == 1 })
				if u := h.p.Stats().Usage; u.InputTokens != 42 || u.OutputTokens != 2 || u.EstimatedReplies != 0 {
					t.Errorf("usage read from the stream: in %d, out %d, estimated %d; want 42, 2, 0", u.InputTokens, u.OutputTokens, u.EstimatedReplies)
				}
			})
		}
	}
}

// Upstream failures become 502/504 JSON replies naming the host and a hint; an upstream's own
// error status passes through unchanged.
func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	closedPort := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	hangUp := func(t *testing.T) string { // accepts, then closes without a word
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	cases := []struct {
		name   string
		target func(t *testing.T, ft *faketenant.Tenant) string
		mutate func(c *Config)
		fake   func(b *faketenant.Behavior)
		status int
		kind   string
	}{
		{name: "refused", target: func(t *testing.T, _ *faketenant.Tenant) string { return "https://" + closedPort(t) },
			status: 502, kind: "refused"},
		{name: "closed at once", target: func(t *testing.T, _ *faketenant.Tenant) string { return "https://" + hangUp(t) },
			status: 502, kind: "reset"},
		{name: "untrusted certificate", target: func(_ *testing.T, ft *faketenant.Tenant) string { return ft.URL() },
			mutate: func(c *Config) { c.RootCAs = x509.NewCertPool() }, status: 502, kind: "tls"},
		{name: "name does not resolve", target: func(*testing.T, *faketenant.Tenant) string { return "https://nx.acme.ghe.com" },
			status: 502, kind: "dns"},
		{name: "slow first byte", target: func(_ *testing.T, ft *faketenant.Tenant) string { return ft.URL() },
			mutate: func(c *Config) { c.ResponseHeaderTimeout = 100 * time.Millisecond },
			fake:   func(b *faketenant.Behavior) { b.FirstByteDelay = time.Minute }, status: 504, kind: "timeout"},
		{name: "upstream status passes through", target: func(_ *testing.T, ft *faketenant.Tenant) string { return ft.URL() },
			fake: func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": 429}; b.RetryAfter = "7" }, status: 429},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			if tc.fake != nil {
				ft.Set(tc.fake)
			}
			target := tc.target(t, ft)
			h := setup(t, ft, platform.Input{ServerURL: "https://acme.ghe.com", APIURL: ft.URL(), CopilotAPITarget: target}, tc.mutate)
			status, hdr, b := h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
			if status != tc.status {
				t.Fatalf("status %d %s, want %d", status, b, tc.status)
			}
			if tc.kind == "" {
				if hdr.Get("Retry-After") != "7" || hdr.Get("X-GitHub-Request-Id") == "" {
					t.Errorf("passed-through reply lost its headers: %v", hdr)
				}
				return
			}
			var m map[string]string
			decodeJSON(t, b, &m)
			host := platform.HostOf(target)
			if m["kind"] != tc.kind || m["upstream"] != host || !strings.Contains(m["message"], host) || m["hint"] == "" {
				t.Errorf("reply %s, want kind %s naming %s with a hint", b, tc.kind, host)
			}
			waitFor(t, "the error counted", func() bool { return len(h.p.Stats().UpstreamErrors) > 0 })
			if e := h.p.Stats().UpstreamErrors; len(e) != 1 || e[0].Kind != tc.kind || e[0].Host != host || e[0].Hint == "" {
				t.Errorf("upstream_errors = %+v", e)
			}
		})
	}
}

// A stream the upstream breaks off mid-way reaches the client as a broken stream (not a clean
// end it would take for a whole answer), and is counted.
func TestMidStreamReset(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	ft.Set(func(b *faketenant.Behavior) { b.StreamChunks, b.ResetAfterChunks, b.ReplyText = 3, 1, pieces })
	h := setup(t, ft, platform.Input{}, nil)
	_, sr := openStream(t, h, "/chat/completions")
	sr.until("AAAAAAAA")
	rest, err := io.ReadAll(sr.r)
	if err == nil || strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("a broken upstream stream ended cleanly for the client (err %v, rest %q)", err, rest)
	}
	waitFor(t, "the mid-stream error counted", func() bool {
		e := h.p.Stats().UpstreamErrors
		return len(e) == 1 && e[0].Kind == "mid-stream"
	})
}

// On shutdown the proxy stops accepting connections but lets an open stream finish, then Serve
// returns nil.
func TestGracefulShutdownWithOpenStream(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	gate := make(chan struct{})
	ft.Set(func(b *faketenant.Behavior) { b.Gate, b.StreamChunks, b.ReplyText = gate, 3, pieces })
	h := setup(t, ft, platform.Input{}, nil)
	_, sr := openStream(t, h, "/chat/completions")
	sr.until("AAAAAAAA")
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	addr := strings.TrimPrefix(h.url, "http://")
	waitFor(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a stream was open", err)
	default:
	}
	gate <- struct{}{}
	gate <- struct{}{}
	sr.until("[DONE]")
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v, want nil after a graceful shutdown", err)
	}
}

// A stream that outlives the grace period is cut, and Serve still returns nil.
func TestShutdownGraceCutsEndlessStream(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	ft.Set(func(b *faketenant.Behavior) {
		b.NeverEnd, b.StreamChunks, b.ChunkInterval, b.ReplyText = true, 3, 5*time.Millisecond, pieces
	})
	h := setup(t, ft, platform.Input{}, func(c *Config) { c.ShutdownGrace = 200 * time.Millisecond })
	_, sr := openStream(t, h, "/chat/completions")
	sr.until("AAAA")
	if err := h.stop(); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	if _, err := io.ReadAll(sr.r); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("endless stream: read after shutdown = %v, want the connection cut", err)
	}
}

// A GET whose connection attempt fails is retried once; a POST is not (it may not be idempotent).
// Each case runs a fresh proxy, so its first request must dial.
func TestDialFailureRetry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path string
		failDials          int
		status             int
		reached            int // requests the fake sees
	}{
		{"GET retried after one failed dial", http.MethodGet, "/models", 1, 200, 1},
		{"GET gives up after two", http.MethodGet, "/models", 2, http.StatusBadGateway, 0},
		{"POST not retried", http.MethodPost, "/chat/completions", 1, http.StatusBadGateway, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			var mu sync.Mutex
			failNext := tc.failDials
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				fail := failNext > 0
				if fail {
					failNext--
				}
				mu.Unlock()
				if fail {
					return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
				}
				return loopbackOnly(ctx, network, addr)
			}
			h := setup(t, ft, platform.Input{}, func(c *Config) { c.DialContext = dial })
			ft.ResetRequests()
			body := ""
			if tc.method == http.MethodPost {
				body = `{"model":"gpt-4.1","messages":[]}`
			}
			status, _, b := h.do(t, tc.method, tc.path, h.bearer(), body, nil)
			if status != tc.status {
				t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, status, b, tc.status)
			}
			if status == http.StatusBadGateway && !strings.Contains(string(b), `"refused"`) {
				t.Errorf("502 body %s, want kind refused", b)
			}
			if n := len(ft.Requests()); n != tc.reached {
				t.Errorf("fake saw %v, want %d requests", paths(ft), tc.reached)
			}
		})
	}
}

// A reply with no Content-Length that is not an event stream (NDJSON, a chunked JSON) is a
// stream too: each piece reaches the client before the upstream may write the next. A reply of
// known length arrives whole and unchanged. (FlushInterval 0 leaves both to ReverseProxy's own
// rule: flush every write of a stream, buffer a reply of known length.)
func TestChunkedRepliesAreStreamed(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	big := strings.Repeat("0123456789abcdef", 64<<10/16)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ndjson":
			w.Header().Set("Content-Type", "application/x-ndjson")
			io.WriteString(w, "{\"n\":1}\n")
			w.(http.Flusher).Flush()
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "{\"n\":2}\n")
		case "/sized":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		}
	}))
	up.StartTLS()
	t.Cleanup(up.Close)
	h := frontOf(t, up, func(c *Config) { c.AllowRoutes = []string{"GET /ndjson", "GET /sized"} })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/ndjson", nil)
	req.Header.Set("Authorization", h.bearer())
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "{\"n\":1}\n" {
		t.Fatalf("first line = %q, %v; want it before the upstream may write the second", line, err)
	}
	close(gate)
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "{\"n\":2}\n" {
		t.Fatalf("rest = %q, %v", rest, err)
	}

	code, hdr, body := h.do(t, http.MethodGet, "/sized", "Bearer "+h.client, "", nil)
	if code != 200 || string(body) != big || hdr.Get("Content-Length") != strconv.Itoa(len(big)) {
		t.Fatalf("/sized = %d, %d bytes (Content-Length %q), want 200 and the %d bytes unchanged", code, len(body), hdr.Get("Content-Length"), len(big))
	}
}
