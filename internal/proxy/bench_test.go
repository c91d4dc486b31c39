package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// BenchmarkStreamFirstEvent is one streamed completion through the proxy, request sent to its
// first event read, then the rest of its 20 events: without and with a model policy and every
// budget (the body read whole and checked, the budgets counted, the usage read as it passes).
func BenchmarkStreamFirstEvent(b *testing.B) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/models" {
			w.Write([]byte(`{"data":[{"id":"gpt-4.1","billing":{"multiplier":1}}],"object":"list"}`))
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 20 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"chunk %d\"}}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n")
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	defer up.Close()
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	client := NewClientToken()
	for _, gov := range []bool{false, true} {
		cfg := Config{
			Endpoints:      platform.Endpoints{CopilotAPIURL: up.URL, CopilotRESTAPIURL: up.URL},
			ExplicitTarget: true, Token: copilot.NewToken(realToken), ClientToken: client, RootCAs: roots,
			Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		}
		if gov {
			cfg.AllowedModels, cfg.BlockedModels = []string{"gpt-*"}, []string{"gpt-5*"}
			cfg.MaxRequests, cfg.MaxPremiumRequests, cfg.MaxTokens = 1e12, 1e9, 1e15
		}
		p, err := New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Serve(ctx, ln) }()
		b.Run(map[bool]string{false: "ungoverned", true: "governed"}[gov], func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 4}
			defer tr.CloseIdleConnections()
			body := `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			var first time.Duration
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/chat/completions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+client.Reveal())
				t0 := time.Now()
				resp, err := tr.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%v %v", resp, err)
				}
				br := bufio.NewReader(resp.Body)
				if _, err := br.ReadString('\n'); err != nil {
					b.Fatal(err)
				}
				first += time.Since(t0)
				io.Copy(io.Discard, br)
				resp.Body.Close()
			}
			b.ReportMetric(float64(first.Microseconds())/float64(b.N), "µs-first-event/op")
		})
		cancel()
		<-done
	}
}
