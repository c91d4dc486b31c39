package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// discardWriter is a ResponseWriter that keeps nothing: the hot-path benchmark measures the
// proxy's own work, not a server's.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkHotPath is the proxy's own per-request work, in ServeHTTP's order, on a pre-built
// request as the Copilot CLI sends it: refusal checks, route, client auth, the request state in
// the context (and the counting, size-limited body for a POST), the outbound header rewrite, the
// credential, the reply-header scrub, the stats and the JSON log line. What net/http's server,
// httputil.ReverseProxy and the upstream transport do around it is not in it (BenchmarkModels
// shows the whole). The log line is formatted by a real JSON handler (to io.Discard): that is
// what serve pays, a no-op handler would hide it.
func BenchmarkHotPath(b *testing.B) {
	client := NewClientToken()
	p, err := New(context.Background(), Config{
		Endpoints:      platform.Endpoints{CopilotAPIURL: "https://copilot-api.acme.ghe.com", CopilotRESTAPIURL: "https://api.acme.ghe.com"},
		ExplicitTarget: true,
		Token:          copilot.NewToken(realToken),
		ClientToken:    client,
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path string
		body               bool
	}{
		{"GET-models", http.MethodGet, "/models", false},
		{"POST-chat", http.MethodPost, "/chat/completions", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in, _ := http.NewRequest(tc.method, "http://127.0.0.1:8080"+tc.path, nil)
			in.RequestURI = tc.path
			in.URL = &url.URL{Path: tc.path}
			hdr := http.Header{
				"Authorization":          {"Bearer " + client.Reveal()},
				"User-Agent":             {"copilot/1.0.102 (linux v22.12.0) term/unknown"},
				"Accept":                 {"application/json"},
				"Content-Type":           {"application/json"},
				"Copilot-Integration-Id": {"copilot-developer-cli"},
				"X-Request-Id":           {"7d3c9b2e-5b0a-4f5e-9a53-2c8e0c1f0a11"},
				"Openai-Intent":          {"conversation-agent"},
				"X-Initiator":            {"agent"},
				"X-Interaction-Type":     {"conversation-agent"},
			}
			auth := hdr["Authorization"]
			in.Header = hdr
			reply := &http.Response{StatusCode: 200, Header: http.Header{
				"Content-Type":         {"application/json"},
				"Content-Length":       {"4096"},
				"Date":                 {"Sun, 29 Nov 2026 16:41:05 GMT"},
				"X-Github-Request-Id":  {"C0DE:1234:5678:9ABC:DEF0"},
				"Strict-Transport-Sec": {"max-age=31536000"},
				"X-Request-Id":         {"7d3c9b2e-5b0a-4f5e-9a53-2c8e0c1f0a11"},
			}}
			w := &discardWriter{h: http.Header{}}
			out := &http.Request{Method: tc.method, Header: http.Header{}, URL: &url.URL{}}
			body := strings.NewReader(`{"stream":true}`)
			rc := io.NopCloser(body)
			b.ReportAllocs()
			for b.Loop() {
				hdr["Authorization"] = auth // the rewrite removed it from the previous round's copy
				r := in
				if tc.body {
					body.Reset(`{"stream":true}`)
					r.Body = rc
				}
				st := &reqState{rw: w, start: time.Now(), route: routeNotAllowed}
				if refuseReason(r) != "" || hasPrefix(r.URL.Path, "/_copilot-route/") {
					b.Fatal("refused")
				}
				path, bad := canonicalPath(r)
				rl := p.policy.match(r.Method, path)
				if bad != "" || rl == nil {
					b.Fatal("not allowed")
				}
				st.route = rl.label
				if !p.authorize(st, r) {
					b.Fatal("unauthorized")
				}
				st.up, st.path = p.copilot, path
				if r.Body != nil {
					r.Body = &countingBody{st: st, rc: http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes)}
				}
				r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))

				// What ReverseProxy hands Rewrite: a copy of the request with its own header map.
				*out.URL = *r.URL
				clear(out.Header)
				for k, v := range r.Header {
					out.Header[k] = v
				}
				p.copilot.rp.Rewrite(&httputil.ProxyRequest{In: r, Out: out})
				if s := stateOf(r.Context()); s == nil || s.shim {
					b.Fatal("state")
				}
				setAuth(out, p.copilot.scheme.Load(), p.copilot.bearer, p.copilot.token)
				scrub(reply, realToken)
				st.scheme.Store(schemeBearer)
				st.WriteHeader(reply.StatusCode)
				st.Write(nil) // the body bytes are the server's business; count the call
				if tc.body {
					io.Copy(io.Discard, r.Body)
				}
				p.finish(st, r)
			}
		})
	}
}

// TestTransportPerRoute checks the protocol split the benchmarks justify: completions (streams)
// reach the upstream over HTTP/2, short requests over HTTP/1.1 keep-alive.
func TestTransportPerRoute(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	for _, c := range []struct{ method, path, body, proto string }{
		{http.MethodGet, "/models", "", "HTTP/1.1"},
		{http.MethodPost, "/chat/completions", `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "HTTP/2.0"},
		{http.MethodPost, "/v1/messages", `{"model":"claude-sonnet-4.5","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "HTTP/2.0"},
		{http.MethodGet, "/models", "", "HTTP/1.1"},
	} {
		ft.ResetRequests()
		if status, _, body := h.do(t, c.method, c.path, h.bearer(), c.body, map[string]string{"Content-Type": "application/json"}); status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.path, status, body)
		}
		reqs := ft.Requests()
		if len(reqs) != 1 || reqs[0].Proto != c.proto {
			t.Errorf("%s %s reached the upstream as %+v, want one %s request", c.method, c.path, reqs, c.proto)
		}
	}
}
