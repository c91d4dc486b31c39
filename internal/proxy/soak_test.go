package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// The soak runs only when asked (scripts/soak.sh): -soak=ci is about a minute, -soak=full about
// eleven. Both stay on loopback.
var soakMode = flag.String("soak", "", "run TestSoak: ci (about a minute) or full (10 minutes of mixed traffic)")

type soakPlan struct {
	streams, chunks int           // phase 1
	mixed           time.Duration // phase 2
	rate            int           // requests per second in phase 2
	restartEvery    time.Duration
	sampleEvery     time.Duration
}

func TestSoak(t *testing.T) {
	var plan soakPlan
	switch *soakMode {
	case "":
		t.Skip("the soak runs with -soak=ci or -soak=full (scripts/soak.sh)")
	case "ci":
		plan = soakPlan{streams: 1000, chunks: 500, mixed: 35 * time.Second, rate: 100, restartEvery: 10 * time.Second, sampleEvery: 5 * time.Second}
	case "full":
		plan = soakPlan{streams: 1000, chunks: 500, mixed: 10 * time.Minute, rate: 100, restartEvery: 30 * time.Second, sampleEvery: 30 * time.Second}
	default:
		t.Fatalf("-soak=%q: use ci or full", *soakMode)
	}
	t.Run("streams", func(t *testing.T) { soakStreams(t, plan) })
	if t.Failed() {
		return
	}
	t.Run("mixed", func(t *testing.T) { soakMixed(t, plan) })
}

// soakChunk is chunk i of stream id: deterministic, so the client can check every byte, and
// different in every stream and chunk, so a swapped or repeated chunk cannot pass.
func soakChunk(id, i int) []byte {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%d", id, i)))
	return []byte("data: {\"i\":" + strconv.Itoa(i) + ",\"x\":\"" + hex.EncodeToString(sum[:]) + "\"}\n\n")
}

// soakStreams sends streams concurrent streaming requests of chunks chunks each through the proxy
// to an upstream that records the SHA-256 of every byte it wrote per stream, and compares it with
// the SHA-256 of every byte the client read.
func soakStreams(t *testing.T, plan soakPlan) {
	var sent sync.Map // stream id → hex SHA-256 of what the upstream wrote
	var started sync.WaitGroup
	started.Add(plan.streams)
	release := make(chan struct{})
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.Header.Get("X-Soak-Stream"))
		if err != nil || r.Header.Get("Authorization") != "Bearer "+realToken {
			http.Error(w, "bad soak request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		started.Done()
		<-release // every stream is open at once before any chunk flows
		h := sha256.New()
		for i := 0; i < plan.chunks; i++ {
			c := soakChunk(id, i)
			if _, err := w.Write(c); err != nil {
				return
			}
			h.Write(c)
			if err := rc.Flush(); err != nil {
				return
			}
		}
		sent.Store(id, hex.EncodeToString(h.Sum(nil)))
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = nil
	up.StartTLS()
	defer up.Close()

	h := soakProxy(t, platform.Input{ServerURL: "https://acme.ghe.com", APIURL: up.URL, CopilotAPITarget: up.URL},
		func(c *Config) { c.RootCAs = poolOf(up) })
	tr := &http.Transport{MaxIdleConnsPerHost: plan.streams, DisableCompression: true}
	defer tr.CloseIdleConnections()

	t0 := time.Now()
	var bytesOK, streamsOK atomic.Int64
	errs := make(chan error, plan.streams)
	var wg sync.WaitGroup
	for id := 0; id < plan.streams; id++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			err := func() error {
				req, _ := http.NewRequest(http.MethodPost, h.url+"/chat/completions", strings.NewReader(`{"stream":true}`))
				req.Header.Set("Authorization", h.bearer())
				req.Header.Set("X-Soak-Stream", strconv.Itoa(id))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					return fmt.Errorf("status %d: %s", resp.StatusCode, b)
				}
				got, want := sha256.New(), sha256.New()
				for i := 0; i < plan.chunks; i++ {
					want.Write(soakChunk(id, i))
				}
				n, err := io.Copy(got, resp.Body)
				if err != nil {
					return fmt.Errorf("after %d bytes: %w", n, err)
				}
				g := hex.EncodeToString(got.Sum(nil))
				s, _ := sent.Load(id)
				if g != s || g != hex.EncodeToString(want.Sum(nil)) {
					return fmt.Errorf("%d bytes with SHA-256 %s; the upstream sent %v", n, g, s)
				}
				bytesOK.Add(n)
				streamsOK.Add(1)
				return nil
			}()
			if err != nil {
				errs <- fmt.Errorf("stream %d: %w", id, err)
			}
		}(id)
	}
	opened := make(chan struct{})
	go func() { started.Wait(); close(opened) }()
	select {
	case <-opened:
		t.Logf("%d streams open at once through the proxy (%d goroutines in the process)", plan.streams, runtime.NumGoroutine())
	case err := <-errs:
		close(release)
		t.Fatalf("before all streams opened: %v", err)
	case <-time.After(2 * time.Minute):
		close(release)
		t.Fatal("the streams did not all open within 2 minutes")
	}
	close(release)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	el := time.Since(t0)
	fmt.Printf("SOAK streams: %d/%d streams of %d chunks, %d bytes verified byte for byte (SHA-256 per stream), %d errors, %.1fs, %.1f MB/s\n",
		streamsOK.Load(), plan.streams, plan.chunks, bytesOK.Load(), n, el.Seconds(), float64(bytesOK.Load())/el.Seconds()/1e6)
}

