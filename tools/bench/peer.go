package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
)

// runPeer is `bench peer -target URL -ca FILE`: the baseline peer, a plain
// httputil.ReverseProxy (Rewrite with SetURL, a clone of the default transport trusting the CA,
// FlushInterval -1), with no authentication, logging or stats. Measured in the same run as
// copilot-route, it shows what the machine allows a Go reverse proxy at that moment.
func runPeer(args []string) error {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	target := fs.String("target", "", "upstream URL")
	caFile := fs.String("ca", "", "PEM CA the upstream's certificate is signed by")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target %q is not a URL", *target)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport:     tr,
		FlushInterval: -1,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]any{"url": "http://" + ln.Addr().String(), "pid": os.Getpid()})
	fmt.Println(string(line))
	srv := &http.Server{Handler: rp}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
