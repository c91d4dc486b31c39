package copilot

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-github/v60/github"
)

// RESTClient is a go-github client for the REST API at apiURL: https://api.github.com, a
// tenant's https://api.NAME.ghe.com or a GHES's https://HOST/api/v3. The base URL is set as given
// (go-github's WithEnterpriseURLs would append /api/v3 to any host not starting with "api.", such
// as a GHES reached by address). hc supplies the transport (roots, dialer) and the redirect
// policy; tok, when not zero, is sent as "Authorization: Bearer", which every REST API accepts.
// go-github covers /meta, the user, and the organization Copilot seat and billing routes;
// /copilot_internal/* is not in it and stays plain requests (FetchUser, the exchange).
func RESTClient(hc *http.Client, apiURL string, tok Token, userAgent string) (*github.Client, error) {
	base, err := url.Parse(strings.TrimRight(strings.TrimSpace(apiURL), "/") + "/")
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("REST API URL %q is not an http(s) URL: set api-url to e.g. https://api.acme.ghe.com", apiURL)
	}
	c := github.NewClient(hc)
	if !tok.IsZero() {
		c = c.WithAuthToken(tok.Reveal())
	}
	c.BaseURL, c.UploadURL = base, base
	if userAgent != "" {
		c.UserAgent = userAgent
	}
	return c, nil
}
