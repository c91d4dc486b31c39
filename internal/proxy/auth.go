package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Client authentication, and keeping every credential on its own side of the proxy: the client's
// never goes upstream, the real one never goes anywhere but a configured upstream.

// authorize checks the client token (or the exchange shim's token) in constant time.
func (p *Proxy) authorize(st *reqState, r *http.Request) bool {
	cred := clientCredential(r.Header)
	switch {
	case cred != "" && ctEqual(cred, p.clientToken):
		return true
	case cred != "" && ctEqual(cred, p.shimToken):
		st.shim = true
		return true
	}
	p.stats.authFail.Add(1)
	st.rw.Header().Set("WWW-Authenticate", `Bearer realm="copilot-route"`)
	writeError(st, http.StatusUnauthorized, "Bad credentials: copilot-route wants the client token it was started with, "+
		"as Authorization: Bearer <client token>, or as x-api-key / api-key for clients that send their key there "+
		"(the proxy-url and client-token outputs of the action)", nil)
	return false
}

// clientCredential is the credential a client presented: Authorization with the Bearer or token
// scheme (any case), else x-api-key (Anthropic-style clients: the Copilot CLI's BYOK anthropic
// provider sends its key only there), else api-key (Azure OpenAI-style). The first of these
// headers present decides; a header sent twice counts as none.
func clientCredential(h http.Header) string {
	if vs, ok := h["Authorization"]; ok {
		if len(vs) != 1 {
			return ""
		}
		v := vs[0]
		for _, s := range [...]string{"bearer ", "token "} {
			if len(v) > len(s) && strings.EqualFold(v[:len(s)], s) {
				return strings.TrimSpace(v[len(s):])
			}
		}
		return ""
	}
	for _, k := range [...]string{"X-Api-Key", "Api-Key"} {
		if vs, ok := h[k]; ok {
			if len(vs) != 1 {
				return ""
			}
			return strings.TrimSpace(vs[0])
		}
	}
	return ""
}

func ctEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// clientOnlyHeader names the request headers that never go upstream: every header a client may
// carry a credential in (the real credential is set by credTransport), cookies, and forwarding
// headers an upstream could trust.
func clientOnlyHeader(k string) bool {
	switch k {
	case "Authorization", "Proxy-Authorization", "X-Api-Key", "Api-Key", "X-Github-Token",
		"Cookie", "Forwarded", "Via", "X-Real-Ip":
		return true
	}
	return hasPrefix(k, "X-Forwarded-")
}

// holdsClientSecret says whether a header's values carry the client token or the shim token
// under any name: neither means anything upstream, and both would end up in its logs.
func (p *Proxy) holdsClientSecret(vs []string) bool {
	for _, v := range vs {
		if len(v) >= len(p.clientToken) && (strings.Contains(v, p.clientToken) || strings.Contains(v, p.shimToken)) {
			return true
		}
	}
	return false
}

// errNotPinned is returned for a request that would carry the real credential to a scheme and
// host other than its upstream's.
var errNotPinned = errors.New("copilot-route: the real credential is sent only to the configured upstreams")

// pinned checks that a request carrying the real credential goes to this upstream's own scheme
// and host: never to another host (a redirect, a crafted URL), never over plain http unless the
// upstream itself was configured as http (tests).
func (up *upstream) pinned(u *url.URL) error {
	if u == nil || u.Scheme != up.target.Scheme || !strings.EqualFold(u.Host, up.target.Host) {
		where := "an empty URL"
		if u != nil {
			where = u.Scheme + "://" + u.Host
		}
		return fmt.Errorf("%w: refused %s (configured: %s://%s)", errNotPinned, where, up.target.Scheme, up.target.Host)
	}
	return nil
}

// credClient is an HTTP client for the proxy's own requests with the real credential (discovery,
// token exchange), on connections of their own: it never follows a redirect — Go's client would drop Authorization on a
// cross-host hop, but credTransport would set it again — and credTransport refuses any host but
// up's.
func (p *Proxy) credClient(up *upstream) *http.Client {
	return &http.Client{
		Transport: &credTransport{p: p, up: up, own: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
