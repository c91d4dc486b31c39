package copilot

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRESTClientBaseURLs: go-github's requests land under the REST API's own prefix — none for
// api.github.com and api.NAME.ghe.com, /api/v3 for a GHES — on a server mounted under that
// prefix (as go-github's own tests do), so an absolute-path mistake would 404. The token goes
// only in Authorization, as Bearer.
func TestRESTClientBaseURLs(t *testing.T) {
	t.Parallel()
	const tok = "github_pat_11RESTCLIENT0TESTsecret_abcdefghijklmnopqrstuvwxyz0123"
	for _, prefix := range []string{"", "/api/v3"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			t.Parallel()
			var seen []string
			mux := http.NewServeMux()
			mux.HandleFunc(prefix+"/meta", func(w http.ResponseWriter, r *http.Request) {
				seen = append(seen, r.URL.Path+" auth="+r.Header.Get("Authorization"))
				_, _ = w.Write([]byte(`{"verifiable_password_authentication":false}`))
			})
			mux.HandleFunc(prefix+"/user", func(w http.ResponseWriter, r *http.Request) {
				seen = append(seen, r.URL.Path+" auth="+r.Header.Get("Authorization"))
				_, _ = w.Write([]byte(`{"login":"monalisa"}`))
			})
			srv := httptest.NewTLSServer(mux)
			defer srv.Close()

			anon, err := RESTClient(srv.Client(), srv.URL+prefix+"/", Token{}, "copilot-route/test")
			if err != nil {
				t.Fatal(err)
			}
			if _, resp, err := anon.Meta.Get(context.Background()); err != nil || resp.StatusCode != 200 {
				t.Fatalf("meta: %v", err)
			}
			authed, err := RESTClient(srv.Client(), srv.URL+prefix, NewToken(tok), "")
			if err != nil {
				t.Fatal(err)
			}
			u, _, err := authed.Users.Get(context.Background(), "")
			if err != nil || u.GetLogin() != "monalisa" {
				t.Fatalf("user: %v %v", u, err)
			}
			want := []string{prefix + "/meta auth=", prefix + "/user auth=Bearer " + tok}
			if strings.Join(seen, "\n") != strings.Join(want, "\n") {
				t.Errorf("requests\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
			}
		})
	}
	for _, bad := range []string{"", "ftp://x", "https://", "://"} {
		if _, err := RESTClient(http.DefaultClient, bad, Token{}, ""); err == nil || !strings.Contains(err.Error(), "api-url") {
			t.Errorf("RESTClient(%q) = %v, want an error naming api-url", bad, err)
		}
	}
}
