package faketenant

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const testToken = "gho_faketenanttesttoken0123456789abcdef"

func start(t *testing.T, b func(*Behavior)) *Tenant {
	t.Helper()
	ft, err := Start(Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ft.Close)
	if b != nil {
		ft.Set(b)
	}
	return ft
}

// clientFor returns a client that speaks HTTP/1.1 only or HTTP/2.
func clientFor(ft *Tenant, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ft.CertPool()}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr}
}

type reply struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func do(t *testing.T, c *http.Client, ft *Tenant, method, path, auth, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ft.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

func TestTLSCertificateCoversTenantNames(t *testing.T) {
	t.Parallel()
	ft := start(t, nil)
	addr := strings.TrimPrefix(ft.URL(), "https://")
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"acme.ghe.com", true},
		{"api.acme.ghe.com", true},
		{"copilot-api.acme.ghe.com", true},
		{"localhost", true},
		{"127.0.0.1", true},
		{"other.ghe.com", false},
		{"a.b.acme.ghe.com", false}, // a wildcard covers one label only
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ft.CertPool(), ServerName: tc.name})
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("handshake as %s: err=%v, want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "acme.ghe.com"})
		if err == nil {
			conn.Close()
			t.Fatal("a client without the fake CA completed the handshake")
		}
	})
	if !bytes.Contains(ft.CAPEM(), []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("CAPEM is not PEM: %q", ft.CAPEM())
	}
	if strings.HasSuffix(ft.URL(), "/") || !strings.HasPrefix(ft.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL() = %q", ft.URL())
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path, auth, scheme string
		want                     int
		wantMsg                  string
	}{
		{"meta needs none", "/meta", "", "", 200, ""},
		{"no header", "/models", "", "", 401, "Requires authentication"},
		{"wrong token", "/models", "Bearer gho_wrong", "", 401, "Bad credentials"},
		{"bearer", "/models", "Bearer " + testToken, "", 200, ""},
		{"token scheme", "/copilot_internal/user", "token " + testToken, "", 200, ""},
		{"no scheme", "/models", testToken, "", 400, "Authorization header is badly formatted"},
		{"basic scheme", "/models", "Basic " + testToken, "", 400, "Authorization header is badly formatted"},
		{"token required, bearer sent", "/models", "Bearer " + testToken, "token", 400, "Authorization header is badly formatted"},
		{"token required, token sent", "/models", "token " + testToken, "token", 200, ""},
		{"bearer required, token sent", "/copilot_internal/user", "token " + testToken, "bearer", 400, "Authorization header is badly formatted"},
		{"bearer required, bearer sent", "/copilot_internal/user", "Bearer " + testToken, "bearer", 200, ""},
		{"ghes prefix", "/api/v3/copilot_internal/user", "token " + testToken, "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := start(t, func(b *Behavior) { b.RequireScheme = tc.scheme })
			r := do(t, ft.Client(), ft, "GET", tc.path, tc.auth, "")
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if tc.wantMsg != "" && r.json["message"] != tc.wantMsg {
				t.Fatalf("message %v, want %q", r.json["message"], tc.wantMsg)
			}
			if r.header.Get("X-GitHub-Request-Id") == "" {
				t.Fatal("no X-GitHub-Request-Id on the reply")
			}
			if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestAnyTokenWhenNoneConfigured(t *testing.T) {
	t.Parallel()
	ft, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	if r := do(t, ft.Client(), ft, "GET", "/models", "Bearer ghs_anything", ""); r.status != 200 {
		t.Fatalf("any token: status %d", r.status)
	}
	if r := do(t, ft.Client(), ft, "GET", "/models", "", ""); r.status != 401 {
		t.Fatalf("no token: status %d, want 401", r.status)
	}
	if got := ft.Requests()[0].Auth; got != "real" {
		t.Fatalf("Auth = %q, want real", got)
	}
}

func TestExchangedTokenIsAccepted(t *testing.T) {
	t.Parallel()
	ft := start(t, nil)
	c := ft.Client()
	r := do(t, c, ft, "POST", "/copilot_internal/v2/token", "token "+testToken, "")
	tok, _ := r.json["token"].(string)
	if r.status != 200 || tok == "" || r.json["expires_at"] == nil || r.json["refresh_in"] == nil {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	if eps, _ := r.json["endpoints"].(map[string]any); eps["api"] != "https://copilot-api.acme.ghe.com" {
		t.Fatalf("exchange endpoints: %v", r.json["endpoints"])
	}
	if r := do(t, c, ft, "GET", "/models", "Bearer "+tok, ""); r.status != 200 {
		t.Fatalf("/models with the exchanged token: %d %s", r.status, r.body)
	}
	reqs := ft.Requests()
	if got := reqs[len(reqs)-1].Auth; got != "copilot" {
		t.Fatalf("Auth = %q, want copilot", got)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	ft := start(t, nil)
	c := ft.Client()
	auth := "Bearer " + testToken
	for _, tc := range []struct {
		method, path, body string
		want               int
		check              func(reply) string
	}{
		{"GET", "/meta", "", 200, func(r reply) string { return hasKey(r, "domains") }},
		{"GET", "/api/v3/meta", "", 200, func(r reply) string { return hasKey(r, "domains") }},
		{"GET", "/copilot_internal/user", "", 200, func(r reply) string {
			eps, _ := r.json["endpoints"].(map[string]any)
			for _, k := range []string{"api", "telemetry", "proxy", "origin-tracker"} {
				if s, _ := eps[k].(string); !strings.HasPrefix(s, "https://") || !strings.HasSuffix(s, ".acme.ghe.com") {
					return "endpoints." + k + " = " + s
				}
			}
			if eps["api"] != "https://copilot-api.acme.ghe.com" {
				return "endpoints.api = " + eps["api"].(string)
			}
			return hasKey(r, "copilot_plan")
		}},
		{"GET", "/copilot_internal/v2/token", "", 200, func(r reply) string { return hasKey(r, "token") }},
		{"GET", "/copilot_internal/managed_settings", "", 200, nil},
		{"GET", "/copilot_internal/team_customizations", "", 200, nil},
		{"GET", "/models", "", 200, func(r reply) string {
			data, _ := r.json["data"].([]any)
			if len(data) < 2 {
				return "fewer than 2 models"
			}
			m := data[0].(map[string]any)
			if m["id"] == "" || m["supported_endpoints"] == nil || m["capabilities"] == nil || m["policy"] == nil {
				return "model without id/supported_endpoints/capabilities/policy"
			}
			return ""
		}},
		{"GET", "/agents/swe/internal/memory/v0/enabled", "", 200, func(r reply) string { return hasKey(r, "enabled") }},
		{"POST", "/mcp/readonly", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}`, 200, func(r reply) string {
			res, _ := r.json["result"].(map[string]any)
			if res["protocolVersion"] != "2025-03-26" {
				return "initialize did not echo the protocol version"
			}
			return ""
		}},
		{"POST", "/mcp/readonly", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202, nil},
		{"POST", "/chat/completions", `{"model":"gpt-4.1","messages":[]}`, 200, func(r reply) string {
			ch, _ := r.json["choices"].([]any)
			if len(ch) != 1 || ch[0].(map[string]any)["message"].(map[string]any)["content"] != DefaultReplyText {
				return "no assistant message with the reply text"
			}
			return ""
		}},
		{"POST", "/responses", `{"model":"gpt-5"}`, 200, func(r reply) string {
			if !strings.Contains(string(r.body), DefaultReplyText) || r.json["status"] != "completed" {
				return "no completed response with the reply text"
			}
			return ""
		}},
		{"POST", "/v1/messages", `{"model":"claude-sonnet-4.5"}`, 200, func(r reply) string {
			if !strings.Contains(string(r.body), DefaultReplyText) || r.json["stop_reason"] != "end_turn" {
				return "no message with the reply text"
			}
			return ""
		}},
		{"POST", "/embeddings", `{"model":"text-embedding-3-small","input":["a","b"]}`, 200, func(r reply) string {
			if d, _ := r.json["data"].([]any); len(d) != 2 {
				return "want 2 embeddings"
			}
			return ""
		}},
		{"POST", "/api/v3/chat/completions", `{"messages":[]}`, 200, nil},
		{"GET", "/nope", "", 404, func(r reply) string { return hasKey(r, "message") }},
		{"GET", "/chat/completions", "", 405, nil},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			t.Parallel()
			r := do(t, c, ft, tc.method, tc.path, auth, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if tc.check != nil {
				if msg := tc.check(r); msg != "" {
					t.Fatalf("%s; body %s", msg, r.body)
				}
			}
		})
	}
}

func hasKey(r reply, k string) string {
	if _, ok := r.json[k]; !ok {
		return "reply has no " + k
	}
	return ""
}

func TestBehaviorSwitches(t *testing.T) {
	t.Parallel()
	auth := "Bearer " + testToken
	for _, tc := range []struct {
		name         string
		set          func(*Behavior)
		method, path string
		body         string
		want         int
		check        func(reply) string
	}{
		{"UserStatus", func(b *Behavior) { b.UserStatus = 404 }, "GET", "/copilot_internal/user", "", 404, nil},
		{"AdvertisedAPI", func(b *Behavior) { b.AdvertisedAPI = "https://api.githubcopilot.com" }, "GET", "/copilot_internal/user", "", 200, func(r reply) string {
			if r.json["endpoints"].(map[string]any)["api"] != "https://api.githubcopilot.com" {
				return "endpoints.api not the advertised one"
			}
			return ""
		}},
		{"AdvertisedAPI in exchange", func(b *Behavior) { b.AdvertisedAPI = "https://x.acme.ghe.com" }, "POST", "/copilot_internal/v2/token", "", 200, func(r reply) string {
			if r.json["endpoints"].(map[string]any)["api"] != "https://x.acme.ghe.com" {
				return "endpoints.api not the advertised one"
			}
			return ""
		}},
		{"ExchangeStatus", func(b *Behavior) {
			b.ExchangeStatus, b.ExchangeMessage = 403, "Resource not accessible by personal access token"
		}, "GET", "/copilot_internal/v2/token", "", 403, func(r reply) string {
			if r.json["message"] != "Resource not accessible by personal access token" {
				return "wrong message"
			}
			return ""
		}},
		{"ModelsStatus", func(b *Behavior) { b.ModelsStatus = 400 }, "GET", "/models", "", 400, nil},
		{"Status with Retry-After", func(b *Behavior) {
			b.Status, b.RetryAfter = map[string]int{"/chat/completions": 429}, "7"
		}, "POST", "/chat/completions", `{"stream":true}`, 429, func(r reply) string {
			if r.header.Get("Retry-After") != "7" {
				return "no Retry-After: 7"
			}
			return hasKey(r, "message")
		}},
		{"Status under /api/v3", func(b *Behavior) { b.Status = map[string]int{"/meta": 503} }, "GET", "/api/v3/meta", "", 503, nil},
		{"Status leaves other routes", func(b *Behavior) { b.Status = map[string]int{"/meta": 503} }, "GET", "/models", "", 200, nil},
		{"ReplyText", func(b *Behavior) { b.ReplyText = "custom words" }, "POST", "/v1/messages", `{}`, 200, func(r reply) string {
			if !strings.Contains(string(r.body), "custom words") {
				return "reply text not used"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := start(t, tc.set)
			r := do(t, ft.Client(), ft, tc.method, tc.path, auth, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if tc.check != nil {
				if msg := tc.check(r); msg != "" {
					t.Fatalf("%s; body %s", msg, r.body)
				}
			}
		})
	}
}

func TestFirstByteDelayIsAtLeastTheDelay(t *testing.T) {
	t.Parallel()
	const d = 50 * time.Millisecond
	ft := start(t, func(b *Behavior) { b.FirstByteDelay = d })
	began := time.Now()
	do(t, ft.Client(), ft, "GET", "/models", "Bearer "+testToken, "")
	if took := time.Since(began); took < d {
		t.Fatalf("/models answered in %v, before the %v first-byte delay", took, d)
	}
	// REST routes are not the Copilot API host's and are not delayed; nothing to time there.
}

// event is one server-sent event.
type event struct{ name, data string }

// readEvent reads the next SSE event; io.EOF at a clean end.
func readEvent(br *bufio.Reader) (event, error) {
	var ev event
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && ev.data == "" {
				return ev, io.EOF
			}
			if err == io.EOF {
				return ev, io.ErrUnexpectedEOF
			}
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.data != "" || ev.name != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// textOf is the reply text an event carries, and whether it is a text chunk at all.
func textOf(path string, ev event) (string, bool) {
	var m map[string]any
	if json.Unmarshal([]byte(ev.data), &m) != nil {
		return "", false
	}
	switch path {
	case "/chat/completions":
		ch, _ := m["choices"].([]any)
		if len(ch) == 0 {
			return "", false
		}
		d, _ := ch[0].(map[string]any)["delta"].(map[string]any)
		s, ok := d["content"].(string)
		return s, ok
	case "/responses":
		if m["type"] != "response.output_text.delta" {
			return "", false
		}
		return m["delta"].(string), true
	default:
		if m["type"] != "content_block_delta" {
			return "", false
		}
		return m["delta"].(map[string]any)["text"].(string), true
	}
}

var streamPaths = []struct{ path, model, last string }{
	{"/chat/completions", "gpt-4.1", "[DONE]"},
	{"/responses", "gpt-5", "response.completed"},
	{"/v1/messages", "claude-sonnet-4.5", "message_stop"},
}

func openStream(t *testing.T, ctx context.Context, c *http.Client, ft *Tenant, path, model string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", ft.URL()+path,
		strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

func TestStreamsCarryTheReplyInChunks(t *testing.T) {
	t.Parallel()
	for _, sp := range streamPaths {
		for _, h2 := range []bool{false, true} {
			name := sp.path + map[bool]string{false: " http1", true: " h2"}[h2]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ft := start(t, func(b *Behavior) { b.StreamChunks = 5; b.ReplyText = "one two three four five six seven" })
				resp, br := openStream(t, context.Background(), clientFor(ft, h2), ft, sp.path, sp.model)
				defer resp.Body.Close()
				if got := resp.Proto; (got == "HTTP/2.0") != h2 {
					t.Fatalf("proto %s", got)
				}
				var text strings.Builder
				chunks := 0
				var last event
				for {
					ev, err := readEvent(br)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("read: %v", err)
					}
					if s, ok := textOf(sp.path, ev); ok && s != "" {
						chunks++
						text.WriteString(s)
					}
					last = ev
				}
				if text.String() != "one two three four five six seven" {
					t.Fatalf("text %q", text.String())
				}
				if chunks != 5 {
					t.Fatalf("%d text chunks, want 5", chunks)
				}
				if last.data != sp.last && last.name != sp.last {
					t.Fatalf("last event %+v, want %s", last, sp.last)
				}
				r := ft.Requests()[0]
				if !r.Stream || r.Model != sp.model || r.BodyBytes == 0 {
					t.Fatalf("recorded %+v", r)
				}
			})
		}
	}
}

// TestChunksArriveOneByOne proves each chunk is flushed as written: the client reads chunk 1
// while chunk 2 is held back by the gate. Without the flush the read would block (and the
// test time out) because the server would buffer the chunk.
func TestChunksArriveOneByOne(t *testing.T) {
	t.Parallel()
	for _, sp := range streamPaths {
		for _, h2 := range []bool{false, true} {
			t.Run(sp.path+map[bool]string{false: " http1", true: " h2"}[h2], func(t *testing.T) {
				t.Parallel()
				gate := make(chan struct{})
				ft := start(t, func(b *Behavior) { b.StreamChunks = 3; b.ReplyText = "aaa bbb ccc"; b.Gate = gate })
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				resp, br := openStream(t, ctx, clientFor(ft, h2), ft, sp.path, sp.model)
				defer resp.Body.Close()
				for i, want := range []string{"aaa", " bbb", " ccc"} {
					for {
						ev, err := readEvent(br)
						if err != nil {
							t.Fatalf("chunk %d: %v", i+1, err)
						}
						if s, ok := textOf(sp.path, ev); ok && s != "" {
							if s != want {
								t.Fatalf("chunk %d = %q, want %q", i+1, s, want)
							}
							break
						}
					}
					if i < 2 {
						gate <- struct{}{} // only now may the next chunk be written
					}
				}
			})
		}
	}
}

func TestChunkBytesPadsEvents(t *testing.T) {
	t.Parallel()
	ft := start(t, func(b *Behavior) { b.ChunkBytes = 2048; b.StreamChunks = 4 })
	resp, br := openStream(t, context.Background(), ft.Client(), ft, "/chat/completions", "gpt-4.1")
	defer resp.Body.Close()
	var text strings.Builder
	padded := 0
	for {
		ev, err := readEvent(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := textOf("/chat/completions", ev); ok && s != "" {
			text.WriteString(s)
			if n := len(ev.data) + len("data: \n\n"); n < 2000 || n > 2100 {
				t.Fatalf("chunk event is %d bytes, want about 2048", n)
			}
			padded++
		}
	}
	if padded != 4 || text.String() != DefaultReplyText {
		t.Fatalf("%d padded chunks, text %q", padded, text.String())
	}
}

func TestResetAfterChunksIsAnError(t *testing.T) {
	t.Parallel()
	for _, sp := range streamPaths {
		for _, h2 := range []bool{false, true} {
			t.Run(sp.path+map[bool]string{false: " http1", true: " h2"}[h2], func(t *testing.T) {
				t.Parallel()
				ft := start(t, func(b *Behavior) { b.ResetAfterChunks = 2; b.StreamChunks = 6 })
				resp, br := openStream(t, context.Background(), clientFor(ft, h2), ft, sp.path, sp.model)
				defer resp.Body.Close()
				chunks := 0
				var err error
				for {
					var ev event
					ev, err = readEvent(br)
					if err != nil {
						break
					}
					if s, ok := textOf(sp.path, ev); ok && s != "" {
						chunks++
					}
				}
				if err == io.EOF {
					t.Fatal("the stream ended cleanly; want an error")
				}
				if chunks != 2 {
					t.Fatalf("%d chunks before the reset, want 2", chunks)
				}
				if !h2 && !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("HTTP/1.1 read error %v, want a TCP reset (ECONNRESET)", err)
				}
				if h2 && !strings.Contains(err.Error(), "stream error") {
					t.Fatalf("h2 read error %v, want a stream reset", err)
				}
			})
		}
	}
}

func TestNeverEndStopsWhenTheClientGoesAway(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2"}[h2], func(t *testing.T) {
			t.Parallel()
			ft := start(t, func(b *Behavior) { b.NeverEnd = true; b.StreamChunks = 2 })
			ctx, cancel := context.WithCancel(context.Background())
			resp, br := openStream(t, ctx, clientFor(ft, h2), ft, "/v1/messages", "claude-sonnet-4.5")
			chunks := 0
			for chunks < 10 { // more than StreamChunks: it keeps going
				ev, err := readEvent(br)
				if err != nil {
					t.Fatalf("after %d chunks: %v", chunks, err)
				}
				if s, ok := textOf("/v1/messages", ev); ok && s != "" {
					chunks++
				}
			}
			if n := ft.OpenStreams(); n != 1 {
				t.Fatalf("OpenStreams = %d while streaming, want 1", n)
			}
			cancel()
			resp.Body.Close()
			wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer wcancel()
			if err := ft.WaitNoStreams(wctx); err != nil {
				t.Fatal(err)
			}
			if n := ft.CanceledStreams(); n != 1 {
				t.Fatalf("CanceledStreams = %d, want 1", n)
			}
		})
	}
}

func TestCloseEndsOpenStreams(t *testing.T) {
	t.Parallel()
	ft, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ft.Set(func(b *Behavior) { b.NeverEnd = true; b.ChunkInterval = time.Hour })
	resp, br := openStream(t, context.Background(), ft.Client(), ft, "/chat/completions", "gpt-4.1")
	defer resp.Body.Close()
	if _, err := readEvent(br); err != nil {
		t.Fatal(err)
	}
	ft.Close() // would hang on the hour-long interval if Close did not end the stream
	ft.Close() // and twice is fine
}

func TestRequestsAreRecordedInOrderAndLogged(t *testing.T) {
	t.Parallel()
	var log syncBuffer
	ft, err := Start(Options{Token: testToken, RequestLog: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	c := ft.Client()
	do(t, c, ft, "GET", "/meta", "", "")
	do(t, c, ft, "GET", "/models?x=1", "Bearer "+testToken, "")
	do(t, c, ft, "POST", "/chat/completions", "token gho_nottheone", `{"model":"gpt-4.1"}`)
	do(t, c, ft, "GET", "/models/"+testToken, "Bearer "+testToken, "") // a token where it does not belong
	reqs := ft.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests recorded, want 4", len(reqs))
	}
	for i, want := range []struct{ method, path, auth, scheme string }{
		{"GET", "/meta", "none", ""}, {"GET", "/models", "real", "Bearer"}, {"POST", "/chat/completions", "wrong", "token"},
	} {
		r := reqs[i]
		if r.Method != want.method || r.Path != want.path || r.Auth != want.auth || r.AuthScheme != want.scheme || r.At.IsZero() {
			t.Fatalf("request %d = %+v, want %+v", i, r, want)
		}
	}
	if reqs[1].RawQuery != "x=1" || reqs[1].AuthTokenSHA256 != TokenSHA256(testToken) {
		t.Fatalf("request 1: query %q sha %q", reqs[1].RawQuery, reqs[1].AuthTokenSHA256)
	}
	if reqs[2].BodyBytes != int64(len(`{"model":"gpt-4.1"}`)) || reqs[2].Model != "gpt-4.1" {
		t.Fatalf("request 2: %+v", reqs[2])
	}
	// Requests is a copy: editing it changes nothing inside the tenant.
	reqs[1].Header.Set("Authorization", "changed")
	if ft.Requests()[1].Header.Get("Authorization") != "Bearer "+testToken {
		t.Fatal("Requests shares header maps with the tenant")
	}

	logged := log.String()
	if strings.Contains(logged, testToken) || strings.Contains(logged, "gho_nottheone") {
		t.Fatal("the request log holds a token value")
	}
	lines := strings.Split(strings.TrimSpace(logged), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d log lines, want 4", len(lines))
	}
	var l LogLine
	if err := json.Unmarshal([]byte(lines[1]), &l); err != nil {
		t.Fatal(err)
	}
	if !l.AuthOK || l.AuthTokenSHA256 != TokenSHA256(testToken) || !contains(l.HeaderNames, "Authorization") ||
		l.AuthHeader != "Authorization" || l.AuthScheme != "Bearer" || l.RawQuery != "x=1" || l.Status != 200 {
		t.Fatalf("log line %+v", l)
	}
	// Each line says what the client got: the statuses of /meta, /models, a wrong token, an unknown path.
	for i, want := range []int{200, 200, 401, 404} {
		if err := json.Unmarshal([]byte(lines[i]), &l); err != nil || l.Status != want {
			t.Fatalf("log line %d: status %d, want %d (%v)", i, l.Status, want, err)
		}
		if l.RemoteIP != "127.0.0.1" { // the client's address, no port
			t.Fatalf("log line %d: remote_ip = %q, want 127.0.0.1", i, l.RemoteIP)
		}
	}

	ft.ResetRequests()
	if n := len(ft.Requests()); n != 0 {
		t.Fatalf("%d requests after ResetRequests", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSplitText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s string
		n int
	}{{"", 3}, {"ab", 5}, {"héllo wörld", 4}, {DefaultReplyText, 8}, {"x", 0}} {
		got := splitText(tc.s, tc.n)
		if strings.Join(got, "") != tc.s {
			t.Fatalf("splitText(%q, %d) = %q", tc.s, tc.n, got)
		}
	}
}

func TestAnyHostMintsACertificatePerName(t *testing.T) {
	t.Parallel()
	for _, anyHost := range []bool{false, true} {
		ft, err := Start(Options{Token: testToken, AnyHost: anyHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ft.Close)
		addr := strings.TrimPrefix(ft.URL(), "https://")
		for _, name := range []string{"api.github.com", "byok.route.test", "api.acme.ghe.com", "api.github.com"} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ft.CertPool(), ServerName: name})
			ownName := strings.HasSuffix(name, ".acme.ghe.com")
			if (err == nil) != (anyHost || ownName) {
				t.Fatalf("AnyHost=%v: handshake as %s: err=%v", anyHost, name, err)
			}
			if err != nil {
				continue
			}
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if err := leaf.VerifyHostname(name); err != nil {
				t.Fatalf("AnyHost=%v: the certificate for %s: %v", anyHost, name, err)
			}
			if !ownName && len(leaf.DNSNames) != 1 {
				t.Fatalf("a minted certificate names %v, want only %s", leaf.DNSNames, name)
			}
		}
	}
}

// send makes one request with the given headers (Host may be set to pose as another host name).
func send(t *testing.T, ft *Tenant, method, path string, header map[string]string, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, ft.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := ft.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

func TestAPIKeyHeadersCarryTheCredential(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		header     map[string]string
		want       int
		wantHeader string
		wantAuth   string
	}{
		{"x-api-key", map[string]string{"X-Api-Key": testToken}, 200, "X-Api-Key", "real"},
		{"api-key", map[string]string{"Api-Key": testToken}, 200, "Api-Key", "real"},
		{"wrong x-api-key", map[string]string{"X-Api-Key": "sk-wrong"}, 401, "X-Api-Key", "wrong"},
		{"authorization wins", map[string]string{"Authorization": "Bearer " + testToken, "X-Api-Key": "sk-wrong"}, 200, "Authorization", "real"},
		{"none", nil, 401, "", "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A tenant that accepts only "token": a key header has no scheme, so that rule does not apply.
			ft := start(t, func(b *Behavior) { b.RequireScheme = "token" })
			if tc.wantHeader == "Authorization" {
				ft.Set(func(b *Behavior) { b.RequireScheme = "" })
			}
			r := send(t, ft, "POST", "/v1/messages", tc.header, `{"model":"claude-sonnet-4.5"}`)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			got := ft.Requests()[0]
			// Every credential header is hashed, also the one the tenant did not use.
			for name, v := range tc.header {
				if name == "Authorization" {
					_, v = splitAuth(v)
				}
				if got.CredentialSHA256[name] != TokenSHA256(v) {
					t.Fatalf("CredentialSHA256 = %v, want %s's hash for %s", got.CredentialSHA256, v, name)
				}
			}
			if len(got.CredentialSHA256) != len(tc.header) {
				t.Fatalf("CredentialSHA256 = %v, want %d entries", got.CredentialSHA256, len(tc.header))
			}
			if got.AuthHeader != tc.wantHeader || got.Auth != tc.wantAuth || got.AuthScheme != "" && tc.wantHeader != "Authorization" {
				t.Fatalf("recorded header %q auth %q scheme %q, want %q %q", got.AuthHeader, got.Auth, got.AuthScheme, tc.wantHeader, tc.wantAuth)
			}
		})
	}
}

func TestUserEndpointsFollowTheHostAsked(t *testing.T) {
	t.Parallel()
	ft := start(t, nil)
	for host, want := range map[string]string{
		"api.acme.ghe.com": "https://copilot-api.acme.ghe.com",
		"api.github.com":   "https://api.enterprise.githubcopilot.com",
		"github.com:443":   "https://api.enterprise.githubcopilot.com",
		"":                 "https://copilot-api.acme.ghe.com",
	} {
		h := map[string]string{"Authorization": "Bearer " + testToken}
		if host != "" {
			h["Host"] = host
		}
		r := send(t, ft, "GET", "/copilot_internal/user", h, "")
		eps, _ := r.json["endpoints"].(map[string]any)
		if r.status != 200 || eps["api"] != want {
			t.Fatalf("host %q: %d endpoints %v, want api %s", host, r.status, eps, want)
		}
		for k, v := range eps {
			if s, _ := v.(string); !strings.HasPrefix(s, "https://") || strings.Contains(want, "acme") != strings.HasSuffix(s, ".acme.ghe.com") {
				t.Fatalf("host %q: endpoints.%s = %v", host, k, v)
			}
		}
	}
}

func TestTelemetryNeedsNoCredential(t *testing.T) {
	t.Parallel()
	ft := start(t, nil)
	for body, n := range map[string]float64{`[{"name":"a"},{"name":"b"}]`: 2, "{\"name\":\"a\"}\n{\"name\":\"b\"}\n{\"name\":\"c\"}\n": 3, "": 0} {
		r := send(t, ft, "POST", "/telemetry", nil, body)
		if r.status != 200 || r.json["itemsReceived"] != n || r.json["itemsAccepted"] != n {
			t.Fatalf("telemetry %q: %d %s, want %v items", body, r.status, r.body, n)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"d"}]`))
	_ = zw.Close()
	if r := send(t, ft, "POST", "/telemetry", map[string]string{"Content-Encoding": "gzip"}, gz.String()); r.status != 200 || r.json["itemsAccepted"] != 4.0 {
		t.Fatalf("gzipped telemetry: %d %s, want 4 items", r.status, r.body)
	}
	if r := send(t, ft, "POST", "/telemetry", map[string]string{"Content-Encoding": "gzip"}, "not gzip"); r.status != 400 {
		t.Fatalf("bad gzip: %d, want 400", r.status)
	}
	if r := send(t, ft, "GET", "/telemetry?tas-endpoint=githubdevdiv", nil, ""); r.status != 200 || r.json["Configs"] == nil {
		t.Fatalf("GET /telemetry (experiment assignments): %d %s", r.status, r.body)
	}
	if r := send(t, ft, "PUT", "/telemetry", nil, ""); r.status != 405 {
		t.Fatalf("PUT /telemetry: %d, want 405", r.status)
	}
}

// Every completion reports its usage in its wire format's own fields, cached tokens included,
// sends the quota snapshot headers, and is recorded with what it cost: its model's multiplier for a
// user-initiated request, nothing for an agent-initiated one.
func TestCompletionUsageAndCost(t *testing.T) {
	t.Parallel()
	ft := start(t, nil)
	c := ft.Client()
	post := func(path, model string, stream bool, initiator string) (http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", ft.URL()+path, strings.NewReader(`{"model":"`+model+`","stream":`+map[bool]string{true: "true", false: "false"}[stream]+`}`))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if initiator != "" {
			req.Header.Set("X-Initiator", initiator)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Header, string(b)
	}
	cases := []struct {
		path   string
		stream bool
		want   []string
	}{
		{"/chat/completions", false, []string{`"prompt_tokens":42`, `"cached_tokens":16`, `"completion_tokens":7`}},
		{"/chat/completions", true, []string{`"prompt_tokens":42`, `"cached_tokens":16`, `"completion_tokens":7`}},
		{"/responses", false, []string{`"input_tokens":42`, `"cached_tokens":16`, `"output_tokens":7`}},
		{"/responses", true, []string{`"input_tokens":42`, `"cached_tokens":16`, `"output_tokens":7`, `"usage":null`}},
		{"/v1/messages", false, []string{`"input_tokens":22`, `"cache_read_input_tokens":16`, `"cache_creation_input_tokens":4`, `"output_tokens":7`}},
		{"/v1/messages", true, []string{`"input_tokens":22`, `"cache_read_input_tokens":16`, `"output_tokens":1`, `"usage":{"output_tokens":7}`}},
	}
	for _, tc := range cases {
		h, body := post(tc.path, "o4-mini", tc.stream, "")
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s stream=%t lacks %s:\n%.600s", tc.path, tc.stream, w, body)
			}
		}
		if q := h.Get("X-Quota-Snapshot-Premium_interactions"); !strings.Contains(q, "ent=300") || !strings.Contains(q, "rst=2026-12-01T00%3A00%3A00Z") {
			t.Errorf("%s: quota snapshot %q", tc.path, q)
		}
	}
	ft.Set(func(b *Behavior) { b.SeparateUsageChunk = true })
	if _, body := post("/chat/completions", "claude-opus-4.1", true, "agent"); !strings.Contains(body, `"choices":[],`) {
		t.Errorf("no separate usage chunk:\n%s", body)
	}
	post("/v1/messages", "gpt-5", false, "user")
	u := ft.Usage()
	if h := u["o4-mini"]; h.Requests != 6 || fmt.Sprintf("%.2f", h.Premium) != "1.98" || h.InputTokens != 6*42 || h.CachedTokens != 6*16 || h.OutputTokens != 6*7 {
		t.Errorf("o4-mini: %+v", h)
	}
	if o := u["claude-opus-4.1"]; o.Requests != 1 || o.Premium != 0 {
		t.Errorf("an agent turn on opus: %+v", o)
	}
	if g := u["gpt-5"]; g.Premium != 1 {
		t.Errorf("gpt-5: %+v", g)
	}
}
