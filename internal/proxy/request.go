package proxy

import (
	"net/http"
	"net/url"
	"strings"
)

// refuseReason says why a request is refused before anything goes upstream, or "".
func refuseReason(r *http.Request) string {
	if r.Method == http.MethodConnect {
		return "connect"
	}
	// TRACE/TRACK make an upstream echo the request, real credential included, in a success body
	// (which scrub does not read).
	if r.Method == "TRACE" || r.Method == "TRACK" {
		return "method"
	}
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' || r.URL.Host != "" || r.URL.Scheme != "" {
		return "absolute-form"
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return "upgrade"
	}
	for _, v := range r.Header["Connection"] {
		if containsFold(v, "upgrade") {
			return "upgrade"
		}
	}
	raw := uri
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	return badPath(raw)
}

// badPath refuses paths that could leave the upstream's base path or be read differently by the
// upstream: '//' anywhere, '.' or '..' segments, backslashes, control bytes, and the same hidden
// behind percent-encoding (decoded up to three times, for double encoding).
func badPath(raw string) string {
	if len(raw) > 1 && raw[1] == '/' {
		return "double-slash"
	}
	s := raw
	for i := 0; i < 3 && strings.IndexByte(s, '%') >= 0; i++ {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "bad-escape"
		}
		if d == s {
			break
		}
		s = d
	}
	if strings.Contains(s, "//") {
		return "double-slash"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "bad-character"
		}
	}
	for rest := s; rest != ""; {
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest = rest, ""
		}
		if seg == "." || seg == ".." {
			return "traversal"
		}
	}
	return ""
}

// tokenInURI says whether the client or shim token is in the request target, as sent or
// percent-decoded (the upstream decodes it).
func (p *Proxy) tokenInURI(r *http.Request) bool {
	q := r.URL.RawQuery
	if strings.IndexByte(q, '%') >= 0 {
		if d, err := url.QueryUnescape(q); err == nil {
			q = d
		}
	}
	for _, s := range [...]string{r.RequestURI, r.URL.Path, q} {
		if strings.Contains(s, p.clientToken) || strings.Contains(s, p.shimToken) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
