#!/usr/bin/env bash
# Measures copilot-route against the direct path, on loopback, in one run (docs/performance.md):
# A, a client talking TLS with keep-alive straight to a lean upstream; B, the same client talking
# plain HTTP with the client token to `copilot-route serve`, which talks TLS to that upstream.
# Alternating A and B, medians of 3. Prints a table and writes bench-results.json (git-ignored).
#
#   scripts/bench.sh                 full run (about 3 minutes)
#   BENCH_QUICK=1 scripts/bench.sh   smoke run (under a minute; figures indicative only)
#   BENCH_PROFILE=DIR scripts/bench.sh   the proxy in-process, with pprof profiles written to DIR
#   BENCH_GOVERNED=1 scripts/bench.sh    the proxy with a model policy and every budget set (issue 17)
#   BENCH_OUT=FILE, BENCH_REPS=N, BENCH_DURATION=10s   override the output file and run lengths
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

need_apt wrk wrk

log "build copilot-route and the benchmark harness"
binary=$(build_binary)
go build -o "$TOOLS/bin/copilot-route-bench" ./tools/bench || die "go build ./tools/bench failed"

args=(-binary "$binary" -wrk "$(command -v wrk)" -out "${BENCH_OUT:-$ROOT/bench-results.json}")
[[ -n "${BENCH_QUICK:-}" && "${BENCH_QUICK}" != 0 ]] && args+=(-quick)
[[ -n "${BENCH_REPS:-}" ]] && args+=(-reps "$BENCH_REPS")
[[ -n "${BENCH_DURATION:-}" ]] && args+=(-duration "$BENCH_DURATION")
[[ -n "${BENCH_PROFILE:-}" ]] && args+=(-profile "$BENCH_PROFILE")
[[ -n "${BENCH_GOVERNED:-}" && "${BENCH_GOVERNED}" != 0 ]] && args+=(-governed)

log "benchmark (load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs)"
"$TOOLS/bin/copilot-route-bench" "${args[@]}" || die "the benchmark failed (see the messages above)"

# The proxy's own per-request work (auth, route, header rewrite, stats, log line) and the whole
# request in one process, with allocations.
benchtime=1s
[[ -n "${BENCH_QUICK:-}" && "${BENCH_QUICK}" != 0 ]] && benchtime=2000x
log "microbenchmarks: go test -run '^\$' -bench 'HotPath|Models' -benchmem -benchtime $benchtime ./internal/proxy"
go test -run '^$' -bench 'HotPath|Models' -benchmem -benchtime "$benchtime" ./internal/proxy ||
  die "the proxy microbenchmarks failed"
