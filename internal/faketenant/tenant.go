// Package faketenant is a simulated GitHub + Copilot tenant (a GHE.com tenant such as acme.ghe.com)
// served over real TLS on loopback. Tests, the end-to-end scripts and the demo point clients and the
// proxy at it instead of the real service: it answers the REST routes (/meta, /copilot_internal/*)
// and the Copilot API routes (/models, /chat/completions, /responses, /v1/messages, ...) on one
// listener, records every request, and can be switched at runtime into the failure modes the proxy
// must survive (forced statuses, slow first bytes, slow or endless streams, connection resets).
package faketenant

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure a tenant at Start.
type Options struct {
	// Host is the tenant host it poses as; default "acme.ghe.com". Its certificate covers Host,
	// *.Host, localhost, 127.0.0.1 and ::1, signed by a fresh in-memory CA made at Start.
	Host string
	// Token is the real GitHub token it accepts; "" accepts any non-empty token.
	Token string
	// Addr is the listen address; default "127.0.0.1:0".
	Addr string
	// RequestLog, when set, gets one JSON line per request (see LogLine): header names, the
	// credential's kind and SHA-256, never a header value.
	RequestLog io.Writer
}

// Request is one request as the tenant received it.
type Request struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	BodyBytes                    int64
	At                           time.Time

	// Proto is "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// Auth says which credential the request carried: "real" (Options.Token, or any token when
	// Options.Token is ""), "copilot" (a token this tenant issued through the exchange), "wrong"
	// (some other token), "none" (no Authorization header).
	Auth string
	// AuthScheme is the Authorization scheme as sent ("Bearer", "token", ... or "").
	AuthScheme string
	// AuthTokenSHA256 is the hex SHA-256 of the credential, so a log can show which token was
	// used without holding it.
	AuthTokenSHA256 string
	// Stream is true when the reply was a server-sent-event stream.
	Stream bool
	// Model is the "model" field of a JSON request body, if any.
	Model string
	// Body is the request body as received (up to 32 MiB).
	Body []byte
	// RemoteIP is the client's address, so a test can tell who reached the tenant (the proxy, or
	// a sandbox's egress proxy).
	RemoteIP string
}

// Behavior is how the tenant answers; change it at runtime with Tenant.Set.
type Behavior struct {
	UserStatus       int            // /copilot_internal/user: 0 → 200 with plan + endpoints {api, telemetry, proxy, origin-tracker}
	AdvertisedAPI    string         // endpoints.api in the user and exchange replies; default "https://copilot-api."+Host
	ExchangeStatus   int            // /copilot_internal/v2/token: 0 → 200 {token, expires_at, refresh_in, endpoints}
	ExchangeMessage  string         // message for a non-200 exchange, e.g. "Resource not accessible by personal access token"
	ModelsStatus     int            // /models: 0 → 200
	RequireScheme    string         // "" accepts Bearer and token; "token": Bearer → 400 {"message":"Authorization header is badly formatted"}; "bearer" the reverse
	Status           map[string]int // path → forced status (JSON error body) for any route
	RetryAfter       string         // sent with forced 429s
	FirstByteDelay   time.Duration  // before the response headers of any Copilot API route
	StreamChunks     int            // SSE chunks per streamed reply (0 → 8)
	ChunkInterval    time.Duration  // between chunks
	ChunkBytes       int            // pad each chunk's event to about this many bytes (0 → natural size); the text is unchanged
	ResetAfterChunks int            // >0: abort the TCP connection (RST) after N chunks
	NeverEnd         bool           // stream chunks until the client goes away
	ReplyText        string         // the assistant's text; default "Hello from the simulated acme tenant."

	// Gate, when set, makes a stream wait for a value (or a close) on it before writing each
	// chunk after the first, so a test can look at chunk N before chunk N+1 exists, untimed.
	Gate <-chan struct{}
}

// DefaultReplyText is the assistant's text when Behavior.ReplyText is empty.
const DefaultReplyText = "Hello from the simulated acme tenant."

