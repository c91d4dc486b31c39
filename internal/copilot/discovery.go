package copilot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// UserPath is the REST API path of the user look-up (relative to the REST API URL, which may
// carry a prefix such as /api/v3).
const UserPath = "/copilot_internal/user"

// maxReplyBytes bounds what is read from a /copilot_internal reply: they are a few KiB.
const maxReplyBytes = 1 << 20

// APIError is a non-2xx reply from a GitHub REST endpoint. It carries the platform's message and
// request id (to quote to GitHub support) but never a credential or a request header.
type APIError struct {
	Op        string // e.g. "GET /copilot_internal/user"
	Host      string
	Status    int
	Message   string // the reply's "message", cut to 200 characters
	RequestID string // X-GitHub-Request-Id
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s on %s: HTTP %d", e.Op, e.Host, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " (request id " + e.RequestID + ")"
	}
	return msg
}

// Refused says whether the platform refused this credential for the call (as opposed to failing):
// a token kind or permission that does not allow it. Retrying does not help.
func (e *APIError) Refused() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusNotFound
}

// FetchUser calls GET {restAPIURL}/copilot_internal/user once with tok and decodes the reply.
// client carries the transport (root CAs, dialer); a transport that sets Authorization itself
// (the proxy's, which remembers the scheme per host) overrides the Bearer header set here.
func FetchUser(ctx context.Context, client *http.Client, restAPIURL string, tok Token) (UserReply, error) {
	body, err := getJSON(ctx, client, http.MethodGet, restAPIURL, UserPath, tok)
	if err != nil {
		return UserReply{}, err
	}
	return ParseUserReply(body)
}

// getJSON sends one request and returns the body of a 2xx reply or an *APIError.
func getJSON(ctx context.Context, client *http.Client, method, base, path string, tok Token) ([]byte, error) {
	u := strings.TrimRight(base, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: bad REST API URL %q: %w", method, path, base, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	req.Header.Set("User-Agent", "copilot-route")
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error names the URL, which carries no secret; the token is only in a header.
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: read reply: %w", method, path, req.URL.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Op: method + " " + path, Host: req.URL.Host, Status: resp.StatusCode,
			RequestID: resp.Header.Get(HeaderGitHubRequest)}
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &m) == nil {
			e.Message = cut(m.Message, 200)
		}
		return nil, e
	}
	return body, nil
}

func cut(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
