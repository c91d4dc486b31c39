package copilot_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/faketenant"
)

const tok = "gho_CopilotPackageTestToken000000000000001"

func tenant(t *testing.T) *faketenant.Tenant {
	t.Helper()
	ft, err := faketenant.Start(faketenant.Options{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ft.Close)
	return ft
}

func count(ft *faketenant.Tenant, path string) int {
	n := 0
	for _, r := range ft.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func TestFetchUser(t *testing.T) {
	t.Parallel()
	ft := tenant(t)
	u, err := copilot.FetchUser(context.Background(), ft.Client(), ft.URL()+"/api/v3/", copilot.NewToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	if u.Endpoints.API != "https://copilot-api.acme.ghe.com" {
		t.Errorf("endpoints.api = %q", u.Endpoints.API)
	}
	if rs := ft.Requests(); len(rs) != 1 || rs[0].Path != "/api/v3/copilot_internal/user" || rs[0].Auth != "real" {
		t.Errorf("tenant saw %+v", rs)
	}

	ft.Set(func(b *faketenant.Behavior) { b.UserStatus = http.StatusForbidden })
	_, err = copilot.FetchUser(context.Background(), ft.Client(), ft.URL(), copilot.NewToken(tok))
	var ae *copilot.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !ae.Refused() || ae.RequestID == "" {
		t.Fatalf("error %v, want a refused *APIError with the request id", err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Error("the error shows the token")
	}
}

// Concurrent callers share one exchange until refresh; a refusal is remembered for the run.
func TestExchanger(t *testing.T) {
	t.Parallel()
	ft := tenant(t)
	ex := copilot.NewExchanger(ft.Client(), ft.URL(), copilot.NewToken(tok), 10*time.Second)
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ct, err := ex.Token()
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = ct.Reveal()
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g == "" || g != got[0] || g == tok {
			t.Fatalf("tokens %q: want one Copilot token shared by all callers", got)
		}
	}
	if n := count(ft, copilot.ExchangePath); n != 1 {
		t.Errorf("%d exchanges for 8 callers, want 1", n)
	}
	if last := ex.Last(); last.RefreshIn <= 0 || last.ExpiresAt.IsZero() || last.Endpoints.API == "" {
		t.Errorf("last reply = %+v", last)
	}
	if s := ex.Last().Token.String(); s != "[REDACTED]" {
		t.Errorf("Copilot token prints as %q", s)
	}

	ft2 := tenant(t)
	ft2.Set(func(b *faketenant.Behavior) {
		b.ExchangeStatus, b.ExchangeMessage = http.StatusForbidden, "Resource not accessible by personal access token"
	})
	ex2 := copilot.NewExchanger(ft2.Client(), ft2.URL(), copilot.NewToken(tok), 10*time.Second)
	for range 3 {
		_, err := ex2.Token()
		var ae *copilot.APIError
		if !errors.As(err, &ae) || !ae.Refused() || ae.Message != "Resource not accessible by personal access token" {
			t.Fatalf("error %v, want the refusal with its message", err)
		}
	}
	if n := count(ft2, copilot.ExchangePath); n != 1 {
		t.Errorf("a refusal was asked %d times, want once", n)
	}
}
