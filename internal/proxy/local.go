package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/copilot"
)

func (p *Proxy) serveLocal(st *reqState, r *http.Request) {
	switch r.URL.Path {
	case HealthPath:
		st.route = routeHealth
		writeJSON(st, http.StatusOK, map[string]string{"status": "ok"})
	case StatsPath:
		st.route = routeStats
		if !p.authorize(st, r) {
			return
		}
		writeJSON(st, http.StatusOK, p.Stats())
	default:
		st.route = routeLocalNotFound
		writeError(st, http.StatusNotFound, "no such copilot-route endpoint: use "+HealthPath+" or "+StatsPath, nil)
	}
}

// serveExchange answers /copilot_internal/v2/token itself: the client gets the shim token, which
// only this proxy accepts, and the proxy's own URL as endpoints.api. Upstream, requests made with
// the shim token carry the exchanged Copilot token when the platform grants one, else the GitHub
// token.
func (p *Proxy) serveExchange(st *reqState, r *http.Request) {
	_, err := p.exchanger.Token()
	p.stats.setExchange(func(e *ExchangeStats) {
		e.Requests++
		var ae *copilot.APIError
		switch {
		case err == nil:
			e.State, e.UpstreamStatus, e.Message = "ok", http.StatusOK, ""
		case errors.As(err, &ae) && ae.Refused():
			e.State, e.UpstreamStatus, e.Message = "refused", ae.Status, ae.Message
		case errors.As(err, &ae):
			e.State, e.UpstreamStatus, e.Message = "error", ae.Status, ae.Message
		default:
			e.State, e.UpstreamStatus, e.Message = "error", 0, netErrText(err)
		}
	})
	if err != nil {
		p.log.Warn("token exchange not available; the GitHub token is used directly upstream",
			slog.String("error", err.Error()))
	}
	// endpoints.api is where this client reached the proxy (its Host header: an agent container
	// reaches it by another name than 127.0.0.1), else the proxy's own URL.
	api := p.PublicURL()
	if h := r.Host; h != "" && !strings.ContainsAny(h, "/@\\ ?#%") {
		if _, _, err := net.SplitHostPort(h); err == nil || net.ParseIP(strings.Trim(h, "[]")) != nil || !strings.Contains(h, ":") {
			api = "http://" + h
		}
	}
	now := p.now()
	writeJSON(st, http.StatusOK, map[string]any{
		"token":        p.shimToken,
		"expires_at":   now.Add(30 * time.Minute).Unix(),
		"refresh_in":   1500,
		"chat_enabled": true,
		"sku":          "copilot-route",
		"endpoints":    map[string]string{"api": api},
	})
}
