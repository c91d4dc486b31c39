package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ControlHandler answers the proxy's own figures and nothing else: GET HealthPath and GET
// StatsPath, with no client token. It is for a listener that only the proxy's user can reach
// (serve --control-socket: a 0600 unix socket in a 0700 directory), whose permissions are the
// guard, and that the agent's connections to the TCP listener cannot starve: stop reads its
// figures there. Nothing it is asked goes upstream, and its requests are not counted as traffic.
func (p *Proxy) ControlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != HealthPath && r.URL.Path != StatsPath {
			writeError(w, http.StatusNotFound, "no such control endpoint: use GET "+HealthPath+" or GET "+StatsPath, nil)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, http.StatusMethodNotAllowed, "the control socket answers GET only", nil)
			return
		}
		if r.URL.Path == HealthPath {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			return
		}
		writeJSON(w, http.StatusOK, p.Stats())
	})
}

// ServeControl answers ControlHandler on ln until ctx ends, then closes it. End it after Serve
// has returned, so the figures stay readable while open requests finish.
func (p *Proxy) ServeControl(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           p.ControlHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve the control socket %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	srv.Close()
	<-errc // http.ErrServerClosed
	return nil
}
