package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
	"github.com/google/go-github/v60/github"
)

// maxBody bounds what a probe reads: a model list is tens of KiB, an error a few hundred bytes.
const maxBody = 2 << 20

type runner struct {
	cfg  Config
	kind copilot.TokenKind

	// Set by the user probe before it finishes; read by the models probe only after it.
	advertised string // validated endpoints.api, "" when absent or refused
	// Set by the models probe: the advertised host did not connect, so the proxy keeps the
	// derived one.
	advertisedDead string
	// Set by the models probe.
	copilotURL, copilotFrom string
}

// answer is one HTTP exchange, reduced to what the interpretation needs.
type answer struct {
	status   int
	latency  time.Duration
	reqID    string
	location string
	body     []byte
	message  string // the error message of a JSON error body, cleaned for display
	retryAt  string // Retry-After
	err      error  // transport error (scrubbed when shown)
	errKind  string // dns, refused, timeout, tls, reset, network
}

const (
	schemeBearer = "Bearer"
	schemeToken  = "token"
)

// send makes one request. scheme "" sends no credential. The token goes only into the
// Authorization header, never into a URL, so no transport error can carry it.
func (r *runner) send(ctx context.Context, method, rawURL, scheme string, hdr http.Header) answer {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return answer{err: fmt.Errorf("bad URL %s", platform.Quote(rawURL)), errKind: "network"}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", r.cfg.UserAgent)
	if scheme != "" {
		req.Header.Set("Authorization", scheme+" "+r.cfg.Token.Reveal())
	}
	start := time.Now()
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return answer{latency: time.Since(start), err: err, errKind: classify(ctx, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	a := answer{
		status:   resp.StatusCode,
		latency:  time.Since(start),
		reqID:    clean(resp.Header.Get(copilot.HeaderGitHubRequest), 64),
		location: clean(resp.Header.Get("Location"), 200),
		retryAt:  clean(resp.Header.Get("Retry-After"), 32),
		body:     body,
	}
	if err != nil {
		// Headers arrived but the body broke off: still a finding about the connection.
		a.err, a.errKind = err, classify(ctx, err)
	}
	if resp.StatusCode >= 300 {
		a.message = r.scrub(clean(errorMessage(body), 200))
	}
	return a
}

// sendREST calls a REST API route with the token. Some hosts accept only one Authorization
// scheme and say so with a 400 "badly formatted"; like the proxy in auto mode, it then tries the
// other scheme once. It returns the answer and the scheme that produced it.
func (r *runner) sendREST(ctx context.Context, url, first string) (answer, string) {
	a := r.send(ctx, http.MethodGet, url, first, nil)
	if !badScheme(a) {
		return a, first
	}
	second := other(first)
	b := r.send(ctx, http.MethodGet, url, second, nil)
	if b.status == 0 {
		return a, first
	}
	b.latency += a.latency
	return b, second
}

// badScheme says the server refused the Authorization scheme, not the token: the same test the
// proxy's auto mode uses to switch schemes (internal/proxy badlyFormatted), on the same statuses.
func badScheme(a answer) bool {
	if a.status != http.StatusBadRequest && a.status != http.StatusUnauthorized {
		return false
	}
	s := strings.ToLower(string(a.body))
	return strings.Contains(s, "badly formatted") ||
		(strings.Contains(s, "authorization") && (strings.Contains(s, "malformed") || strings.Contains(s, "invalid authorization header")))
}

// errorMessage pulls the human message out of GitHub's ({"message"}) and OpenAI's
// ({"error":{"message"}}) error bodies; otherwise the start of a plain-text body.
func errorMessage(body []byte) string {
	var gh struct {
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &gh) == nil {
		if gh.Message != "" {
			return gh.Message
		}
		var inner struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(gh.Error, &inner) == nil && inner.Message != "" {
			return inner.Message
		}
		var s string
		if json.Unmarshal(gh.Error, &s) == nil {
			return s
		}
		return ""
	}
	if len(body) > 0 && !strings.HasPrefix(strings.TrimSpace(string(body)), "<") {
		return string(body)
	}
	return ""
}

// clean makes an untrusted string safe for one line of markdown or a workflow command: no
// control characters, no markup that would break a table, at most max runes.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, c := range strings.TrimSpace(s) {
		if n >= max {
			b.WriteString("…")
			break
		}
		switch {
		case unicode.IsControl(c) || c == '\u2028' || c == '\u2029':
			c = ' '
		case c == '|' || c == '<' || c == '>' || c == '`':
			c = '\''
		}
		b.WriteRune(c)
		n++
	}
	return b.String()
}

