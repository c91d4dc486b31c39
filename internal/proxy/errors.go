package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// upstreamFailed answers a request whose upstream failed before a reply: 502 or 504 JSON naming
// the host and a hint, never a secret.
func (p *Proxy) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	if st == nil {
		writeError(w, http.StatusBadGateway, "upstream failed", nil)
		return
	}
	if st.tooLarge.Load() {
		st.refusal = "too-large"
		p.stats.refusal(st.refusal)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d MiB: copilot-route refuses it", p.cfg.MaxBodyBytes>>20), nil)
		return
	}
	// Before the client-gone check: a client that half-closes mid-body also cancels the context,
	// and would otherwise get the empty 200 the server sends for a handler that wrote nothing.
	if st.badBody.Load() {
		st.refusal = "bad-body"
		p.stats.refusal(st.refusal)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusBadRequest, "copilot-route refuses this request (bad-body): its body ended early or its chunked encoding is malformed", nil)
		return
	}
	if r.Context().Err() != nil {
		st.errKind = "client-gone"
		return // nobody to answer
	}
	kind, status := classify(err)
	st.errKind = kind
	host := st.up.host
	hint := hintFor(kind, host)
	p.stats.upstreamError(host, kind, hint)
	p.log.Warn("upstream failed", slog.String("upstream", host), slog.String("kind", kind),
		slog.String("detail", netErrText(err)))
	writeError(w, status, fmt.Sprintf("copilot-route: upstream %s failed (%s)", host, kind),
		map[string]string{"upstream": host, "kind": kind, "hint": hint})
}

// classify names what went wrong talking to an upstream and the status to answer with.
func classify(err error) (kind string, status int) {
	var dnsErr *net.DNSError
	var ne net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &dnsErr):
		return "dns", http.StatusBadGateway
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &recErr), errors.As(err, &alert):
		return "tls", http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout", http.StatusGatewayTimeout
	case isRefused(err):
		return "refused", http.StatusBadGateway
	case isReset(err):
		return "reset", http.StatusBadGateway
	}
	if strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
		return "tls", http.StatusBadGateway
	}
	return "other", http.StatusBadGateway
}

func hintFor(kind, host string) string {
	switch kind {
	case "dns":
		return host + " does not resolve: check the host name (copilot-api-target, api-url) and the runner's DNS"
	case "tls":
		return "the TLS certificate of " + host + " is not trusted or not for that name: behind a TLS-inspecting proxy pass its CA with --ca-file"
	case "timeout":
		return host + " did not answer in time: check that the egress firewall admits " + host + ", or retry later"
	case "refused":
		return "nothing accepts connections at " + host + ": check copilot-api-target / api-url and that the egress firewall admits it"
	case "reset":
		return host + " closed the connection: often an egress firewall that does not admit " + host
	case "mid-stream":
		return host + " broke off a reply mid-stream: retry the request; if it keeps happening, check proxies or firewalls that cut long responses"
	}
	return "could not reach " + host + ": see the proxy log for the detail"
}

// netErrText is an error's innermost text, without the URL the http package prefixes.
func netErrText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return cutString(err.Error(), 300)
}

func writeError(w http.ResponseWriter, status int, msg string, extra map[string]string) {
	body := map[string]string{"message": msg}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"message":"copilot-route: could not encode the reply"}`)
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE)
}
