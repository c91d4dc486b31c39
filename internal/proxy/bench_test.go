package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// BenchmarkModels compares GET /models straight to an upstream with the same request through the
// proxy (logging to a file, as serve does). The difference between the two is what the proxy
// adds: ns/op is the added latency per request, allocs/op the added allocations (both sides of
// the proxy: its server and its upstream client).
func BenchmarkModels(b *testing.B) {
	body := []byte(`{"data":[{"id":"gpt-4.1","object":"model"}],"object":"list"}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer up.Close()
	logf, err := os.Create(filepath.Join(b.TempDir(), "proxy.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	client := NewClientToken()
	p, err := New(context.Background(), Config{
		Endpoints:      platform.Endpoints{CopilotAPIURL: up.URL, CopilotRESTAPIURL: up.URL},
		ExplicitTarget: true,
		Token:          copilot.NewToken(realToken),
		ClientToken:    client,
		Logger:         slog.New(slog.NewJSONHandler(logf, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	// The same with a model policy and every budget set: /models replies are read and filtered.
	pg, err := New(context.Background(), Config{
		Endpoints:      platform.Endpoints{CopilotAPIURL: up.URL, CopilotRESTAPIURL: up.URL},
		ExplicitTarget: true,
		Token:          copilot.NewToken(realToken),
		ClientToken:    client,
		Logger:         slog.New(slog.NewJSONHandler(logf, nil)),
		AllowedModels:  []string{"gpt-*"}, BlockedModels: []string{"gpt-5*"},
		MaxRequests: 1e9, MaxPremiumRequests: 1e9, MaxTokens: 1e12,
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	lng, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- p.Serve(ctx, ln) }()
	go func() { done <- pg.Serve(ctx, lng) }()
	defer func() { cancel(); <-done; <-done }()

	run := func(b *testing.B, base string) {
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, base+"/models", nil)
		req.Header.Set("Authorization", "Bearer "+client.Reveal())
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, up.URL) })
	b.Run("via-proxy", func(b *testing.B) { run(b, "http://"+ln.Addr().String()) })
	b.Run("via-proxy-governed", func(b *testing.B) { run(b, "http://"+lng.Addr().String()) })
}