// scrub removes every form of the token from a string shown to anyone. The token is never put
// where a reply or error could echo it, but a server may echo a header back; this is the net.
func (r *runner) scrub(s string) string {
	return Scrub(s, r.cfg.Token)
}

// Scrub replaces every form of tok in s with [REDACTED].
func Scrub(s string, tok copilot.Token) string {
	if tok.IsZero() {
		return s
	}
	forms := copilot.MaskForms(tok.Reveal())
	// Longest first, so "Bearer X" goes before "X" leaves "Bearer [REDACTED]".
	for i := range forms {
		for j := i + 1; j < len(forms); j++ {
			if len(forms[j]) > len(forms[i]) {
				forms[i], forms[j] = forms[j], forms[i]
			}
		}
	}
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, "[REDACTED]")
	}
	return s
}

// classify names the kind of transport failure, which decides the meaning and the fix.
func classify(ctx context.Context, err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &hostErr):
		return "tls-name"
	case errors.As(err, &unknownCA), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &record):
		return "tls"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "network"
}

// dialFailed says a transport error happened while connecting (no name, refused, no route,
// connect timeout), as opposed to after the connection was made.
func dialFailed(err error) bool {
	var op *net.OpError
	return err != nil && errors.As(err, &op) && op.Op == "dial"
}

// transportFinding says what a transport failure means for host and how to fix it.
func (r *runner) transportFinding(host string, a answer) (meaning, fix string) {
	switch a.errKind {
	case "dns":
		return host + " does not resolve from this runner",
			"Check the host (server-url, api-url, copilot-host); if the runner uses private DNS, make it resolve " + host + "."
	case "refused":
		return host + " refused the connection: nothing listens there for this runner",
			"The host is unreachable from this runner: check the runner's network, its egress rules for " + host + ":443, or HTTPS_PROXY."
	case "timeout":
		return fmt.Sprintf("no answer from %s within %s", host, r.cfg.Timeout),
			"A firewall that drops packets, or a very slow link, looks like this: allow " + host + ":443 in the runner's egress rules and run again."
	case "tls":
		return "the TLS certificate of " + host + " is not trusted",
			"A TLS-inspecting proxy is probably in between: pass its CA certificate with ca-file (the proxy needs it too)."
	case "tls-name":
		return "the TLS certificate " + host + " presented is for another host",
			"Something other than GitHub answers for " + host + " (a proxy, or a DNS or hosts-file override): check the runner's network settings."
	case "reset":
		return host + " closed the connection before answering",
			"An egress firewall often resets blocked hosts: allow " + host + ":443 and run again."
	case "canceled":
		return "the check was cancelled before " + host + " answered", "Run the check again."
	}
	return "could not reach " + host, "Check the runner's network and egress rules for " + host + ":443."
}

// errText is the transport error for the JSON report: scrubbed and one line.
func (r *runner) errText(a answer) string {
	if a.err == nil {
		return ""
	}
	return r.scrub(clean(a.err.Error(), 300))
}

// sendGitHub makes one REST call through go-github (a route it covers: /meta, /user) and reduces
// the result to an answer like send's. withToken sends the token as Bearer.
func (r *runner) sendGitHub(ctx context.Context, apiURL string, withToken bool,
	call func(context.Context, *github.Client) (*github.Response, error)) answer {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	tok := copilot.Token{}
	if withToken {
		tok = r.cfg.Token
	}
	c, err := copilot.RESTClient(r.cfg.Client, apiURL, tok, r.cfg.UserAgent)
	if err != nil {
		return answer{err: err, errKind: "network"}
	}
	start := time.Now()
	resp, err := call(ctx, c)
	a := answer{latency: time.Since(start)}
	if resp == nil || resp.Response == nil {
		if err == nil {
			err = errors.New("no reply")
		}
		a.err, a.errKind = err, classify(ctx, err)
		return a
	}
	a.status = resp.StatusCode
	a.reqID = clean(resp.Header.Get(copilot.HeaderGitHubRequest), 64)
	a.location = clean(resp.Header.Get("Location"), 200)
	a.retryAt = clean(resp.Header.Get("Retry-After"), 32)
	var ge *github.ErrorResponse
	if errors.As(err, &ge) && a.status >= 300 {
		a.message = r.scrub(clean(ge.Message, 200))
	}
	return a
}
