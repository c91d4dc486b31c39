#!/usr/bin/env bash
# Load and soak test of the proxy, on loopback only (internal/proxy TestSoak):
#   1. 1,000 concurrent streaming requests of 500 chunks each through the proxy; every byte the
#      upstream wrote is compared (SHA-256 per stream) with what the client read;
#   2. mixed traffic (completions streamed and not, models, user look-ups, embeddings, refusals,
#      401s, health) at 100 requests/s while the fake tenant is restarted periodically; prints the
#      error rate, RSS and goroutines over time and fails if they grow or errors occur away from a
#      restart.
#   scripts/soak.sh        CI mode: about a minute (35 s of mixed traffic, a restart every 10 s)
#   scripts/soak.sh full   10 minutes of mixed traffic, a restart every 30 s
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

mode=${1:-ci}
case "$mode" in
  ci) timeout=5m ;;
  full) timeout=20m ;;
  *) die "usage: scripts/soak.sh [ci|full]" ;;
esac
out=$(mktemp)
trap 'rm -f "$out"' EXIT
log "soak ($mode): go test -run '^TestSoak\$' ./internal/proxy -args -soak=$mode"
if ! go test -count=1 -v -timeout="$timeout" -run '^TestSoak$' ./internal/proxy -args -soak="$mode" >"$out" 2>&1; then
  grep -v '^=== ' "$out" >&2
  die "the soak failed ($mode): see above; rerun scripts/soak.sh $mode"
fi
grep -E '^SOAK|soak_test.go' "$out"
grep -q '^SOAK streams: ' "$out" || die "the soak did not run (no SOAK lines)"