// soakMixed sends mixed traffic at a steady rate while the fake tenant is restarted periodically,
// and samples the error rate, RSS and goroutines.
func soakMixed(t *testing.T, plan soakPlan) {
	// Each restart brings up a new tenant (the fake makes a new CA at each start), so all of them
	// are made up front, their CAs trusted, and the names dial whichever is current.
	n := int(plan.mixed/plan.restartEvery) + 2
	tenants := make([]*faketenant.Tenant, n)
	pool := x509.NewCertPool()
	for i := range tenants {
		ft, err := faketenant.Start(faketenant.Options{Token: realToken})
		if err != nil {
			t.Fatal(err)
		}
		defer ft.Close()
		ft.Set(func(b *faketenant.Behavior) { b.StreamChunks = 20 })
		pool.AppendCertsFromPEM(ft.CAPEM())
		tenants[i] = ft
	}
	var current atomic.Pointer[faketenant.Tenant]
	current.Store(tenants[0])
	var down atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if down.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("the fake tenant is restarting")}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, hostPort(current.Load()))
	}
	h := soakProxy(t, platform.Input{ServerURL: "https://acme.ghe.com"}, func(c *Config) {
		c.RootCAs, c.DialContext = pool, dial
	})

	type shot struct {
		method, path, auth, body string
		want                     int
	}
	stream := func(p string) shot {
		return shot{http.MethodPost, p, h.bearer(), `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}],"input":"hi","max_tokens":5}`, 200}
	}
	mix := []shot{
		{http.MethodGet, "/models", h.bearer(), "", 200},
		stream("/chat/completions"),
		stream("/responses"),
		stream("/v1/messages"),
		{http.MethodPost, "/chat/completions", h.bearer(), `{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}`, 200},
		{http.MethodGet, "/copilot_internal/user", h.bearer(), "", 200},
		{http.MethodPost, "/embeddings", h.bearer(), `{"input":"hi","model":"text-embedding-3-small"}`, 403}, // not a route of the policy
		{http.MethodGet, "/models", "", "", 401},
		{http.MethodGet, "/models", "Bearer " + realToken, "", 401},
		{http.MethodGet, "/%2e%2e/models", h.bearer(), "", 400},
		{http.MethodGet, HealthPath, "", "", 200},
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()

	var total, failed, failedOutside atomic.Int64
	var restartMu sync.Mutex
	var restarts []time.Time // start of each restart gap
	inRestart := func(from, to time.Time) bool {
		restartMu.Lock()
		defer restartMu.Unlock()
		for _, r := range restarts {
			if !to.Before(r) && from.Before(r.Add(2*time.Second)) {
				return true
			}
		}
		return false
	}
	var firstErr sync.Once
	fire := func(s shot) {
		t0 := time.Now()
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var body io.Reader
			if s.body != "" {
				body = strings.NewReader(s.body)
			}
			req, _ := http.NewRequestWithContext(ctx, s.method, h.url+s.path, body)
			if s.auth != "" {
				req.Header.Set("Authorization", s.auth)
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return fmt.Errorf("%s %s: %d, body: %w", s.method, s.path, resp.StatusCode, err)
			}
			if resp.StatusCode != s.want {
				return fmt.Errorf("%s %s: %d, want %d", s.method, s.path, resp.StatusCode, s.want)
			}
			return nil
		}()
		total.Add(1)
		if err != nil {
			failed.Add(1)
			if !inRestart(t0, time.Now()) {
				failedOutside.Add(1)
				firstErr.Do(func() { t.Errorf("error away from any restart: %v", err) })
			}
		}
	}

	type sample struct {
		at               time.Duration
		rssKB, goroutine int
		total, failed    int64
	}
	var samples []sample
	take := func(el time.Duration) {
		// The fake records every request it gets (headers and body); that memory is the test
		// harness's, not the proxy's, and would read as growth.
		for _, ft := range tenants {
			ft.ResetRequests()
		}
		runtime.GC()
		s := sample{at: el, rssKB: rssKB(), goroutine: runtime.NumGoroutine(), total: total.Load(), failed: failed.Load()}
		samples = append(samples, s)
		fmt.Printf("SOAK mixed t=%4.0fs  requests=%7d  errors=%5d  rss=%6.1f MB  goroutines=%5d  restarts=%d\n",
			el.Seconds(), s.total, s.failed, float64(s.rssKB)/1024, s.goroutine, len(restarts))
	}

	start := time.Now()
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(plan.rate))
	defer tick.Stop()
	sampleT := time.NewTicker(plan.sampleEvery)
	defer sampleT.Stop()
	restartT := time.NewTicker(plan.restartEvery)
	defer restartT.Stop()
	next := 1
	take(0)
	for i := 0; time.Since(start) < plan.mixed; {
		select {
		case <-tick.C:
			wg.Add(1)
			s := mix[i%len(mix)]
			i++
			go func() { defer wg.Done(); fire(s) }()
		case <-sampleT.C:
			take(time.Since(start))
		case <-restartT.C:
			if next >= len(tenants) {
				continue
			}
			restartMu.Lock()
			restarts = append(restarts, time.Now())
			restartMu.Unlock()
			down.Store(true)
			old := current.Load()
			old.Close() // open streams are cut, as in a real restart
			time.Sleep(200 * time.Millisecond)
			current.Store(tenants[next])
			next++
			down.Store(false)
		}
	}
	wg.Wait()
	tr.CloseIdleConnections()
	take(time.Since(start))
	tot, fl, out := total.Load(), failed.Load(), failedOutside.Load()
	fmt.Printf("SOAK mixed: %d requests in %.0fs at %d/s, %d restarts of the fake tenant, %d errors (%.3f%%), %d of them away from a restart\n",
		tot, time.Since(start).Seconds(), plan.rate, len(restarts), fl, 100*float64(fl)/float64(max(tot, 1)), out)
	// Flat: after the first interval (pools warmed), the end is not far above it.
	if len(samples) >= 3 {
		base, last := samples[1], samples[len(samples)-1]
		fmt.Printf("SOAK flat: rss %.1f → %.1f MB, goroutines %d → %d (from t=%.0fs to the end)\n",
			float64(base.rssKB)/1024, float64(last.rssKB)/1024, base.goroutine, last.goroutine, base.at.Seconds())
		if last.goroutine > base.goroutine+50 {
			t.Errorf("goroutines grew from %d to %d", base.goroutine, last.goroutine)
		}
		if last.rssKB > base.rssKB*3/2+32*1024 {
			t.Errorf("RSS grew from %d KB to %d KB", base.rssKB, last.rssKB)
		}
	}
	if out > 0 {
		t.Errorf("%d errors away from the restarts", out)
	}
	if plan.restartEvery < plan.mixed && len(restarts) == 0 {
		t.Error("no restart happened")
	}
}

// soakProxy runs a proxy for the soak (no request log: it would grow with the run).
func soakProxy(t *testing.T, in platform.Input, mutate func(*Config)) *harness {
	t.Helper()
	ep, err := platform.Detect(in)
	if err != nil {
		t.Fatal(err)
	}
	client := NewClientToken()
	cfg := Config{Endpoints: ep, ExplicitTarget: in.CopilotAPITarget != "", Token: copilot.NewToken(realToken),
		ClientToken: client, DialContext: loopbackOnly}
	mutate(&cfg)
	h := serveHarness(t, cfg, &syncBuffer{})
	t.Cleanup(func() { _ = h.stop() })
	return h
}

func poolOf(s *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// rssKB is this process's resident set size.
func rssKB() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
