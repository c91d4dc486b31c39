package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The lean upstream has the shape of the Copilot API routes the benchmark uses, and nothing else:
// internal/faketenant records every request (headers and bodies) under a mutex, which would make
// the fake, not the proxy, what a 10 MiB upload or 64 busy clients measure.
//
//	GET  /models            ~4 KB of JSON (Content-Length)
//	POST /chat/completions  SSE: ?chunks=N&interval=5ms&size=100; each chunk carries its send time
//	                        ("t", Unix ns) and index ("i"); then data: [DONE]
//	POST /upload            reads the body, answers {"bytes":N}; so does /chat/completions?upload=1,
//	                        which the proxy routes as a completion (the path of a large prompt)
//
// Every route wants a non-empty Authorization header, as the real API does.

var modelsBody = func() []byte {
	type billing struct {
		Multiplier float64 `json:"multiplier"`
	}
	type model struct {
		ID      string  `json:"id"`
		Object  string  `json:"object"`
		Vendor  string  `json:"vendor"`
		Version string  `json:"version"`
		Family  string  `json:"family"`
		Picker  bool    `json:"model_picker_enabled"`
		Billing billing `json:"billing"` // what -governed's premium budget prices by
	}
	var list []model
	for i := 0; ; i++ {
		list = append(list, model{ID: fmt.Sprintf("model-%02d", i), Object: "model", Vendor: "bench",
			Version: fmt.Sprintf("model-%02d-2025-01-01", i), Family: "bench-family", Picker: i%2 == 0,
			Billing: billing{Multiplier: float64(i % 3)}})
		b, _ := json.Marshal(map[string]any{"data": list, "object": "list"})
		if len(b) >= 4000 {
			return b
		}
	}
}()

var uploadBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func upstreamHandler(w http.ResponseWriter, r *http.Request) {
	if len(r.Header["Authorization"]) == 0 {
		http.Error(w, `{"message":"Requires authentication"}`, http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/models":
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(modelsBody))}
		w.Write(modelsBody)
	case "/upload":
		buf := uploadBuffers.Get().(*[]byte)
		n, _ := io.CopyBuffer(io.Discard, r.Body, *buf)
		uploadBuffers.Put(buf)
		fmt.Fprintf(w, `{"bytes":%d}`, n)
	case "/chat/completions":
		if r.URL.RawQuery == "upload=1" {
			buf := uploadBuffers.Get().(*[]byte)
			n, _ := io.CopyBuffer(io.Discard, r.Body, *buf)
			uploadBuffers.Put(buf)
			fmt.Fprintf(w, `{"bytes":%d}`, n)
			return
		}
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		serveSSE(w, r)
	default:
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
	}
}

func serveSSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	chunks, _ := strconv.Atoi(q.Get("chunks"))
	interval, _ := time.ParseDuration(q.Get("interval"))
	size, _ := strconv.Atoi(q.Get("size"))
	if chunks <= 0 {
		chunks = 8
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache"}
	w.WriteHeader(http.StatusOK)
	f := w.(http.Flusher)
	pad := strings.Repeat("x", max(size-len(`data: {"i":000,"t":1700000000000000000,"p":""}`+"\n\n"), 0))
	buf := make([]byte, 0, size+64)
	start := time.Now()
	for i := range chunks {
		// An absolute schedule: a late chunk does not delay the ones after it.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		buf = fmt.Appendf(buf[:0], "data: {\"i\":%d,\"t\":%d,\"p\":\"%s\"}\n\n", i, time.Now().UnixNano(), pad)
		if _, err := w.Write(buf); err != nil {
			return
		}
		f.Flush()
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

// runUpstream is `bench upstream -dir DIR`: writes DIR/ca.pem, prints {"addr":...} once
// listening, serves TLS (HTTP/2 and HTTP/1.1, as the real API) until SIGTERM.
func runUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	dir := fs.String("dir", ".", "directory for ca.pem")
	if err := fs.Parse(args); err != nil {
		return err
	}
	caPEM, cert, err := makeCerts()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "ca.pem"), caPEM, 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(upstreamHandler),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		ErrorLog:  nil,
	}
	// The Copilot API lets a client open many streams per HTTP/2 connection; keep Go's default
	// (250 concurrent streams), beyond which clients open another connection.
	line, _ := json.Marshal(map[string]any{"addr": ln.Addr().String(), "pid": os.Getpid()})
	fmt.Println(string(line))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; srv.Close() }()
	if err := srv.ServeTLS(ln, "", ""); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// makeCerts makes a throw-away CA and a leaf for acme.ghe.com, *.acme.ghe.com and 127.0.0.1.
func makeCerts() ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "copilot-route bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "acme.ghe.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames:    []string{"acme.ghe.com", "*.acme.ghe.com", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}, nil
}
