package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// credTransport sets the real credential with the scheme the upstream wants, switches scheme once
// on a "badly formatted" Authorization reply (--auth-scheme auto), and retries a GET whose
// connection failed.
type credTransport struct {
	p  *Proxy
	up *upstream
	// own: the proxy's own requests (discovery, token exchange), on up.own: never a connection
	// an agent's request uses, so no reply to one can reach the other.
	own bool
}

func (t *credTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.up.pinned(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	cred := t.p.cfg.Token.Reveal()
	bearer, token := t.up.bearer, t.up.token
	if st := stateOf(req.Context()); st != nil && st.shim && t.up.isCopilot {
		if ct, err := t.p.exchanger.Token(); err == nil {
			cred = ct.Reveal()
			bearer, token = []string{"Bearer " + cred}, []string{"token " + cred}
		}
	}
	resp, err := t.roundTrip(req, bearer, token)
	if err != nil {
		return nil, err
	}
	// An upstream that echoes the credential (a debugging proxy, a misconfigured gateway) must
	// not hand it to the agent: scrub reply headers, and the bodies of error replies.
	scrub(resp, cred, t.p.cfg.Token.Reveal())
	return resp, nil
}

func (t *credTransport) roundTrip(req *http.Request, bearer, token []string) (*http.Response, error) {
	up, p := t.up, t.p
	st := stateOf(req.Context())
	scheme := up.scheme.Load()
	// While the host's scheme is unconfirmed keep a small body, so a retry can resend it.
	replayable := req.Body == nil || req.Body == http.NoBody
	if up.auto && !replayable && !up.confirmed.Load() {
		var err error
		if replayable, err = bufferBody(req); err != nil {
			return nil, err
		}
	}
	setAuth(req, scheme, bearer, token)
	var tr http.RoundTripper = guardedTransport{up.plain}
	switch {
	case t.own:
		tr = up.own // a connection per request: nothing to guard
	case st != nil && streamed(st.route):
		tr = guardedTransport{up.transport}
	}
	resp, err := tr.RoundTrip(req)
	if err != nil && isDialError(err) && (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && req.Context().Err() == nil {
		resp, err = tr.RoundTrip(req)
	}
	if err != nil {
		return nil, err
	}
	if st != nil {
		st.scheme.Store(scheme)
	}
	if !up.auto || (resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized) {
		if resp.StatusCode < 400 && up.scheme.Load() == scheme {
			up.confirmed.Store(true)
		}
		return resp, nil
	}
	if !badlyFormatted(resp) || !replayable {
		return resp, nil
	}
	// Retry once with the other scheme before anything reaches the client.
	other := schemeToken
	if scheme == schemeToken {
		other = schemeBearer
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		body, gerr := req.GetBody()
		if gerr != nil {
			return resp, nil
		}
		retry.Body = body
	}
	setAuth(retry, other, bearer, token)
	resp2, err := tr.RoundTrip(retry)
	if err != nil {
		return resp, nil // the first reply says more than a failed retry
	}
	resp.Body.Close()
	if st != nil {
		st.retried.Store(true)
		st.scheme.Store(other)
	}
	if resp2.StatusCode < 400 || !badlyFormatted(resp2) {
		if up.scheme.CompareAndSwap(scheme, other) {
			sw := SchemeSwitch{Host: up.host, From: schemeName(scheme), To: schemeName(other), At: p.now().UTC()}
			p.stats.schemeSwitch(sw)
			p.log.Warn("upstream wants another Authorization scheme; switched for the rest of the run",
				slog.String("upstream", up.host), slog.String("from", sw.From), slog.String("to", sw.To),
				slog.Int("status_before", resp.StatusCode), slog.Int("status_after", resp2.StatusCode))
		}
		if resp2.StatusCode < 400 {
			up.confirmed.Store(true)
		}
	}
	return resp2, nil
}

const redactedText = "[REDACTED]"

// scrub replaces the secrets in reply headers and in the first MiB of an error reply's body
// (identity-encoded). Success bodies, streams above all, are passed on untouched: scanning them
// would cost every chunk, and no Copilot or GitHub endpoint echoes credentials in them.
func scrub(resp *http.Response, secrets ...string) {
	has := func(v string) bool {
		for _, s := range secrets {
			if s != "" && strings.Contains(v, s) {
				return true
			}
		}
		return false
	}
	clean := func(v string) string {
		for _, s := range secrets {
			if s != "" {
				v = strings.ReplaceAll(v, s, redactedText)
			}
		}
		return v
	}
	for _, vs := range resp.Header {
		for i, v := range vs {
			if has(v) {
				vs[i] = clean(v)
			}
		}
	}
	if resp.StatusCode < 400 || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return
	}
	const limit = 1 << 20
	head, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	rest := resp.Body
	if err != nil || !has(string(head)) {
		resp.Body = readCloser{io.MultiReader(strings.NewReader(string(head)), rest), rest}
		return
	}
	cleaned := clean(string(head))
	resp.Body = readCloser{io.MultiReader(strings.NewReader(cleaned), rest), rest}
	if len(head) < limit {
		resp.ContentLength = int64(len(cleaned))
		resp.Header.Set("Content-Length", strconv.Itoa(len(cleaned)))
	} else {
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
}

func setAuth(req *http.Request, scheme int32, bearer, token []string) {
	if scheme == schemeToken {
		req.Header["Authorization"] = token
	} else {
		req.Header["Authorization"] = bearer
	}
}

// bufferBody reads a body of up to retryBodyLimit into memory and makes it replayable. A larger
// body is passed on as a stream (no retry for it).
func bufferBody(req *http.Request) (bool, error) {
	if req.ContentLength > retryBodyLimit {
		return false, nil
	}
	orig := req.Body
	buf, err := io.ReadAll(io.LimitReader(orig, retryBodyLimit+1))
	if err != nil {
		return false, err
	}
	if len(buf) > retryBodyLimit {
		req.Body = readCloser{io.MultiReader(strings.NewReader(string(buf)), orig), orig}
		return false, nil
	}
	orig.Close()
	req.ContentLength = int64(len(buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(buf))), nil }
	req.Body, _ = req.GetBody()
	return true, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// badlyFormatted peeks at a 400/401 reply for GitHub's complaint about the Authorization scheme,
// and puts the peeked bytes back.
func badlyFormatted(resp *http.Response) bool {
	peek, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body = readCloser{io.MultiReader(strings.NewReader(string(peek)), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	s := strings.ToLower(string(peek))
	return strings.Contains(s, "badly formatted") ||
		(strings.Contains(s, "authorization") && (strings.Contains(s, "malformed") || strings.Contains(s, "invalid authorization header")))
}
