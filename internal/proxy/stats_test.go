package proxy

import (
	"encoding/json"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	p := h.percentiles()
	if p.Count != 100 || p.Max != 100 {
		t.Fatalf("count/max = %d/%v, want 100/100", p.Count, p.Max)
	}
	// Bucket upper bounds over-estimate by at most one bucket step (×1.5).
	check := func(name string, got, want float64) {
		if got < want || got > want*1.5 {
			t.Errorf("%s = %v, want in [%v, %v]", name, got, want, want*1.5)
		}
	}
	check("p50", p.P50, 50)
	check("p95", p.P95, 95)
	check("p99", p.P99, 99)
	if empty := newHistogram().percentiles(); empty != (Percentiles{}) {
		t.Errorf("empty histogram = %+v, want zeros", empty)
	}
}

func TestSnapshotShape(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newCollector(start)
	c.countStatus(routeChat, 200)
	c.countStatus(routeChat, 200)
	c.countStatus(routeModels, 401)
	c.countStatus(routeModels, 0)
	c.upstreamError("copilot-api.acme.ghe.com", "refused", "hint")
	c.upstreamError("copilot-api.acme.ghe.com", "refused", "hint")
	c.refusal("connect")
	s := c.snapshot(start.Add(2*time.Second), nil)
	want := []RouteCount{{"/chat/completions", 200, 2}, {"/models", 0, 1}, {"/models", 401, 1}}
	if len(s.Routes) != len(want) {
		t.Fatalf("routes = %+v, want %+v", s.Routes, want)
	}
	for i := range want {
		if s.Routes[i] != want[i] {
			t.Errorf("routes[%d] = %+v, want %+v", i, s.Routes[i], want[i])
		}
	}
	if len(s.UpstreamErrors) != 1 || s.UpstreamErrors[0].Count != 2 || s.Refused != 1 || s.UptimeSeconds != 2 {
		t.Errorf("snapshot = %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"started_at", "uptime_seconds", "requests", "routes", "bytes_in", "bytes_out",
		"latency_ms", "duration_ms", "upstream_errors", "auth_scheme_switches", "client_auth_failures",
		"refused", "refused_reasons", "exchange", "discovery", "upstreams"} {
		if _, ok := back[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, b)
		}
	}
}
