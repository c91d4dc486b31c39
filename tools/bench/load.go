package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// target is one side of the comparison: A (direct TLS to the upstream) or B (plain HTTP to the
// proxy with the client token).
type target struct {
	name   string // "direct" or "proxy"
	base   string // https://127.0.0.1:PORT or http://127.0.0.1:PORT
	auth   string // Authorization header value
	client *http.Client
}

// newClient is an HTTP/1.1 keep-alive client, as an agent's is (the Copilot CLI's undici speaks
// HTTP/1.1), with room for conns idle connections.
func newClient(roots *x509.CertPool, conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}}
}

// wrkResult is what one wrk run reports.
type wrkResult struct {
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	Timeouts int64   `json:"timeouts,omitempty"` // requests over wrk's 10 s timeout (a loaded machine)
}

var (
	reReqs   = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m),`)
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	rePct    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:.*`)
	reSocket = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func toMS(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return f / 1000
	case "s":
		return f * 1000
	case "m":
		return f * 60000
	}
	return f
}

// runWrk runs wrk against t's /models with conns connections for d.
func runWrk(wrk string, t target, conns int, d time.Duration) (wrkResult, error) {
	threads := min(conns, 2)
	cmd := exec.Command(wrk, "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns),
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "--timeout", "10s", "--latency", "-H", "Authorization: "+t.auth, t.base+"/models")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	s := string(out)
	if m := reNon2xx.FindString(s); m != "" {
		return wrkResult{}, fmt.Errorf("wrk against %s: %s", t.name, m)
	}
	var r wrkResult
	// Connection errors are failures; timeouts are what a machine shared with other work does
	// to a fixed-time run, so they are counted and shown, not fatal.
	if m := reSocket.FindStringSubmatch(s); m != nil {
		if m[1] != "0" || m[2] != "0" || m[3] != "0" {
			return r, fmt.Errorf("wrk against %s: %s", t.name, m[0])
		}
		r.Timeouts, _ = strconv.ParseInt(m[4], 10, 64)
	}
	m := reReqs.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("wrk output not understood: %s", s)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Seconds = toMS(m[2], m[3]) / 1000
	if m := reRPS.FindStringSubmatch(s); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range rePct.FindAllStringSubmatch(s, -1) {
		if m[1] == "50" {
			r.P50MS = toMS(m[2], m[3])
		} else {
			r.P99MS = toMS(m[2], m[3])
		}
	}
	return r, nil
}

// sseResult is one run of N concurrent streams.
type sseResult struct {
	Streams        int     `json:"streams"`
	Chunks         int64   `json:"chunks"`
	FirstChunkP50  float64 `json:"first_chunk_p50_ms"`
	FirstChunkP99  float64 `json:"first_chunk_p99_ms"`
	ChunkDelayP50  float64 `json:"chunk_delay_p50_ms"`
	ChunkDelayP99  float64 `json:"chunk_delay_p99_ms"`
	Coalesced      int64   `json:"coalesced_chunks"`
	CoalescedShare float64 `json:"coalesced_share"`
}

// warm opens n keep-alive connections (n concurrent small requests), so that measured requests
// reuse them instead of timing TCP and TLS handshakes. With stream set the requests are
// one-chunk streams, which also warm the proxy's connections for streamed routes.
func warm(t target, n int, stream bool) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, t.base+"/models", nil)
			if stream {
				req, _ = http.NewRequest(http.MethodPost, t.base+"/chat/completions?chunks=1", strings.NewReader(benchStreamBody))
			}
			req.Header.Set("Authorization", t.auth)
			resp, err := t.client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// runSSE opens n streams at once, each of chunks chunks of size bytes every interval, and
