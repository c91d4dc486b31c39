// Package diagnosetest runs the diagnose probes against simulated tenants (internal/faketenant)
// in every situation the probes must explain. The diagnose tests assert on the reports; the
// summary tests render the same reports into golden files, so no golden is written by hand.
package diagnosetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/diagnose"
	"github.com/copilot-route/copilot-route/internal/faketenant"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// Tokens the scenarios use. They are shaped like real ones so the kind detection applies, and a
// test proves none of them appears in any report or rendering.
const (
	PATToken          = "github_pat_11AAAAAAA0FAKEfaketenantSECRETvalue_0123456789abcdefABCDEF"
	InstallationToken = "ghs_FAKEinstallationSECRET0123456789ab"
	ClassicToken      = "ghp_FAKEclassicSECRET0123456789abcdefgh"
	OtherToken        = "github_pat_11BBBBBBB0someoneELSEsecret_zyxwvutsrqponm"
)

// Scenario is one situation: the runner's inputs, the token, and the tenants it meets.
type Scenario struct {
	Name  string // file-name safe, e.g. "ghe-seed"
	About string
	Input platform.Input
	Token string
	// AuthScheme is the proxy's --auth-scheme ("" = auto).
	AuthScheme string
	// Timeout per request; 0 = diagnose.DefaultTimeout. Only the slow scenario waits it out, so it
	// is shorter there, yet long enough that a loaded machine does not time out the other probes.
	Timeout time.Duration
	// Setup starts the tenants and fills the dial table.
	Setup func(t testing.TB, w *World)
}

// World is the simulated network of one scenario: host name → tenant.
type World struct {
	Tenants map[string]*faketenant.Tenant // by the Host they pose as
	Dial    map[string]string             // host name → 127.0.0.1:PORT
	CAs     [][]byte
}

// Tenant starts a simulated tenant posing as host, accepting token, answering for every name in
// names (each must be host or one label under it, which its certificate covers).
func (w *World) Tenant(t testing.TB, host, token string, names ...string) *faketenant.Tenant {
	t.Helper()
	ft, err := faketenant.Start(faketenant.Options{Host: host, Token: token})
	if err != nil {
		t.Fatalf("start fake tenant %s: %v", host, err)
	}
	t.Cleanup(ft.Close)
	w.Tenants[host] = ft
	w.CAs = append(w.CAs, ft.CAPEM())
	addr := ft.URL()[len("https://"):]
	for _, n := range names {
		w.Dial[n] = addr
	}
	return ft
}

// ClosedPort is a loopback address where nothing listens: a tenant that cannot be reached.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Client trusts the world's CAs and dials its table; any other host fails as unresolvable, so a
// scenario can never reach the real service.
func (w *World) Client(t testing.TB) *http.Client {
	t.Helper()
	var pem []byte
	for _, c := range w.CAs {
		pem = append(pem, c...)
	}
	c, err := diagnose.NewClient(diagnose.ClientConfig{ExtraCAPEM: pem, DialContext: diagnose.StaticDialer(w.Dial)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Result is what running a scenario gives.
type Result struct {
	Endpoints platform.Endpoints
	Report    diagnose.Report
	World     *World
}

// Run sets up the scenario's world and probes it.
func (s Scenario) Run(t testing.TB) Result {
	t.Helper()
	ep, err := platform.Detect(s.Input)
	if err != nil {
		t.Fatalf("%s: detect: %v", s.Name, err)
	}
	w := &World{Tenants: map[string]*faketenant.Tenant{}, Dial: map[string]string{}}
	s.Setup(t, w)
	timeout := s.Timeout
	if timeout == 0 {
		// Far above diagnose.DefaultTimeout: a scenario that is not about slowness must not turn
		// into a timeout on a loaded CI machine running the race detector.
		timeout = 30 * time.Second
	}
	rep := diagnose.Run(context.Background(), diagnose.Config{
		Endpoints:  ep,
		Token:      newToken(s.Token),
		Client:     w.Client(t),
		Timeout:    timeout,
		AuthScheme: s.AuthScheme,
	})
	return Result{Endpoints: ep, Report: rep, World: w}
}

// modelCount matches the count in a models probe's meaning.
var modelCount = regexp.MustCompile(`\b\d+ models listed`)

// NormalModels is the model count golden files show: the size of the fake's catalogue is the
// fake's business, and a golden file should not change when a model is added to it.
const NormalModels = 6

// Normalize replaces what differs between runs (latencies, request ids, the fake's catalogue
// size) so a report can be compared with a golden file.
func Normalize(r diagnose.Report) diagnose.Report {
	out := r
	out.Probes = append([]diagnose.Probe(nil), r.Probes...)
	for i := range out.Probes {
		p := &out.Probes[i]
		if p.Method != "" && p.Verdict != diagnose.Skip {
			p.Latency = time.Duration(10*(i+1)) * time.Millisecond
		}
		if p.RequestID != "" {
			p.RequestID = "FAKE:0000:000000"
		}
		if p.Error != "" {
			p.Error = normalizeErr(p.Error)
		}
		if p.Models > 1 {
			p.Models = NormalModels
			p.Meaning = modelCount.ReplaceAllString(p.Meaning, fmt.Sprintf("%d models listed", NormalModels))
		}
	}
	return out
}

// normalizeErr drops the loopback port a transport error may name.
func normalizeErr(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		if i+10 <= len(s) && s[i:i+10] == "127.0.0.1:" {
			out = append(out, "127.0.0.1:PORT"...)
			i += 10
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			i--
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}
