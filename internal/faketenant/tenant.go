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
	"maps"
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
	// AnyHost makes the tenant present a certificate (signed by its CA) for whatever name a client
	// asks for in SNI, so that with every host name resolving to it (a private /etc/hosts or DNS)
	// it sees, and records, the requests a client sends to any host — github.com's, a GHES
	// server's, a BYOK provider's — not only the tenant's.
	AnyHost bool
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
	// AuthHeader is the header that carried the credential: "Authorization", or an API-key header
	// ("X-Api-Key", "Api-Key") when there was no Authorization; "" when there was none.
	AuthHeader string
	// AuthScheme is the Authorization scheme as sent ("Bearer", "token", ... or "").
	AuthScheme string
	// AuthTokenSHA256 is the hex SHA-256 of the credential, so a log can show which token was
	// used without holding it.
	AuthTokenSHA256 string
	// CredentialSHA256 has the hex SHA-256 of every credential header the request carried
	// (Authorization, X-Api-Key, Api-Key), by header name.
	CredentialSHA256 map[string]string
	// Stream is true when the reply was a server-sent-event stream.
	Stream bool
	// Model is the "model" field of a JSON request body, if any.
	Model string
	// RPCMethod is the "method" of a JSON-RPC request body (MCP), if any.
	RPCMethod string
	// Body is the request body as received (up to 32 MiB).
	Body []byte
	// RemoteIP is the client's address, so a test can tell who reached the tenant (the proxy, or
	// a sandbox's egress proxy).
	RemoteIP string
	// Initiator is the X-Initiator header ("user", "agent" or "").
	Initiator string
	// Usage is what a completion reported and cost; nil for other routes and for a completion
	// that did not finish (a reset stream).
	Usage *Usage

	seq int // tells a recorded request from a later one at the same index after ResetRequests
}

// Usage is what one completion reported in its reply's usage, in wire-neutral terms, and what it
// cost in premium requests (the model's multiplier for a user-initiated request, 0 for an
// agent-initiated one).
type Usage struct {
	Model        string  `json:"model"`
	InputTokens  int64   `json:"input_tokens"`  // every prompt token processed, cached ones included
	CachedTokens int64   `json:"cached_tokens"` // of them, read from the prompt cache
	OutputTokens int64   `json:"output_tokens"`
	Premium      float64 `json:"premium"`
}

// UsageTotals sums the completions of one model.
type UsageTotals struct {
	Requests                                int64
	Premium                                 float64
	InputTokens, CachedTokens, OutputTokens int64
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
	// SeparateUsageChunk sends a streamed chat completion's usage in a chunk of its own with no
	// choices (OpenAI's stream_options.include_usage shape) rather than in the finish chunk.
	SeparateUsageChunk bool

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
	// premiumUsed is what completions cost so far, for the quota snapshot headers.
	premiumUsed float64
	idle        chan struct{} // closed and replaced whenever open drops to 0
	canceled    int           // streams that ended because the client went away
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
	ca, err := makeCA(opts.Host)
	if err != nil {
		return nil, err
	}
	own, err := ca.serverCert(opts.Host, opts.Addr)
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
		ca:      ca.cert,
		caPEM:   ca.pem,
		pool:    x509.NewCertPool(),
		closing: make(chan struct{}),
		issued:  map[string]bool{},
		idle:    make(chan struct{}),
	}
	t.pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(t.serveHTTP))
	srv.Listener.Close()
	srv.Listener = ln
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{own},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	if opts.AnyHost {
		srv.TLS.GetCertificate = (&minter{ca: ca, own: &own, minted: map[string]*tls.Certificate{}}).getCertificate
	}
	// Handshake failures from clients that do not trust the CA are expected in tests; keep them
	// out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.srv = srv
	return t, nil
}

// authority is the tenant's CA: it signs the server certificate made at Start and, with
// Options.AnyHost, one minted per name a client asks for.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// makeCA makes a fresh in-memory CA for host.
func makeCA(host string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make the fake tenant's CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "copilot-route fake tenant CA " + host, Organization: []string{"copilot-route tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("make the fake tenant's CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the fake tenant's CA: %w", err)
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// serverCert makes the tenant's own leaf: host, *.host, localhost, the loopback addresses and the
// listen IP (when it is another address).
func (ca *authority) serverCert(host, addr string) (tls.Certificate, error) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.Equal(ips[0]) && !ip.Equal(ips[1]) {
			ips = append(ips, ip)
		}
	}
	return ca.leaf(host, []string{host, "*." + host, "localhost"}, ips)
}

