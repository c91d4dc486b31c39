package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns caps the client connections open at once. 1,000 concurrent streams (the soak
// and benchmark load) fit with room to spare; an agent that opens tens of thousands of idle
// connections no longer runs the process out of file descriptors.
const DefaultMaxConns = 4096

// maxResponseHeaderBytes bounds an upstream reply's headers (net/http's default is 10 MiB).
const maxResponseHeaderBytes = 1 << 20

// Server returns the http.Server the proxy runs in: a header timeout against slow clients, an
// idle timeout, and no write timeout (a stream may run for minutes).
func (p *Proxy) Server() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// "OPTIONS *" reaches the handler, which refuses it like any other non-origin-form target.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
}

// Serve answers on ln until ctx ends, then stops accepting, lets open requests (streams) finish
// for up to ShutdownGrace, cuts what is left and returns nil. An error means the listener failed.
// At most MaxConns client connections are open at once.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	if p.PublicURL() == "" {
		p.SetPublicURL(ListenURL(ln.Addr()))
	}
	srv := p.Server()
	capped := newConnCap(ln, p.cfg.MaxConns, p.log, p.stats)
	srv.ConnState = capped.track
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(capped) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	p.log.Info("shutting down: no new connections; open requests get up to the grace period",
		slog.Duration("grace", p.cfg.ShutdownGrace))
	sctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		p.log.Warn("grace period over: cutting the requests still open", slog.String("error", err.Error()))
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	for _, up := range []*upstream{p.rest, p.copilot} {
		up.transport.CloseIdleConnections()
		up.plain.CloseIdleConnections()
		up.own.CloseIdleConnections()
	}
	st := p.Stats()
	p.log.Info("stopped", slog.Int64("requests", st.Requests), slog.Int64("bytes_out", st.BytesOut))
	return nil
}

// ListenURL is the http URL for a listening address; an unspecified address (0.0.0.0, ::) is
// given as loopback, which reaches it from the same host.
func ListenURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// connCap is the listener with the connection cap. A connection counts from Accept to its Close.
// At the cap, a new connection takes the place of the connection idle longest: a keep-alive
// connection between requests, or one that has sent no request for newGrace (an honest client
// sends its request as soon as it connects; one just accepted must not be closed before the
// server has read it). When no connection is idle, the new one is closed at once. Either way a
// warning is logged, at most every 10 s, and counted in the stats.
type connCap struct {
	net.Listener
	max   int
	log   *slog.Logger
	stats *collector

	mu      sync.Mutex
	open    int
	idle    map[*cappedConn]idleSince // connections between requests, and since when
	lastLog time.Time
	evicted int64 // since the last log line
	dropped int64
}

// newGrace is how long a connection that has sent no request yet is safe from eviction.
const newGrace = time.Second

type idleSince struct {
	at    time.Time
	fresh bool // accepted, no request read yet (http.StateNew)
}

func newConnCap(ln net.Listener, max int, log *slog.Logger, stats *collector) *connCap {
	return &connCap{Listener: ln, max: max, log: log, stats: stats, idle: map[*cappedConn]idleSince{}}
}

func (l *connCap) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return &cappedConn{Conn: c, l: l}, nil
		}
		var victim *cappedConn
		var since time.Time
		now := time.Now()
		for vc, t := range l.idle {
			if t.fresh && now.Sub(t.at) < newGrace {
				continue
			}
			if victim == nil || t.at.Before(since) {
				victim, since = vc, t.at
			}
		}
		if victim != nil {
			delete(l.idle, victim)
			l.evicted++
		} else {
			l.dropped++
		}
		l.noteCapLocked()
		l.mu.Unlock()
		l.stats.connCapHits.Add(1)
		if victim == nil {
			c.Close()
			continue
		}
		// The victim's Close gives its slot back; the new connection takes it.
		victim.Close()
		l.mu.Lock()
		l.open++
		l.mu.Unlock()
		return &cappedConn{Conn: c, l: l}, nil
	}
}

// noteCapLocked logs the cap at most every 10 s, with what happened since the last line.
func (l *connCap) noteCapLocked() {
	now := time.Now()
	if now.Sub(l.lastLog) < 10*time.Second {
		return
	}
	l.log.Warn("connection cap reached: a client holds too many connections open; closed the longest-idle ones for new ones, "+
		"and refused new ones while all were busy (raise serve --max-conns if this is a real load)",
		slog.Int("max_conns", l.max), slog.Int64("idle_closed", l.evicted), slog.Int64("refused", l.dropped))
	l.lastLog, l.evicted, l.dropped = now, 0, 0
}

// track follows the server's view of each connection: idle ones may be evicted at the cap.
func (l *connCap) track(c net.Conn, s http.ConnState) {
	cc, ok := c.(*cappedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	switch s {
	case http.StateNew, http.StateIdle:
		if !cc.closed.Load() {
			l.idle[cc] = idleSince{at: time.Now(), fresh: s == http.StateNew}
		}
	default:
		delete(l.idle, cc)
	}
	l.mu.Unlock()
}

type cappedConn struct {
	net.Conn
	l      *connCap
	closed atomic.Bool
}

// CloseWrite keeps net/http's lingering close (half-close, then drain) working through the wrapper:
// a client sent 413 with a body still coming reads the reply instead of a reset.
func (c *cappedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *cappedConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.open--
	delete(c.l.idle, c)
	c.l.mu.Unlock()
	return err
}
