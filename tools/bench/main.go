// Command bench measures copilot-route against the direct path on loopback: A, a client talking
// TLS with keep-alive straight to an upstream; B, the same client talking plain HTTP with the
// client token to `copilot-route serve`, which talks TLS to the same upstream. scripts/bench.sh
// builds and runs it; docs/performance.md explains the figures.
//
//	bench [-quick] -binary PATH -wrk PATH -out bench-results.json
//	bench upstream -dir DIR       (the lean TLS upstream, started by bench itself)
//	bench proxy ...               (the proxy in-process with pprof profiles; see profile.go)
//	bench peer -target URL -ca F  (C: a plain httputil.ReverseProxy, the baseline peer)
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "upstream":
		err = runUpstream(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "peer":
		err = runPeer(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "proxy":
		err = runProfiledProxy(os.Args[2:])
	default:
		err = runBench(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	binary, wrk, out, workdir, profileDir string
	quick                                 bool
	reps                                  int
	duration                              time.Duration
	sseChunks, sseStreams, holdStreams    int
	uploads, detectRuns, startRuns        int
}

// pair holds the figures of one workload: A direct, B copilot-route, C the plain
// httputil.ReverseProxy peer.
type pair[T any] struct {
	Direct T `json:"direct"`
	Proxy  T `json:"proxy"`
	Peer   T `json:"peer"`
}

type results struct {
	Time         time.Time `json:"time"`
	GoVersion    string    `json:"go_version"`
	CPUs         int       `json:"cpus"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`
	Quick        bool      `json:"quick"`
	Reps         int       `json:"repetitions"`
	Upstream     string    `json:"upstream"`
	Governed     bool      `json:"governed"` // the proxy ran with a model policy and every budget
	ProxyCommand string    `json:"proxy_command"`

	// Medians over the repetitions.
	Models1      pair[wrkResult] `json:"models_1_client"`
	Models64     pair[wrkResult] `json:"models_64_clients"`
	SSE1         pair[sseResult] `json:"sse_1_stream"`
	SSEMany      pair[sseResult] `json:"sse_many_streams"`
	UploadMBps   pair[float64]   `json:"upload_10mib_mb_per_s"`
	CPUPer10k    float64         `json:"proxy_cpu_seconds_per_10k_requests"`
	PeerCPU10k   float64         `json:"peer_cpu_seconds_per_10k_requests"`
	PeerRSSHold  float64         `json:"peer_rss_open_streams_mib"`
	PeerPeakRSS  float64         `json:"peer_peak_rss_mib"`
	RSSIdleMiB   float64         `json:"proxy_rss_idle_mib"`
	RSSHoldMiB   float64         `json:"proxy_rss_open_streams_mib"`
	HoldStreams  int             `json:"open_streams"`
	RSSAfterMiB  float64         `json:"proxy_rss_after_mib"`
	PeakRSSMiB   float64         `json:"proxy_peak_rss_mib"`
	DetectMS     float64         `json:"detect_ms"`
	StartReadyMS float64         `json:"start_to_ready_ms"`

	Raw struct {
		Models1, Models64 []pair[wrkResult]
		SSE1, SSEMany     []pair[sseResult]
		Upload            []pair[float64]
		CPUPer10k         []float64
		PeerCPU10k        []float64
		DetectMS          []float64
		StartReadyMS      []float64
	} `json:"raw"`
}

func runBench(args []string) error {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.binary, "binary", ".tools/bin/copilot-route", "the copilot-route binary to measure")
	fs.StringVar(&c.wrk, "wrk", "wrk", "the wrk binary")
	fs.StringVar(&c.out, "out", "bench-results.json", "where to write the results")
	fs.StringVar(&c.workdir, "workdir", "", "directory for logs and state (default: a temporary one, removed)")
	fs.StringVar(&c.profileDir, "profile", "", "run the proxy in-process (bench proxy) and write pprof profiles here instead of measuring the binary's serve")
	fs.BoolVar(&c.quick, "quick", false, "a smoke run under a minute: one repetition, short and small workloads")
	fs.IntVar(&c.reps, "reps", 3, "repetitions of each A/B pair (medians are reported)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each GET /models run")
	var proxyEnv []string
	fs.Func("proxy-env", "KEY=VALUE added to the proxy's environment (repeatable; e.g. GOMEMLIMIT=48MiB for tuning)", func(v string) error {
		proxyEnv = append(proxyEnv, v)
		return nil
	})
	governed := fs.Bool("governed", false, "run the proxy with a model policy and every budget set (allowed/blocked models, max-requests, max-premium-requests, max-tokens), none of them reached")
	skipAB := fs.Bool("hold-only", false, "measure only the memory with open streams (for tuning)")
	only := fs.String("only", "", "comma-separated subset of models,sse,upload to run (for tuning; the default runs all)")
	hold := fs.Int("hold", 0, "streams to hold open for the memory figure (default 1,000; 200 with -quick)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.sseChunks, c.sseStreams, c.holdStreams = 200, 256, 1000
	c.uploads, c.detectRuns, c.startRuns = 5, 21, 7
	if c.quick {
		c.reps, c.duration = 1, 2*time.Second
		c.sseChunks, c.sseStreams, c.holdStreams = 40, 64, 200
		c.uploads, c.detectRuns, c.startRuns = 2, 5, 2
	}
	if *hold > 0 {
		c.holdStreams = *hold
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if c.workdir == "" {
		if c.workdir, err = os.MkdirTemp("", "copilot-route-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(c.workdir)
	}

	res := results{Time: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		LoadAvgStart: loadavg(), Quick: c.quick, Reps: c.reps,
		Upstream: "lean TLS upstream (tools/bench upstream: /models, SSE, upload; HTTP/2 and HTTP/1.1); internal/faketenant records every request and body, which would be the bottleneck"}

	// The upstream.
	up, upLine, err := startChild(self, []string{"upstream", "-dir", c.workdir}, nil, filepath.Join(c.workdir, "upstream.err"))
	if err != nil {
		return fmt.Errorf("start the upstream: %w", err)
	}
	defer stopChild(up)
	var upInfo struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal(upLine, &upInfo); err != nil {
		return fmt.Errorf("upstream said %q: %w", upLine, err)
	}
	caFile := filepath.Join(c.workdir, "ca.pem")
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	// The proxy: serve as start runs it, logging one JSON line per request to a file.
	realToken := "gho_" + randomAlnum(36)
	clientToken := "ghs_" + randomAlnum(36)
	serveArgs := []string{"serve", "--listen", "127.0.0.1:0", "--log-file", filepath.Join(c.workdir, "proxy.log"),
		"--server-url", "https://acme.ghe.com", "--copilot-api-target", "https://copilot-api.acme.ghe.com",
		"--resolve", "copilot-api.acme.ghe.com:443:" + upInfo.Addr, "--resolve", "api.acme.ghe.com:443:" + upInfo.Addr,
		"--ca-file", caFile}
	if *governed {
		// Every check runs on every request; no limit is reached in a run.
		serveArgs = append(serveArgs, "--allowed-models", "model-*", "--blocked-models", "model-99,other-*",
			"--max-requests", "1000000000", "--max-premium-requests", "1000000000", "--max-tokens", "1000000000000")
	}
	res.Governed = *governed
	proxyExe := c.binary
	if c.profileDir != "" {
		proxyExe = self
		serveArgs = append([]string{"proxy", "-profile", c.profileDir}, serveArgs[1:]...)
	}
	res.ProxyCommand = "copilot-route " + strings.Join(serveArgs, " ")
	// GOMEMLIMIT as start gives it to the serve it launches (internal/cli/start.go); -proxy-env
	// entries come later and win.
	env := append([]string{"COPILOT_GITHUB_TOKEN=" + realToken, "COPILOT_ROUTE_CLIENT_TOKEN=" + clientToken,
		"GOMEMLIMIT=48MiB"}, proxyEnv...)
	px, pxLine, err := startChild(proxyExe, serveArgs, env, filepath.Join(c.workdir, "proxy.err"))
	if err != nil {
		return fmt.Errorf("start the proxy (%s): %w", proxyExe, err)
	}
	defer stopChild(px)
	var pxInfo struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(pxLine, &pxInfo); err != nil || pxInfo.URL == "" {
		return fmt.Errorf("proxy said %q", pxLine)
	}
	pid := px.Process.Pid
	pr, prLine, err := startChild(self, []string{"peer", "-target", "https://" + upInfo.Addr, "-ca", caFile}, nil, filepath.Join(c.workdir, "peer.err"))
	if err != nil {
		return fmt.Errorf("start the peer: %w", err)
	}
	defer stopChild(pr)
	var prInfo struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(prLine, &prInfo); err != nil || prInfo.URL == "" {
		return fmt.Errorf("peer said %q", prLine)
	}
	time.Sleep(200 * time.Millisecond)
	if ps, err := readProc(pid); err == nil {
		res.RSSIdleMiB = mib(ps.RSS)
	}

	clientConns := max(c.holdStreams, c.sseStreams, 64)
	A := target{name: "direct", base: "https://" + upInfo.Addr, auth: "Bearer " + realToken, client: newClient(roots, clientConns)}
	B := target{name: "proxy", base: pxInfo.URL, auth: "Bearer " + clientToken, client: newClient(nil, clientConns)}
	C := target{name: "peer", base: prInfo.URL, auth: "Bearer " + realToken, client: newClient(nil, clientConns)}
	progress := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) }

	// Warm both paths: connections, the proxy's upstream pool, its Authorization scheme.
	for _, t := range []target{A, B, C} {
		if err := warm(t, 64, false); err != nil {
			return fmt.Errorf("warm-up via %s: %w", t.name, err)
		}
		if _, err := runWrk(c.wrk, t, 64, time.Second); err != nil {
			return err
		}
	}

	body := uploadBody(10 << 20)
	ctx := context.Background()
	if *skipAB {
		c.reps = 0
	}
	want := func(w string) bool { return *only == "" || strings.Contains(","+*only+",", ","+w+",") }
	for rep := 1; rep <= c.reps; rep++ {
		progress("repetition %d/%d (load %s)", rep, c.reps, loadavg())
		var m1, m64 pair[wrkResult]
		if want("models") {
			if m1.Direct, err = runWrk(c.wrk, A, 1, c.duration); err != nil {
				return err
			}
			if m1.Proxy, err = runWrk(c.wrk, B, 1, c.duration); err != nil {
				return err
			}
			if m64.Direct, err = runWrk(c.wrk, A, 64, c.duration); err != nil {
				return err
			}
			before, err := readProc(pid)
			if err != nil {
				return err
			}
			if m64.Proxy, err = runWrk(c.wrk, B, 64, c.duration); err != nil {
				return err
			}
			after, err := readProc(pid)
			if err != nil {
				return err
			}
			res.Raw.CPUPer10k = append(res.Raw.CPUPer10k, (after.CPU-before.CPU).Seconds()/float64(m64.Proxy.Requests)*1e4)
			if m1.Peer, err = runWrk(c.wrk, C, 1, c.duration); err != nil {
				return err
			}
			if before, err = readProc(pr.Process.Pid); err != nil {
				return err
			}
			if m64.Peer, err = runWrk(c.wrk, C, 64, c.duration); err != nil {
				return err
			}
			if after, err = readProc(pr.Process.Pid); err != nil {
				return err
			}
			res.Raw.PeerCPU10k = append(res.Raw.PeerCPU10k, (after.CPU-before.CPU).Seconds()/float64(m64.Peer.Requests)*1e4)
			res.Raw.Models1 = append(res.Raw.Models1, m1)
			res.Raw.Models64 = append(res.Raw.Models64, m64)
			progress("  /models (direct / proxy / peer): 1 client p50 %.3f / %.3f / %.3f ms (added %+.3f / %+.3f), 64 clients %.0f / %.0f / %.0f req/s, CPU per 10k proxy %.3f s, peer %.3f s",
				m1.Direct.P50MS, m1.Proxy.P50MS, m1.Peer.P50MS, m1.Proxy.P50MS-m1.Direct.P50MS, m1.Peer.P50MS-m1.Direct.P50MS,
				m64.Direct.RPS, m64.Proxy.RPS, m64.Peer.RPS, res.Raw.CPUPer10k[len(res.Raw.CPUPer10k)-1], res.Raw.PeerCPU10k[len(res.Raw.PeerCPU10k)-1])
		}

		var s1, sN pair[sseResult]
		if want("sse") {
			for _, run := range []struct {
				p *pair[sseResult]
				n int
			}{{&s1, 1}, {&sN, c.sseStreams}} {
				if run.p.Direct, err = runSSE(ctx, A, run.n, c.sseChunks, 5*time.Millisecond, 100); err != nil {
					return err
				}
				if run.p.Proxy, err = runSSE(ctx, B, run.n, c.sseChunks, 5*time.Millisecond, 100); err != nil {
					return err
				}
				if run.p.Peer, err = runSSE(ctx, C, run.n, c.sseChunks, 5*time.Millisecond, 100); err != nil {
					return err
				}
			}
			res.Raw.SSE1 = append(res.Raw.SSE1, s1)
			res.Raw.SSEMany = append(res.Raw.SSEMany, sN)
			progress("  SSE %d streams (direct / proxy / peer): first chunk p50 %.2f / %.2f / %.2f ms, chunk delay p50 %.2f / %.2f / %.2f, p99 %.2f / %.2f / %.2f ms", c.sseStreams,
				sN.Direct.FirstChunkP50, sN.Proxy.FirstChunkP50, sN.Peer.FirstChunkP50, sN.Direct.ChunkDelayP50, sN.Proxy.ChunkDelayP50, sN.Peer.ChunkDelayP50,
				sN.Direct.ChunkDelayP99, sN.Proxy.ChunkDelayP99, sN.Peer.ChunkDelayP99)
		}

		var u pair[float64]
		if want("upload") {
			if u.Direct, err = runUpload(A, body, c.uploads); err != nil {
				return err
			}
			if u.Proxy, err = runUpload(B, body, c.uploads); err != nil {
				return err
			}
			if u.Peer, err = runUpload(C, body, c.uploads); err != nil {
				return err
			}
			res.Raw.Upload = append(res.Raw.Upload, u)
			progress("  10 MiB upload: %.0f vs %.0f MB/s", u.Direct, u.Proxy)
		}
	}

	// Memory with many streams open at once.
	hctx, cancel := context.WithCancel(ctx)
	wait, err := holdStreams(hctx, B, c.holdStreams)
	if err != nil {
		cancel()
		return fmt.Errorf("hold %d streams: %w", c.holdStreams, err)
	}
	time.Sleep(time.Second)
	ps, err := readProc(pid)
	if c.profileDir != "" {
		px.Process.Signal(syscall.SIGUSR1) // bench proxy writes heap-open-streams.prof
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	wait()
	if err != nil {
		return err
	}
	res.HoldStreams, res.RSSHoldMiB = c.holdStreams, mib(ps.RSS)
	time.Sleep(500 * time.Millisecond)
	if ps, err = readProc(pid); err != nil {
		return err
	}
	res.RSSAfterMiB, res.PeakRSSMiB = mib(ps.RSS), mib(ps.HWM)
	// The same for the peer.
	hctx, cancel = context.WithCancel(ctx)
	if wait, err = holdStreams(hctx, C, c.holdStreams); err != nil {
		cancel()
		return fmt.Errorf("hold %d streams through the peer: %w", c.holdStreams, err)
	}
	time.Sleep(time.Second)
	ps, err = readProc(pr.Process.Pid)
	cancel()
	wait()
	if err != nil {
		return err
	}
	res.PeerRSSHold, res.PeerPeakRSS = mib(ps.RSS), mib(ps.HWM)
	progress("  %d open streams: proxy RSS %.1f MiB (peak %.1f MiB)", c.holdStreams, res.RSSHoldMiB, res.PeakRSSMiB)

	if *skipAB || *only != "" {
		return nil
	}
	// Whole-process wall times of detect and start.
	if res.Raw.DetectMS, err = timeDetect(c); err != nil {
		return err
	}
	if res.Raw.StartReadyMS, err = timeStart(c); err != nil {
		return err
	}

	// Medians.
	res.Models1 = medWrk(res.Raw.Models1)
	res.Models64 = medWrk(res.Raw.Models64)
	res.SSE1 = medSSE(res.Raw.SSE1)
	res.SSEMany = medSSE(res.Raw.SSEMany)
	res.UploadMBps = pair[float64]{
		Direct: med(res.Raw.Upload, func(p pair[float64]) float64 { return p.Direct }),
		Proxy:  med(res.Raw.Upload, func(p pair[float64]) float64 { return p.Proxy }),
		Peer:   med(res.Raw.Upload, func(p pair[float64]) float64 { return p.Peer }),
	}
	res.CPUPer10k = pct(append([]float64(nil), res.Raw.CPUPer10k...), 50)
	res.PeerCPU10k = pct(append([]float64(nil), res.Raw.PeerCPU10k...), 50)
	res.DetectMS = pct(append([]float64(nil), res.Raw.DetectMS...), 50)
	res.StartReadyMS = pct(append([]float64(nil), res.Raw.StartReadyMS...), 50)
	res.LoadAvgEnd = loadavg()

	if err := stopChild(px); err != nil {
		return fmt.Errorf("the proxy did not stop cleanly: %w (see %s)", err, filepath.Join(c.workdir, "proxy.err"))
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(c.out, append(out, '\n'), 0o644); err != nil {
		return err
	}
	printTable(os.Stdout, &res, c)
	return nil
}

func med[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return pct(v, 50)
}

func medWrk(xs []pair[wrkResult]) pair[wrkResult] {
	one := func(side func(pair[wrkResult]) wrkResult) wrkResult {
		g := func(f func(wrkResult) float64) float64 {
			return med(xs, func(p pair[wrkResult]) float64 { return f(side(p)) })
		}
		return wrkResult{
			Requests: int64(g(func(r wrkResult) float64 { return float64(r.Requests) })),
			Seconds:  g(func(r wrkResult) float64 { return r.Seconds }),
			RPS:      g(func(r wrkResult) float64 { return r.RPS }),
			P50MS:    g(func(r wrkResult) float64 { return r.P50MS }),
			P99MS:    g(func(r wrkResult) float64 { return r.P99MS }),
			Timeouts: int64(g(func(r wrkResult) float64 { return float64(r.Timeouts) })),
		}
	}
	return pair[wrkResult]{
		Direct: one(func(p pair[wrkResult]) wrkResult { return p.Direct }),
		Proxy:  one(func(p pair[wrkResult]) wrkResult { return p.Proxy }),
		Peer:   one(func(p pair[wrkResult]) wrkResult { return p.Peer }),
	}
}

func medSSE(xs []pair[sseResult]) pair[sseResult] {
	one := func(side func(pair[sseResult]) sseResult) sseResult {
		g := func(f func(sseResult) float64) float64 {
			return med(xs, func(p pair[sseResult]) float64 { return f(side(p)) })
		}
		return sseResult{
			Streams:        side(xs[0]).Streams,
			Chunks:         int64(g(func(r sseResult) float64 { return float64(r.Chunks) })),
			FirstChunkP50:  g(func(r sseResult) float64 { return r.FirstChunkP50 }),
			FirstChunkP99:  g(func(r sseResult) float64 { return r.FirstChunkP99 }),
			ChunkDelayP50:  g(func(r sseResult) float64 { return r.ChunkDelayP50 }),
			ChunkDelayP99:  g(func(r sseResult) float64 { return r.ChunkDelayP99 }),
			Coalesced:      int64(g(func(r sseResult) float64 { return float64(r.Coalesced) })),
			CoalescedShare: g(func(r sseResult) float64 { return r.CoalescedShare }),
		}
	}
	return pair[sseResult]{
		Direct: one(func(p pair[sseResult]) sseResult { return p.Direct }),
		Proxy:  one(func(p pair[sseResult]) sseResult { return p.Proxy }),
		Peer:   one(func(p pair[sseResult]) sseResult { return p.Peer }),
	}
}

// startChild runs path with args and env (plus PATH and HOME only), stderr to a file, and waits
// for its first stdout line (its ready line).
func startChild(path string, args, env []string, errFile string) (*exec.Cmd, []byte, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	ef, err := os.Create(errFile)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = ef
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	lines := make(chan []byte, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadBytes('\n')
		lines <- line
		io.Copy(io.Discard, br)
	}()
	select {
	case line := <-lines:
		if len(line) == 0 {
			cmd.Wait()
			tail, _ := os.ReadFile(errFile)
			return nil, nil, fmt.Errorf("exited before it was ready: %s", tail)
		}
		return cmd, line, nil
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		return nil, nil, errors.New("not ready after 20 s")
	}
}

// stopChild sends SIGTERM and waits; a second call is a no-op.
func stopChild(cmd *exec.Cmd) error {
	if cmd == nil || cmd.ProcessState != nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		return errors.New("still running 15 s after SIGTERM")
	}
}

// stepEnv is a GitHub Actions step's environment for detect and start, with files in dir.
func stepEnv(dir string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"GITHUB_ACTIONS=true", "GITHUB_SERVER_URL=https://acme.ghe.com", "GITHUB_API_URL=https://api.acme.ghe.com",
		"GITHUB_OUTPUT=" + filepath.Join(dir, "output"), "GITHUB_ENV=" + filepath.Join(dir, "env"),
		"GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary"), "RUNNER_TEMP=" + dir,
		"INPUT_GITHUB_TOKEN=ghs_" + randomAlnum(36)}
}

func timeDetect(c config) ([]float64, error) {
	var out []float64
	for i := range c.detectRuns {
		dir := filepath.Join(c.workdir, fmt.Sprintf("detect-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		cmd := exec.Command(c.binary, "detect")
		cmd.Env = stepEnv(dir)
		t0 := time.Now()
		msg, err := cmd.CombinedOutput()
		el := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("detect: %v: %s", err, msg)
		}
		out = append(out, ms(el))
	}
	return out, nil
}

// timeStart times `start` from exec to its exit (it exits once the proxy answers its health
// check), then stops that proxy.
func timeStart(c config) ([]float64, error) {
	var out []float64
	for i := range c.startRuns {
		dir := filepath.Join(c.workdir, fmt.Sprintf("start-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		cmd := exec.Command(c.binary, "start", "--state-dir", dir)
		cmd.Env = stepEnv(dir)
		t0 := time.Now()
		msg, err := cmd.CombinedOutput()
		el := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("start: %v: %s", err, msg)
		}
		var st struct {
			PID int `json:"pid"`
		}
		raw, err := os.ReadFile(filepath.Join(dir, "proxy.json"))
		if err == nil {
			err = json.Unmarshal(raw, &st)
		}
		if err != nil || st.PID <= 0 {
			return nil, fmt.Errorf("start left no usable state file in %s: %v", dir, err)
		}
		syscall.Kill(st.PID, syscall.SIGTERM)
		for range 500 {
			if ps, err := readProcState(st.PID); err != nil || ps == 'Z' {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		out = append(out, ms(el))
	}
	return out, nil
}

func readProcState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, errors.New("short stat")
	}
	return s[i+2], nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func printTable(w io.Writer, r *results, c config) {
	fmt.Fprintf(w, "\ncopilot-route benchmark (%s, %d CPUs, load %s → %s, medians of %d%s%s)\n\n", r.GoVersion, r.CPUs,
		r.LoadAvgStart, r.LoadAvgEnd, r.Reps, map[bool]string{true: ", QUICK: small workloads, figures indicative only"}[r.Quick],
		map[bool]string{true: ", proxy GOVERNED: model policy and every budget set"}[r.Governed])
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tdirect (A)\tcopilot-route (B)\tB−A or B÷A\tplain ReverseProxy (C)\tC−A or C÷A\ttarget")
	row := func(name, a, b, d, cc, cd, target string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, a, b, d, cc, cd, target)
	}
	f2 := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	sf := func(v float64) string { return fmt.Sprintf("%+.3f", v) }
	ratio := func(a, b float64) string { return fmt.Sprintf("%.2f×", b/a) }
	m1, m64 := r.Models1, r.Models64
	row("GET /models, 1 client: p50 ms", f2(m1.Direct.P50MS), f2(m1.Proxy.P50MS), sf(m1.Proxy.P50MS-m1.Direct.P50MS), f2(m1.Peer.P50MS), sf(m1.Peer.P50MS-m1.Direct.P50MS), "≤ +0.15")
	row("GET /models, 1 client: p99 ms", f2(m1.Direct.P99MS), f2(m1.Proxy.P99MS), sf(m1.Proxy.P99MS-m1.Direct.P99MS), f2(m1.Peer.P99MS), sf(m1.Peer.P99MS-m1.Direct.P99MS), "≤ +0.8")
	row("GET /models, 1 client: req/s", f0(m1.Direct.RPS), f0(m1.Proxy.RPS), ratio(m1.Direct.RPS, m1.Proxy.RPS), f0(m1.Peer.RPS), ratio(m1.Direct.RPS, m1.Peer.RPS), "")
	row("GET /models, 64 clients: req/s", f0(m64.Direct.RPS), f0(m64.Proxy.RPS), ratio(m64.Direct.RPS, m64.Proxy.RPS), f0(m64.Peer.RPS), ratio(m64.Direct.RPS, m64.Peer.RPS), "≥ 0.35×")
	row("GET /models, 64 clients: p50 / p99 ms", f2(m64.Direct.P50MS)+" / "+f2(m64.Direct.P99MS), f2(m64.Proxy.P50MS)+" / "+f2(m64.Proxy.P99MS), "", f2(m64.Peer.P50MS)+" / "+f2(m64.Peer.P99MS), "", "")
	for _, s := range []struct {
		n string
		p pair[sseResult]
	}{{"1 stream", r.SSE1}, {fmt.Sprintf("%d streams", r.SSEMany.Direct.Streams), r.SSEMany}} {
		many := s.n != "1 stream"
		row(fmt.Sprintf("SSE %d×100 B/5 ms, %s: first chunk p50 ms", c.sseChunks, s.n), f2(s.p.Direct.FirstChunkP50), f2(s.p.Proxy.FirstChunkP50), sf(s.p.Proxy.FirstChunkP50-s.p.Direct.FirstChunkP50),
			f2(s.p.Peer.FirstChunkP50), sf(s.p.Peer.FirstChunkP50-s.p.Direct.FirstChunkP50), map[bool]string{true: "≤ 8 (256 streams)"}[many])
		row(fmt.Sprintf("SSE, %s: per-chunk delay p50 / p99 ms", s.n), f2(s.p.Direct.ChunkDelayP50)+" / "+f2(s.p.Direct.ChunkDelayP99), f2(s.p.Proxy.ChunkDelayP50)+" / "+f2(s.p.Proxy.ChunkDelayP99), sf(s.p.Proxy.ChunkDelayP99-s.p.Direct.ChunkDelayP99)+" (p99)",
			f2(s.p.Peer.ChunkDelayP50)+" / "+f2(s.p.Peer.ChunkDelayP99), sf(s.p.Peer.ChunkDelayP99-s.p.Direct.ChunkDelayP99)+" (p99)", map[bool]string{true: "added p99 ≤ 2"}[many])
		row(fmt.Sprintf("SSE, %s: coalesced chunks", s.n), fmt.Sprintf("%d of %d", s.p.Direct.Coalesced, s.p.Direct.Chunks), fmt.Sprintf("%d of %d", s.p.Proxy.Coalesced, s.p.Proxy.Chunks), "",
			fmt.Sprintf("%d of %d", s.p.Peer.Coalesced, s.p.Peer.Chunks), "", map[bool]string{true: "0 at 1 stream"}[!many])
	}
	u := r.UploadMBps
	row("10 MiB upload: MB/s", f0(u.Direct), f0(u.Proxy), ratio(u.Direct, u.Proxy), f0(u.Peer), ratio(u.Direct, u.Peer), "≥ 0.5×")
	row("CPU s per 10k requests (64 clients)", "", f2(r.CPUPer10k), "", f2(r.PeerCPU10k), "", "≤ 0.6")
	row("RSS idle MiB", "", fmt.Sprintf("%.1f", r.RSSIdleMiB), "", "", "", "≤ 20")
	row(fmt.Sprintf("RSS, %d open streams MiB", r.HoldStreams), "", fmt.Sprintf("%.1f", r.RSSHoldMiB), "", fmt.Sprintf("%.1f", r.PeerRSSHold), "", "≤ 64 (1,000)")
	row("peak RSS (VmHWM) MiB", "", fmt.Sprintf("%.1f", r.PeakRSSMiB), "", fmt.Sprintf("%.1f", r.PeerPeakRSS), "", "")
	row("detect, whole process ms", "", f2(r.DetectMS), "", "", "", "≤ 20")
	row("start → ready, whole process ms", "", f2(r.StartReadyMS), "", "", "", "≤ 250")
	tw.Flush()
	for _, p := range []pair[wrkResult]{m1, m64} {
		if p.Direct.Timeouts+p.Proxy.Timeouts+p.Peer.Timeouts > 0 {
			fmt.Fprintf(w, "\nwarning: requests over wrk's 10 s timeout (median of runs): direct %d, proxy %d, peer %d — the machine was overloaded\n", p.Direct.Timeouts, p.Proxy.Timeouts, p.Peer.Timeouts)
		}
	}
	fmt.Fprintf(w, "\nresults: %s\n", c.out)
}