// leaf signs a server certificate for names and ips.
func (ca *authority) leaf(cn string, names []string, ips []net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make a fake tenant certificate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make a fake tenant certificate for %s: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse a fake tenant certificate for %s: %w", cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// minter hands out a certificate for any SNI name the tenant's own does not cover (Options.AnyHost).
type minter struct {
	ca  *authority
	own *tls.Certificate

	mu     sync.Mutex
	minted map[string]*tls.Certificate
}

func (m *minter) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" || m.own.Leaf.VerifyHostname(name) == nil {
		return m.own, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.minted[name]; ok {
		return c, nil
	}
	c, err := m.ca.leaf(name, []string{name}, nil)
	if err != nil {
		return nil, err
	}
	m.minted[name] = &c
	return &c, nil
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
		r.CredentialSHA256 = maps.Clone(r.CredentialSHA256)
		out[i] = r
	}
	return out
}

// Usage sums the recorded completions per model (the model the tenant answered as): what a
// proxy's usage report must match.
func (t *Tenant) Usage() map[string]UsageTotals {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]UsageTotals{}
	for _, r := range t.requests {
		if u := r.Usage; u != nil {
			s := out[u.Model]
			s.Requests++
			s.Premium += u.Premium
			s.InputTokens += u.InputTokens
			s.CachedTokens += u.CachedTokens
			s.OutputTokens += u.OutputTokens
			out[u.Model] = s
		}
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
	RawQuery        string    `json:"query,omitempty"`
	Host            string    `json:"host"`
	Proto           string    `json:"proto"`
	HeaderNames     []string  `json:"header_names"`
	Auth            string    `json:"auth"`
	AuthOK          bool      `json:"auth_ok"`
	AuthHeader      string    `json:"auth_header,omitempty"`
	AuthScheme      string    `json:"auth_scheme,omitempty"`
	AuthTokenSHA256 string    `json:"auth_token_sha256,omitempty"`
	// CredentialSHA256: every credential header's value, hashed, by header name.
	CredentialSHA256 map[string]string `json:"credential_sha256,omitempty"`
	BodyBytes        int64             `json:"body_bytes"`
	Stream           bool              `json:"stream,omitempty"`
	Model            string            `json:"model,omitempty"`
	RPCMethod        string            `json:"rpc_method,omitempty"`
	UserAgent        string            `json:"user_agent,omitempty"`
	IntegrationID    string            `json:"copilot_integration_id,omitempty"`
	// Status is the reply's status (0 when the handler ended without one: a reset stream).
	Status   int    `json:"status"`
	RemoteIP string `json:"remote_ip,omitempty"`
	// Initiator is the X-Initiator header; Usage what a finished completion reported and cost.
	Initiator string `json:"initiator,omitempty"`
	Usage     *Usage `json:"usage,omitempty"`
}

// LogLine is r in its log form.
func (r Request) LogLine() LogLine {
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	return LogLine{
		At: r.At.UTC(), Method: r.Method, Path: maskTokens(r.Path), Query: r.RawQuery != "", RawQuery: maskTokens(r.RawQuery),
		Host: r.Host, Proto: r.Proto, HeaderNames: names, Auth: r.Auth, AuthOK: r.Auth == "real" || r.Auth == "copilot",
		AuthHeader: r.AuthHeader, AuthScheme: r.AuthScheme, AuthTokenSHA256: r.AuthTokenSHA256, CredentialSHA256: r.CredentialSHA256, BodyBytes: r.BodyBytes,
		Stream: r.Stream, Model: r.Model, RPCMethod: maskTokens(r.RPCMethod), UserAgent: maskTokens(r.Header.Get("User-Agent")),
		IntegrationID: maskTokens(r.Header.Get("Copilot-Integration-Id")), RemoteIP: r.RemoteIP,
		Initiator: maskTokens(cutLog(r.Initiator)), Usage: r.Usage,
	}
}

// tokenShape matches GitHub token formats, so a client that puts a token where it does not belong
// (a path, a User-Agent) still cannot get it into the log.
var tokenShape = regexp.MustCompile(`(?i)(gh[opsur]_|github_pat_)[A-Za-z0-9_]+`)

func maskTokens(s string) string { return tokenShape.ReplaceAllString(s, "${1}[REDACTED]") }

func cutLog(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