// measures first chunk (request sent → first event read), per-chunk delay (event read − the time
// the upstream wrote into it) and coalescing (events read by the same Read as the one before).
func runSSE(ctx context.Context, t target, n, chunks int, interval time.Duration, size int) (sseResult, error) {
	if err := warm(t, n, true); err != nil {
		return sseResult{}, fmt.Errorf("warm-up %s: %w", t.name, err)
	}
	type streamOut struct {
		first     time.Duration
		delays    []time.Duration
		coalesced int64
		err       error
	}
	outs := make([]streamOut, n)
	url := fmt.Sprintf("%s/chat/completions?chunks=%d&interval=%s&size=%d", t.base, chunks, interval, size)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func(o *streamOut) {
			defer wg.Done()
			o.delays = make([]time.Duration, 0, chunks)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"model":"model-00","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", t.auth)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/event-stream")
			<-startGate
			t0 := time.Now()
			resp, err := t.client.Do(req)
			if err != nil {
				o.err = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				o.err = fmt.Errorf("status %s", resp.Status)
				return
			}
			buf := make([]byte, 32<<10)
			var pending []byte
			got := 0
			for {
				k, err := resp.Body.Read(buf)
				now := time.Now()
				if k > 0 {
					pending = append(pending, buf[:k]...)
					inRead := 0
					for {
						i := bytes.Index(pending, []byte("\n\n"))
						if i < 0 {
							break
						}
						ev := pending[:i]
						pending = pending[i+2:]
						j := bytes.Index(ev, []byte(`"t":`))
						if j < 0 {
							continue // [DONE]
						}
						sent, _ := strconv.ParseInt(string(ev[j+4:j+4+bytes.IndexByte(ev[j+4:], ',')]), 10, 64)
						if got == 0 {
							o.first = now.Sub(t0)
						}
						o.delays = append(o.delays, now.Sub(time.Unix(0, sent)))
						got++
						inRead++
					}
					if inRead > 1 {
						o.coalesced += int64(inRead - 1)
					}
					pending = slices.Clip(pending)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					o.err = err
					return
				}
			}
			if got != chunks {
				o.err = fmt.Errorf("got %d chunks of %d", got, chunks)
			}
		}(&outs[i])
	}
	close(startGate)
	wg.Wait()
	var firsts, delays []float64
	var r sseResult
	r.Streams = n
	for _, o := range outs {
		if o.err != nil {
			return r, fmt.Errorf("stream via %s: %w", t.name, o.err)
		}
		firsts = append(firsts, ms(o.first))
		for _, d := range o.delays {
			delays = append(delays, ms(d))
		}
		r.Coalesced += o.coalesced
	}
	r.Chunks = int64(len(delays))
	r.FirstChunkP50, r.FirstChunkP99 = pct(firsts, 50), pct(firsts, 99)
	r.ChunkDelayP50, r.ChunkDelayP99 = pct(delays, 50), pct(delays, 99)
	if r.Chunks > 0 {
		r.CoalescedShare = float64(r.Coalesced) / float64(r.Chunks)
	}
	return r, nil
}

// holdStreams opens n streams that send a chunk every 500 ms and returns once each has
// delivered its first chunk; cancel ctx to end them.
func holdStreams(ctx context.Context, t target, n int) (wait func(), err error) {
	url := t.base + "/chat/completions?chunks=1000&interval=500ms&size=100"
	var wg sync.WaitGroup
	ready := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(benchStreamBody))
			req.Header.Set("Authorization", t.auth)
			resp, err := t.client.Do(req)
			if err != nil {
				ready <- err
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err != nil {
				ready <- err
				return
			}
			ready <- nil
			io.Copy(io.Discard, br)
		}()
	}
	for range n {
		if e := <-ready; e != nil && err == nil {
			err = e
		}
	}
	return wg.Wait, err
}

// benchStreamBody names a model of the upstream's list, so that a proxy with a model policy
// (-governed) forwards it.
const benchStreamBody = `{"model":"model-00","stream":true}`

// uploadBody is a JSON prompt of about n bytes naming a model: what a proxy with a model policy
// must read whole before forwarding, and what any proxy streams.
func uploadBody(n int) []byte {
	raw := make([]byte, n*3/4)
	rand.Read(raw)
	b := []byte(`{"model":"model-00","messages":[{"role":"user","content":"`)
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, `"}]}`...)
}

// runUpload posts body count times in a row to /chat/completions (the route a large prompt
// takes through the proxy) and returns the median MB/s (10^6 bytes).
func runUpload(t target, body []byte, count int) (float64, error) {
	var rates []float64
	for range count {
		req, _ := http.NewRequest(http.MethodPost, t.base+"/chat/completions?upload=1", bytes.NewReader(body))
		req.Header.Set("Authorization", t.auth)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := t.client.Do(req)
		if err != nil {
			return 0, err
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		el := time.Since(t0)
		if resp.StatusCode != http.StatusOK || string(reply) != fmt.Sprintf(`{"bytes":%d}`, len(body)) {
			return 0, fmt.Errorf("upload via %s: %s %s", t.name, resp.Status, reply)
		}
		rates = append(rates, float64(len(body))/1e6/el.Seconds())
	}
	return pct(rates, 50), nil
}

// procStat reads a process's CPU time (user+system) and memory from /proc.
type procStat struct {
	CPU   time.Duration
	RSS   int64 // bytes, VmRSS
	HWM   int64 // bytes, VmHWM (peak RSS)
	Alive bool
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return ps, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps.CPU = time.Duration(ut+st) * (time.Second / clockTicks)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			ps.RSS = kb << 10
		case "VmHWM":
			ps.HWM = kb << 10
		}
	}
	ps.Alive = true
	return ps, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports for this.
const clockTicks = 100

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th percentile (nearest rank) of xs; xs is sorted in place.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(p/100*float64(len(xs))+0.999999) - 1
	return xs[max(0, min(i, len(xs)-1))]
}
