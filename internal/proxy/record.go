package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// reqState is one request's bookkeeping. It wraps the client's ResponseWriter (to count bytes and
// see the status) and travels to the transport in the request context.
type reqState struct {
	rw          http.ResponseWriter
	start       time.Time
	headerAt    time.Time
	status      int
	bytesOut    int64
	bytesIn     atomic.Int64 // the transport may read the body on its own goroutine
	route       route
	up          *upstream
	path        string       // the canonical path the policy allowed: what the upstream receives
	shim        bool         // authenticated with the exchange shim's token
	scheme      atomic.Int32 // scheme of the reply that reached the client
	retried     atomic.Bool
	tooLarge    atomic.Bool
	badBody     atomic.Bool
	errKind     string
	refusal     string
	wroteHeader bool
	// inf is an admitted inference request's accounting (govern.go); nil for other routes.
	inf   *inference
	uc    *usageCollector
	model string // the model a governance refusal named, for the log line
}

func (s *reqState) Header() http.Header { return s.rw.Header() }

func (s *reqState) WriteHeader(code int) {
	if s.wroteHeader {
		return
	}
	if code >= 200 {
		s.wroteHeader = true
		s.status = code
		s.headerAt = time.Now()
		if s.inf != nil {
			s.inf.onHeader(code, s.rw.Header(), s.uc)
		}
	}
	s.rw.WriteHeader(code)
}

func (s *reqState) Write(b []byte) (int, error) {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.rw.Write(b)
	s.bytesOut += int64(n)
	if s.inf != nil {
		s.inf.feed(b[:n]) // after the write: the client's bytes are not held for it
	}
	return n, err
}

func (s *reqState) Flush() {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	if f, ok := s.rw.(http.Flusher); ok {
		f.Flush()
	}
	if s.inf != nil {
		s.inf.drain() // decode a usage event once its bytes are on their way
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *reqState) Unwrap() http.ResponseWriter { return s.rw }

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// countingBody counts request body bytes as the transport reads them and notes an oversize body.
type countingBody struct {
	st    *reqState
	rc    io.ReadCloser
	sniff *modelSniffer // an inference body not read whole: its model, for the usage report
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.st.bytesIn.Add(int64(n))
	if b.sniff != nil {
		b.sniff.feed(p[:n])
	}
	if err != nil && err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			b.st.tooLarge.Store(true)
		} else {
			b.st.badBody.Store(true) // the client's framing broke (bad chunk), not the upstream
		}
	}
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

// finish records the request's figures and its log line. ReverseProxy aborts a stream whose
// upstream fails mid-way with panic(http.ErrAbortHandler); the panic is passed on so the server
// cuts the connection and the client sees a truncated stream, not a clean end.
func (p *Proxy) finish(st *reqState, r *http.Request) {
	v := recover()
	if v != nil && v == http.ErrAbortHandler && st.errKind == "" {
		if r.Context().Err() != nil {
			st.errKind = "client-gone"
		} else if st.up != nil {
			st.errKind = "mid-stream"
			p.stats.upstreamError(st.up.host, st.errKind, hintFor(st.errKind, st.up.host))
		}
	}
	// A proxied reply of known length may still have its tail in net/http's buffers, which the
	// server writes only once the handler returns: send it now, so that the stats and the log
	// line below are not on the client's clock. (A reply without Content-Length is a stream,
	// flushed at every write; a local reply keeps net/http's automatic Content-Length.)
	if v == nil && st.up != nil && st.wroteHeader && st.rw.Header()["Content-Length"] != nil {
		if f, ok := st.rw.(http.Flusher); ok {
			f.Flush()
		}
	}
	end := time.Now()
	status := st.status
	if status == 0 && r.Context().Err() != nil {
		status = 499 // the client went away before any reply: nginx's code for it
		st.errKind = "client-gone"
	}
	if st.inf != nil {
		p.settle(st)
	}
	p.stats.requests.Add(1)
	p.stats.countStatus(st.route, status)
	p.stats.bytesIn.Add(st.bytesIn.Load())
	p.stats.bytesOut.Add(st.bytesOut)
	// Latency figures describe proxied requests only: health polls, refusals and 401s answered
	// locally in microseconds would hide what the upstreams cost.
	if st.up != nil {
		if !st.headerAt.IsZero() {
			p.stats.latency.record(st.headerAt.Sub(st.start))
		}
		p.stats.duration.record(end.Sub(st.start))
	}

	logPath := cutString(r.URL.Path, 256)
	if st.refusal == "token-in-url" {
		logPath = redactedText
	}
	upHost, scheme := "", ""
	if st.up != nil {
		upHost, scheme = st.up.host, schemeName(st.scheme.Load())
	}
	attrs := [...]slog.Attr{
		slog.String("route", routeNames[st.route]),
		slog.String("method", r.Method),
		slog.String("path", logPath),
		slog.Int("status", status),
		slog.String("upstream", upHost),
		slog.Float64("duration_ms", float64(end.Sub(st.start).Microseconds())/1000),
		slog.Int64("bytes_in", st.bytesIn.Load()),
		slog.Int64("bytes_out", st.bytesOut),
		slog.String("scheme", scheme),
		slog.Bool("retry", st.retried.Load()),
		slog.String("error", st.errKind),
		slog.String("refused", st.refusal),
	}
	model := st.model
	if st.inf != nil {
		model = st.inf.modelName()
	}
	if model != "" {
		p.log.LogAttrs(context.Background(), slog.LevelInfo, "request", append(attrs[:], slog.String("model", cutString(model, 100)))...)
	} else {
		p.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:]...)
	}
	if v != nil {
		panic(v)
	}
}
