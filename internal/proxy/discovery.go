package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
	"github.com/copilot-route/copilot-route/internal/platform"
)

// discover runs the start-up /copilot_internal/user look-up and adopts a validated endpoints.api.
func (p *Proxy) discover(ctx context.Context) {
	kind := p.cfg.Token.Kind()
	switch {
	case p.cfg.ExplicitTarget:
		p.stats.setDiscovery(DiscoveryStats{State: "skipped", Reason: "copilot-api-target given"})
		return
	case !kind.CanDiscover():
		p.stats.setDiscovery(DiscoveryStats{State: "skipped",
			Reason: fmt.Sprintf("a %s token cannot look up /copilot_internal/user", kind)})
		p.log.Info("discovery skipped", slog.String("token_kind", string(kind)))
		return
	}
	fallback := func(state, advertised, reason string) {
		p.stats.setDiscovery(DiscoveryStats{State: state, Advertised: advertised, Reason: reason})
		p.log.Warn("discovery not used; using the derived Copilot API",
			slog.String("state", state), slog.String("advertised", advertised),
			slog.String("reason", reason), slog.String("copilot_api", p.copilot.target.String()))
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	u, err := copilot.FetchUser(lctx, p.credClient(p.rest), p.rest.target.String(), p.cfg.Token)
	if err != nil {
		fallback("failed", "", err.Error())
		return
	}
	if u.Endpoints.API == "" {
		fallback("absent", "", "the reply names no endpoints.api")
		return
	}
	advertised := cutString(u.Endpoints.API, 200)
	tenant := ""
	if p.cfg.Endpoints.CopilotPlatform == platform.GHECom {
		tenant = p.cfg.Endpoints.CopilotHost
	}
	api, err := copilot.ValidateEndpoint(u.Endpoints.API, tenant)
	if err != nil {
		fallback("rejected", advertised, err.Error())
		return
	}
	target, _ := url.Parse(api) // ValidateEndpoint returns a well-formed https origin
	if err := p.probe(lctx, target); err != nil {
		fallback("rejected", advertised, err.Error())
		return
	}
	p.copilot.target = target
	p.copilot.host = target.Hostname()
	p.copilot.source = "discovered"
	p.stats.setDiscovery(DiscoveryStats{State: "used", Advertised: advertised})
	p.log.Info("discovery: using the advertised Copilot API", slog.String("copilot_api", api))
}

// probe checks that a discovered host connects before it replaces the derived one: a name that
// does not resolve, or that the runner cannot reach, must not break the whole job.
func (p *Proxy) probe(ctx context.Context, target *url.URL) error {
	addr := net.JoinHostPort(target.Hostname(), "443")
	if p.cfg.Proxy != nil {
		if pu, err := p.cfg.Proxy(&http.Request{URL: target}); err == nil && pu != nil {
			return nil // reached through the outbound proxy: it resolves the name, not us
		}
	}
	dial := p.rest.transport.DialContext
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s does not connect: %s", target.Hostname(), netErrText(err))
	}
	conn.Close()
	return nil
}
