package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// ClientConfig shapes the HTTP client the probes use.
type ClientConfig struct {
	// ExtraCAPEM adds roots to the system pool: a TLS-inspecting corporate proxy, or the fake
	// tenant in tests (--ca-file).
	ExtraCAPEM []byte
	// DialContext replaces the dialer. Tests use StaticDialer so tenant host names reach a local
	// fake without DNS; TLS still checks the certificate against the real host name.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewClient returns a client for the probes: no redirects followed (a redirect from an API host is
// itself a finding, and following one could carry the token to another host), no proxy from the
// environment unless the runner sets one (http.ProxyFromEnvironment, as the agent would see it).
func NewClient(c ClientConfig) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(c.ExtraCAPEM) > 0 && !roots.AppendCertsFromPEM(c.ExtraCAPEM) {
		return nil, fmt.Errorf("the CA file holds no PEM certificate: pass a PEM file (-----BEGIN CERTIFICATE-----)")
	}
	dial := c.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: DefaultTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   DefaultTimeout,
		ResponseHeaderTimeout: 0, // each probe's context bounds it
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	if c.DialContext != nil {
		// A test dialer must see every connection: no environment proxy in between.
		tr.Proxy = nil
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// StaticDialer dials host names from a fixed table (host or host:port → address) and refuses
// every other one, so a test can make api.acme.ghe.com reach a fake on 127.0.0.1 and can never
// reach the real one.
func StaticDialer(table map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		target, ok := table[addr]
		if !ok {
			target, ok = table[strings.ToLower(host)]
		}
		if !ok {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
		}
		return d.DialContext(ctx, network, target)
	}
}