// Tenant is a running simulated tenant.
type Tenant struct {
	host  string
	token string
	log   io.Writer
	srv   *httptest.Server
	ca    *x509.Certificate
	caPEM []byte
	pool  *x509.CertPool

	// closing is closed by Close so endless or slow streams end and Close does not wait on them.
	closing   chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	behavior Behavior
	requests []Request
	issued   map[string]bool // Copilot tokens handed out by the exchange
	seq      int             // for ids in replies
	open     int             // streams being written now
	idle     chan struct{}   // closed and replaced whenever open drops to 0
	canceled int             // streams that ended because the client went away
}

// Start creates the CA and the server certificate and starts serving TLS.
func Start(opts Options) (*Tenant, error) {
	if opts.Host == "" {
		opts.Host = "acme.ghe.com"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	opts.Host = strings.ToLower(strings.TrimSuffix(opts.Host, "."))
	caCert, caPEM, leaf, err := makeCerts(opts.Host, opts.Addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (pick a free loopback address, e.g. 127.0.0.1:0)", opts.Addr, err)
	}
	t := &Tenant{
		host:    opts.Host,
		token:   opts.Token,
		log:     opts.RequestLog,
		ca:      caCert,
		caPEM:   caPEM,
		pool:    x509.NewCertPool(),
		closing: make(chan struct{}),
		issued:  map[string]bool{},
		idle:    make(chan struct{}),
	}
	t.pool.AddCert(caCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(t.serveHTTP))
	srv.Listener.Close()
	srv.Listener = ln
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{leaf},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	// Handshake failures from clients that do not trust the CA are expected in tests; keep them
	// out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.srv = srv
	return t, nil
}

// makeCerts makes a CA and a leaf for host, *.host, localhost, the loopback addresses and the
// listen IP (when it is another address).
func makeCerts(host, addr string) (*x509.Certificate, []byte, tls.Certificate, error) {
	fail := func(err error) (*x509.Certificate, []byte, tls.Certificate, error) {
		return nil, nil, tls.Certificate{}, fmt.Errorf("make the fake tenant's certificates: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "copilot-route fake tenant CA " + host, Organization: []string{"copilot-route tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fail(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.Equal(ips[0]) && !ip.Equal(ips[1]) {
			ips = append(ips, ip)
		}
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host, "*." + host, "localhost"},
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	leaf := tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
	return caCert, caPEM, leaf, nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// URL is "https://127.0.0.1:PORT" (no trailing slash).
func (t *Tenant) URL() string { return t.srv.URL }

// Host is the tenant host it poses as (e.g. "acme.ghe.com").
func (t *Tenant) Host() string { return t.host }

// CAPEM is the PEM of the CA that signed the server certificate.
func (t *Tenant) CAPEM() []byte { return append([]byte(nil), t.caPEM...) }

// WriteCA writes the CA PEM to path (for --ca-file or NODE_EXTRA_CA_CERTS).
func (t *Tenant) WriteCA(path string) error {
	if err := os.WriteFile(path, t.caPEM, 0o644); err != nil {
		return fmt.Errorf("write the fake tenant's CA to %s: %w", path, err)
	}
	return nil
}

// CertPool holds the tenant's CA.
func (t *Tenant) CertPool() *x509.CertPool { return t.pool.Clone() }

// Client is an HTTP client that trusts the CA (HTTP/2 when the server offers it).
func (t *Tenant) Client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: t.pool.Clone()},
		ForceAttemptHTTP2: true,
	}}
}

// Requests is a copy of every request received, in order.
func (t *Tenant) Requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Request, len(t.requests))
	for i, r := range t.requests {
		r.Header = r.Header.Clone()
		r.Body = append([]byte(nil), r.Body...)
		out[i] = r
	}
	return out
}

// ResetRequests forgets the recorded requests.
func (t *Tenant) ResetRequests() {
	t.mu.Lock()
	t.requests = nil
	t.mu.Unlock()
}

