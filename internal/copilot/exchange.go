package copilot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// ExchangePath is the older token exchange: a GitHub token in, a short-lived Copilot token out.
const ExchangePath = "/copilot_internal/v2/token"

// ExchangeReply is the reply of the token exchange.
type ExchangeReply struct {
	Token     Token     // the Copilot token (redacted when printed)
	ExpiresAt time.Time // when the platform stops accepting it
	RefreshIn time.Duration
	Endpoints Endpoints
	SKU       string
}

type exchangeWire struct {
	Token     string    `json:"token"`
	ExpiresAt int64     `json:"expires_at"`
	RefreshIn int64     `json:"refresh_in"`
	Endpoints Endpoints `json:"endpoints"`
	SKU       string    `json:"sku"`
}

// Exchange calls GET {restAPIURL}/copilot_internal/v2/token once with the GitHub token.
func Exchange(ctx context.Context, client *http.Client, restAPIURL string, tok Token) (ExchangeReply, error) {
	body, err := getJSON(ctx, client, http.MethodGet, restAPIURL, ExchangePath, tok)
	if err != nil {
		return ExchangeReply{}, err
	}
	return ParseExchangeReply(body)
}

// maxRefreshIn bounds refresh_in: a larger value (or one that would overflow a Duration) is
// ignored, so a hostile or broken reply cannot pin a token in the cache for ever.
const maxRefreshIn = 24 * 60 * 60

// ParseExchangeReply decodes a token exchange body. Errors never quote the body (it holds a token).
func ParseExchangeReply(body []byte) (ExchangeReply, error) {
	var w exchangeWire
	if err := json.Unmarshal(body, &w); err != nil {
		return ExchangeReply{}, fmt.Errorf("decode %s reply: %w", ExchangePath, err)
	}
	if w.Token == "" {
		return ExchangeReply{}, fmt.Errorf("%s reply has no token", ExchangePath)
	}
	r := ExchangeReply{Token: NewToken(w.Token), Endpoints: w.Endpoints, SKU: w.SKU}
	// It goes into an Authorization header: blank (after the scheme is stripped), white space or
	// control bytes would send an empty credential or fail every request later.
	if v := r.Token.Reveal(); v == "" || strings.IndexFunc(v, func(c rune) bool { return c <= ' ' || c >= 0x7f }) >= 0 {
		return ExchangeReply{}, fmt.Errorf("%s reply has no usable token (empty, or white space or control characters in it)", ExchangePath)
	}
	if w.RefreshIn > 0 && w.RefreshIn <= maxRefreshIn {
		r.RefreshIn = time.Duration(w.RefreshIn) * time.Second
	}
	if w.ExpiresAt > 0 {
		r.ExpiresAt = time.Unix(w.ExpiresAt, 0)
	}
	return r, nil
}

// Exchanger exchanges a GitHub token for Copilot tokens on demand and caches the result: one
// exchange until the token's refresh time, refreshed by one caller at a time (oauth2's
// ReuseTokenSource holds the lock), and a refusal (401/403/404: the token kind cannot exchange,
// e.g. a fine-grained PAT on GHE.com) remembered for the whole run, as it will not change.
type Exchanger struct {
	src oauth2.TokenSource

	mu      sync.Mutex
	refusal error // sticky *APIError that Refused()
	last    ExchangeReply
}

// NewExchanger makes an Exchanger that calls restAPIURL through client. timeout bounds one
// exchange (the token source has no context of its own).
func NewExchanger(client *http.Client, restAPIURL string, tok Token, timeout time.Duration) *Exchanger {
	e := &Exchanger{}
	raw := exchangeSource{e: e, client: client, base: restAPIURL, tok: tok, timeout: timeout}
	// refresh_in already leaves a margin before expiry; 5 s more covers a request in flight.
	e.src = oauth2.ReuseTokenSourceWithExpiry(nil, raw, 5*time.Second)
	return e
}

// Token returns a valid Copilot token, exchanging when the cached one is due. The error is an
// *APIError (see Refused) or a transport error.
func (e *Exchanger) Token() (Token, error) {
	e.mu.Lock()
	refusal := e.refusal
	e.mu.Unlock()
	if refusal != nil {
		return Token{}, refusal
	}
	t, err := e.src.Token()
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Refused() {
			e.mu.Lock()
			e.refusal = ae
			e.mu.Unlock()
			return Token{}, ae
		}
		return Token{}, err
	}
	return NewToken(t.AccessToken), nil
}

// Last is the most recent successful exchange reply (zero before one).
func (e *Exchanger) Last() ExchangeReply {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

type exchangeSource struct {
	e       *Exchanger
	client  *http.Client
	base    string
	tok     Token
	timeout time.Duration
}

func (s exchangeSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	r, err := Exchange(ctx, s.client, s.base, s.tok)
	if err != nil {
		return nil, err
	}
	s.e.mu.Lock()
	s.e.last = r
	s.e.mu.Unlock()
	expiry := time.Now().Add(r.RefreshIn)
	if r.RefreshIn <= 0 || (!r.ExpiresAt.IsZero() && r.ExpiresAt.Before(expiry)) {
		expiry = r.ExpiresAt
	}
	if expiry.IsZero() {
		// Neither refresh_in nor expires_at: exchange again for the next caller.
		expiry = time.Now().Add(time.Minute)
	}
	return &oauth2.Token{AccessToken: r.Token.Reveal(), TokenType: "Bearer", Expiry: expiry}, nil
}
