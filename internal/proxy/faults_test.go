package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// fakeDNS is a tiny DNS server on loopback UDP, the only resolver the proxy gets in these tests:
// names in hosts answer with 127.0.0.1 (A) or nothing (other types), every other name NXDOMAIN.
// No query leaves the machine, and queries counts what it was asked.
type fakeDNS struct {
	pc      net.PacketConn
	hosts   map[string]bool
	queries atomic.Int64
}

func startDNS(t *testing.T, hosts ...string) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{pc: pc, hosts: map[string]bool{}}
	for _, h := range hosts {
		d.hosts[strings.ToLower(h)+"."] = true
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := d.answer(buf[:n]); reply != nil {
				_, _ = pc.WriteTo(reply, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return d
}

// answer builds the reply to one query (one question, as Go's resolver sends).
func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	d.queries.Add(1)
	// The question: labels up to the zero byte, then type and class.
	i, name := 12, ""
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		name += strings.ToLower(string(q[i+1:i+1+l])) + "."
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	question := q[12 : i+5]
	out := append([]byte{}, q[:2]...)    // id
	rcode, ancount := byte(3), uint16(0) // NXDOMAIN
	if d.hosts[name] {
		rcode = 0
		if qtype == 1 {
			ancount = 1
		}
	}
	out = append(out, 0x81, 0x80|rcode, 0, 1, byte(ancount>>8), byte(ancount), 0, 0, 0, 0)
	out = append(out, question...)
	if ancount == 1 {
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	}
	return out
}

// dialer resolves through the fake DNS only and dials loopback only.
func (d *fakeDNS) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dd net.Dialer
		return dd.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if ip, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ip.IP.IsLoopback() {
			c.Close()
			return nil, fmt.Errorf("test dialer: %s is not loopback", c.RemoteAddr())
		}
		return c, nil
	}
}