// Set changes the behaviour; f gets the current one to edit.
func (t *Tenant) Set(f func(*Behavior)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.behavior)
	if t.behavior.Status != nil {
		t.behavior.Status = cloneStatus(t.behavior.Status)
	}
}

func cloneStatus(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// OpenStreams is how many streamed replies are being written now.
func (t *Tenant) OpenStreams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}

// CanceledStreams counts streams that ended because the client went away (its request context was
// cancelled) before the tenant finished them. A proxy test uses it to prove that cancelling the
// downstream request cancelled the upstream one.
func (t *Tenant) CanceledStreams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.canceled
}

// WaitNoStreams blocks until no stream is being written, or ctx ends.
func (t *Tenant) WaitNoStreams(ctx context.Context) error {
	for {
		t.mu.Lock()
		open, idle := t.open, t.idle
		t.mu.Unlock()
		if open == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("the fake tenant still has %d open streams: %w", open, ctx.Err())
		}
	}
}

func (t *Tenant) streamStarted() {
	t.mu.Lock()
	t.open++
	t.mu.Unlock()
}

func (t *Tenant) streamEnded(canceled bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open--
	if canceled {
		t.canceled++
	}
	if t.open == 0 {
		close(t.idle)
		t.idle = make(chan struct{})
	}
}

// Close stops the server; streams still open end at once.
func (t *Tenant) Close() {
	t.closeOnce.Do(func() {
		close(t.closing)
		t.srv.CloseClientConnections()
		t.srv.Close()
	})
}

// TokenSHA256 is the hex SHA-256 of a token, as recorded in Request.AuthTokenSHA256.
func TokenSHA256(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// LogLine is the JSON form of a Request for logs: header names only, never their values, so it
// can be written to a file that a test later searches for leaked secrets.
type LogLine struct {
	At              time.Time `json:"at"`
	Method          string    `json:"method"`
	Path            string    `json:"path"`
	Query           bool      `json:"has_query,omitempty"`
	Host            string    `json:"host"`
	Proto           string    `json:"proto"`
	HeaderNames     []string  `json:"header_names"`
	Auth            string    `json:"auth"`
	AuthOK          bool      `json:"auth_ok"`
	AuthScheme      string    `json:"auth_scheme,omitempty"`
	AuthTokenSHA256 string    `json:"auth_token_sha256,omitempty"`
	BodyBytes       int64     `json:"body_bytes"`
	Stream          bool      `json:"stream,omitempty"`
	Model           string    `json:"model,omitempty"`
	UserAgent       string    `json:"user_agent,omitempty"`
	IntegrationID   string    `json:"copilot_integration_id,omitempty"`
	RemoteIP        string    `json:"remote_ip,omitempty"`
}

// LogLine is r in its log form.
func (r Request) LogLine() LogLine {
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	return LogLine{
		At: r.At.UTC(), Method: r.Method, Path: maskTokens(r.Path), Query: r.RawQuery != "", Host: r.Host, Proto: r.Proto,
		HeaderNames: names, Auth: r.Auth, AuthOK: r.Auth == "real" || r.Auth == "copilot",
		AuthScheme: r.AuthScheme, AuthTokenSHA256: r.AuthTokenSHA256, BodyBytes: r.BodyBytes,
		Stream: r.Stream, Model: r.Model, UserAgent: maskTokens(r.Header.Get("User-Agent")),
		IntegrationID: maskTokens(r.Header.Get("Copilot-Integration-Id")), RemoteIP: r.RemoteIP,
	}
}

// tokenShape matches GitHub token formats, so a client that puts a token where it does not belong
// (a path, a User-Agent) still cannot get it into the log.
var tokenShape = regexp.MustCompile(`(?i)(gh[opsur]_|github_pat_)[A-Za-z0-9_]+`)

func maskTokens(s string) string { return tokenShape.ReplaceAllString(s, "${1}[REDACTED]") }
