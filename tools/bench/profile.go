package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/copilot-route/copilot-route/internal/proxy"
)

// runProfiledProxy is `bench proxy -profile DIR` followed by serve's flags (the subset bench
// passes): the same proxy.Config serve builds, run in this process so that a benchmark run can
// write CPU, allocation, heap, mutex and block profiles of the proxy alone (the client and the
// upstream are other processes). Profiles are written on SIGTERM.
func runProfiledProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	dir := fs.String("profile", ".", "directory for cpu.prof, allocs.prof, heap.prof, mutex.prof, block.prof")
	listen := fs.String("listen", "127.0.0.1:0", "")
	logFile := fs.String("log-file", "", "")
	serverURL := fs.String("server-url", "", "")
	target := fs.String("copilot-api-target", "", "")
	caFile := fs.String("ca-file", "", "")
	resolve := map[string]string{}
	fs.Func("resolve", "HOST:PORT:ADDR:PORT", func(v string) error {
		host, rest, _ := strings.Cut(v, ":")
		port, addr, _ := strings.Cut(rest, ":")
		resolve[host+":"+port] = addr
		return nil
	})
	var allowed, blocked []string
	fs.Func("allowed-models", "", func(v string) error { allowed = append(allowed, proxy.SplitModelList(v)...); return nil })
	fs.Func("blocked-models", "", func(v string) error { blocked = append(blocked, proxy.SplitModelList(v)...); return nil })
	maxRequests := fs.Int64("max-requests", 0, "")
	maxPremium := fs.Float64("max-premium-requests", 0, "")
	maxTokens := fs.Int64("max-tokens", 0, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ep, err := platform.Detect(platform.Input{ServerURL: *serverURL, CopilotAPITarget: *target})
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if pem, err := os.ReadFile(*caFile); err != nil || !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("read --ca-file %s: %v", *caFile, err)
	}
	logf, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(10000) // one sample per 10 µs blocked
	cpu, err := os.Create(filepath.Join(*dir, "cpu.prof"))
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// SIGUSR1: a heap profile now (bench sends it while many streams are open).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			if f, err := os.Create(filepath.Join(*dir, "heap-open-streams.prof")); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(os.Stderr, "bench proxy: %d goroutines, heap in use %.1f MiB, stacks %.1f MiB, sys %.1f MiB\n",
				runtime.NumGoroutine(), float64(ms.HeapInuse)/(1<<20), float64(ms.StackInuse)/(1<<20), float64(ms.Sys)/(1<<20))
		}
	}()
	p, err := proxy.New(ctx, proxy.Config{
		Endpoints: ep, ExplicitTarget: true,
		Token:       copilot.NewToken(os.Getenv("COPILOT_GITHUB_TOKEN")),
		ClientToken: copilot.NewToken(os.Getenv("COPILOT_ROUTE_CLIENT_TOKEN")),
		RootCAs:     roots, Resolve: resolve,
		Logger:        slog.New(slog.NewJSONHandler(logf, nil)),
		AllowedModels: allowed, BlockedModels: blocked,
		MaxRequests: *maxRequests, MaxPremiumRequests: *maxPremium, MaxTokens: *maxTokens,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]any{"url": proxy.ListenURL(ln.Addr()), "pid": os.Getpid()})
	fmt.Println(string(line))
	serveErr := p.Serve(ctx, ln)

	pprof.StopCPUProfile()
	cpu.Close()
	for _, name := range []string{"allocs", "heap", "mutex", "block"} {
		f, err := os.Create(filepath.Join(*dir, name+".prof"))
		if err != nil {
			return err
		}
		pprof.Lookup(name).WriteTo(f, 0)
		f.Close()
	}
	return serveErr
}