// testCA makes certificates for upstreams that misbehave at the TLS layer.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "faults test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf is a server certificate for names, valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// rawTLSServer accepts TLS connections and hands each, after reading the request head, to
// serve. It returns the port.
func rawTLSServer(t *testing.T, cert tls.Certificate, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// resetConn aborts a TCP connection (RST, not FIN) under a TLS connection.
func resetConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		if raw, ok := tc.NetConn().(*net.TCPConn); ok {
			_ = raw.SetLinger(0)
			raw.Close()
			return
		}
	}
	c.Close()
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestFaultMatrix runs the proxy against every upstream failure of issue 7, each upstream reached
// by name through an injected resolver (no DNS query leaves the machine). For each it checks the
// client's answer, that the proxy still serves a healthy request afterwards, and at the end that
// goroutines and file descriptors are back to their baseline. Not parallel: the baseline is the
// whole process's.
func TestFaultMatrix(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	const api = "copilot-api.acme.ghe.com"
	warm := func(t *testing.T) { // first use of TLS, the netpoller and the resolver allocates for good
		dns := startDNS(t, api)
		ft := startTenant(t, realToken)
		h := setup(t, ft, platform.Input{}, func(c *Config) { c.DialContext = dns.dialer() })
		h.do(t, http.MethodGet, "/models", h.bearer(), "", nil)
	}
	t.Run("warm-up", warm)
	settle()
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	t.Logf("baseline: %d goroutines, %d open fds", baseG, baseFD)

	// ca signs the misbehaving upstreams' certificates and is trusted besides the fake's CA;
	// untrusted is not.
	ca, untrusted := newTestCA(t), newTestCA(t)
	trustCA := func(c *Config) { c.RootCAs.AddCert(ca.cert) }
	now := time.Now()
	type outcome struct {
		status int
		kind   string // the JSON reply's kind, for failures the proxy answers itself
		broken bool   // a 200 whose body must end with an error, not cleanly
	}
	cases := []struct {
		name   string
		target func(t *testing.T, ft *faketenant.Tenant) string // the Copilot API URL, by name
		mutate func(c *Config)
		fake   func(b *faketenant.Behavior)
		path   string
		want   outcome
		after  func(t *testing.T, h *harness, ft *faketenant.Tenant, dns *fakeDNS)
	}{
		{name: "connection refused", target: func(t *testing.T, _ *faketenant.Tenant) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			ln.Close()
			return "https://" + api + ":" + port
		}, want: outcome{status: 502, kind: "refused"}},
		{name: "name does not resolve", target: func(*testing.T, *faketenant.Tenant) string { return "https://nx." + api },
			want: outcome{status: 502, kind: "dns"},
			after: func(t *testing.T, _ *harness, _ *faketenant.Tenant, dns *fakeDNS) {
				if dns.queries.Load() == 0 {
					t.Error("the injected resolver was never asked: the proxy resolved some other way")
				}
			}},
		{name: "TLS: unknown CA", target: func(t *testing.T, _ *faketenant.Tenant) string {
			return "https://" + api + ":" + rawTLSServer(t, untrusted.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), api), func(net.Conn) {})
		}, mutate: trustCA, want: outcome{status: 502, kind: "tls"}},
		{name: "TLS: expired certificate", target: func(t *testing.T, _ *faketenant.Tenant) string {
			return "https://" + api + ":" + rawTLSServer(t, ca.leaf(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), api), func(net.Conn) {})
		}, mutate: trustCA, want: outcome{status: 502, kind: "tls"}},
		{name: "TLS: certificate for another name", target: func(t *testing.T, _ *faketenant.Tenant) string {
			return "https://" + api + ":" + rawTLSServer(t, ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), "other.example"), func(net.Conn) {})
		}, mutate: trustCA, want: outcome{status: 502, kind: "tls"}},
		{name: "timeout before headers", target: fakeByName(api),
			mutate: func(c *Config) { c.ResponseHeaderTimeout = 200 * time.Millisecond },
			fake:   func(b *faketenant.Behavior) { b.FirstByteDelay = time.Minute }, want: outcome{status: 504, kind: "timeout"}},
		{name: "reset after headers", target: func(t *testing.T, _ *faketenant.Tenant) string {
			return "https://" + api + ":" + rawTLSServer(t, ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), api), func(c net.Conn) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 4096\r\n\r\ndata: {\"x\":1}\n\n")
				time.Sleep(50 * time.Millisecond) // let the proxy pass the headers on before the RST
				resetConn(c)
			})
		}, mutate: trustCA, path: "/chat/completions", want: outcome{status: 200, broken: true}},
		{name: "reset mid-stream", target: fakeByName(api),
			fake: func(b *faketenant.Behavior) { b.StreamChunks, b.ResetAfterChunks = 6, 3 },
			path: "/chat/completions", want: outcome{status: 200, broken: true}},
		{name: "5xx", target: fakeByName(api), fake: func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": 503} },
			want: outcome{status: 503}},
		{name: "429 with Retry-After", target: fakeByName(api),
			fake: func(b *faketenant.Behavior) { b.Status = map[string]int{"/models": 429}; b.RetryAfter = "17" },
			want: outcome{status: 429},
			after: func(t *testing.T, h *harness, _ *faketenant.Tenant, _ *fakeDNS) {
				if got := lastHeader.Load(); got == nil || got.Get("Retry-After") != "17" {
					t.Errorf("Retry-After not passed through: %v", got)
				}
			}},
		{name: "endless body, client disconnects", target: fakeByName(api),
			fake: func(b *faketenant.Behavior) { b.NeverEnd, b.ChunkInterval = true, 2*time.Millisecond },
			path: "/chat/completions", want: outcome{status: 200, broken: true},
			after: func(t *testing.T, _ *harness, ft *faketenant.Tenant, _ *fakeDNS) {
				waitFor(t, "the upstream stream cancelled", func() bool { return ft.CanceledStreams() == 1 && ft.OpenStreams() == 0 })
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dns := startDNS(t, api, "api.acme.ghe.com")
			ft := startTenant(t, realToken)
			if tc.fake != nil {
				ft.Set(tc.fake)
			}
			in := platform.Input{ServerURL: "https://acme.ghe.com", APIURL: "https://api.acme.ghe.com:" + portOf(ft),
				CopilotAPITarget: tc.target(t, ft)}
			h := setup(t, ft, in, func(c *Config) {
				c.DialContext = dns.dialer()
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			client := &http.Transport{}
			defer client.CloseIdleConnections()
			path := tc.path
			if path == "" {
				path = "/models"
			}
			status, body, readErr := faultRequest(t, client, h, path, tc.want.broken && tc.name == "endless body, client disconnects")
			if status != tc.want.status {
				t.Fatalf("%s = %d %s, want %d", path, status, body, tc.want.status)
			}
			if tc.want.kind != "" {
				var m map[string]string
				decodeJSON(t, body, &m)
				if m["kind"] != tc.want.kind || m["upstream"] != platform.HostOf(in.CopilotAPITarget) || m["hint"] == "" {
					t.Errorf("reply %s, want kind %s naming the upstream, with a hint", body, tc.want.kind)
				}
			}
			if tc.want.broken && readErr == nil {
				t.Errorf("the broken reply ended cleanly for the client (%d bytes): it would take a partial answer for a whole one", len(body))
			}
			if !tc.want.broken && readErr != nil {
				t.Errorf("reading the reply: %v", readErr)
			}
			if tc.after != nil {
				tc.after(t, h, ft, dns)
			}
			scanForms(t, "the reply", body, realToken, h.client)
			t.Cleanup(func() { scanForms(t, "the proxy log", h.log.Bytes(), realToken, h.client) })
			// Still healthy: health answers and the other upstream serves.
			if s, _, b := h.do(t, http.MethodGet, HealthPath, "", "", nil); s != 200 {
				t.Errorf("health after the fault = %d %s", s, b)
			}
			if s, _, b := h.do(t, http.MethodGet, "/copilot_internal/user", h.bearer(), "", nil); s != 200 {
				t.Errorf("a healthy route after the fault = %d %s", s, b)
			}
		})
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var g, fd int
	for i := 0; i < 200; i++ { // connections close asynchronously; give them up to 10 s
		settle()
		if g, fd = runtime.NumGoroutine(), openFDs(t); g <= baseG && fd <= baseFD {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after %d faults: %d goroutines, %d open fds (baseline %d, %d)", len(cases), g, fd, baseG, baseFD)
	if g > baseG {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after the matrix, baseline %d\n%s", g, baseG, buf[:runtime.Stack(buf, true)])
	}
	if fd > baseFD {
		t.Errorf("open file descriptors: %d after the matrix, baseline %d", fd, baseFD)
	}
}

func settle() {
	runtime.GC()
	runtime.Gosched()
}

func portOf(ft *faketenant.Tenant) string {
	_, port, _ := net.SplitHostPort(hostPort(ft))
	return port
}

// fakeByName is the fake tenant reached by the Copilot API's name.
func fakeByName(name string) func(*testing.T, *faketenant.Tenant) string {
	return func(_ *testing.T, ft *faketenant.Tenant) string { return "https://" + name + ":" + portOf(ft) }
}

// lastHeader is the header of the last reply faultRequest read (TestFaultMatrix is not parallel).
var lastHeader atomic.Pointer[http.Header]

// faultRequest sends one request through the proxy with its own transport. For a streamed path
// it posts a streaming body; hangUp reads a little and then goes away, like an agent killed
// mid-answer. It returns the status, the body read and the error that ended the read.
func faultRequest(t *testing.T, tr *http.Transport, h *harness, path string, hangUp bool) (int, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	method, body := http.MethodGet, io.Reader(nil)
	if path != "/models" {
		method = http.MethodPost
		b, _ := json.Marshal(map[string]any{"model": "gpt-4.1", "stream": true, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequestWithContext(ctx, method, h.url+path, body)
	req.Header.Set("Authorization", h.bearer())
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	hdr := resp.Header.Clone()
	lastHeader.Store(&hdr)
	if hangUp {
		buf := make([]byte, 512)
		_, _ = io.ReadFull(resp.Body, buf)
		cancel()
		_, err := io.ReadAll(resp.Body)
		return resp.StatusCode, buf, err
	}
	b, err := io.ReadAll(resp.Body)
	var hb strings.Builder
	_ = resp.Header.Write(&hb)
	scanSecrets(t, "reply", append([]byte(hb.String()), b...), realToken)
	return resp.StatusCode, b, err
}

// scanForms fails if b holds any secret as is, behind an Authorization scheme, or base64-encoded
// at any byte alignment (the log and replies are also scanned for the plain forms by setup and
// h.do; this adds the encoded ones).
func scanForms(t *testing.T, where string, b []byte, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		forms := []string{s, "Bearer " + s, "token " + s, base64.RawURLEncoding.EncodeToString([]byte(s))}
		for k := 0; k < 3; k++ {
			enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x00", k) + s))
			forms = append(forms, enc[4:len(enc)-4])
		}
		for _, f := range forms {
			if strings.Contains(string(b), f) {
				t.Errorf("%s holds a secret (%.8s…) in some form", where, s)
			}
		}
	}
}
