#!/usr/bin/env bash
# Runs the fuzz targets and prints how many inputs each tried.
#   scripts/fuzz.sh            long run: FUZZTIME (default 5m) per target
#   scripts/fuzz.sh short      short run: FUZZTIME (default 10s) per target, as scripts/test.sh does
#   scripts/fuzz.sh long FuzzRoute FuzzDomain   only these targets
# A failing input is saved under the package's testdata/fuzz/<target>/ and fails the run; rerun it
# with: go test -run '<target>/<file>' ./<package>
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

mode=${1:-long}
shift || true
case "$mode" in
  short) : "${FUZZTIME:=10s}" ;;
  long) : "${FUZZTIME:=5m}" ;;
  *) die "usage: scripts/fuzz.sh [short|long] [TARGET...]" ;;
esac

all=(
  internal/platform:FuzzClassify          # server-URL classification
  internal/platform:FuzzDetect            # endpoint derivation from every input
  internal/allowlist:FuzzDomain           # domain validation
  internal/proxy:FuzzRoute                # request router: path → route → outbound URL
  internal/copilot:FuzzValidateEndpoint   # /copilot_internal/user endpoint validation
  internal/copilot:FuzzParseExchangeReply # token exchange reply parser
)
targets=()
for t in "${all[@]}"; do
  if [[ $# -eq 0 ]]; then targets+=("$t"); continue; fi
  for want in "$@"; do [[ ${t##*:} == "$want" ]] && targets+=("$t"); done
done
[[ ${#targets[@]} -gt 0 ]] || die "no fuzz target matches: $*"

log "fuzzing ${#targets[@]} targets, $FUZZTIME each ($mode)"
summary=()
failed=()
for t in "${targets[@]}"; do
  pkg=${t%%:*} fn=${t##*:}
  out=$(mktemp)
  start=$(date +%s)
  # -parallel 2: the machines this runs on have two cores.
  if ! go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" -parallel=2 "./$pkg" >"$out" 2>&1; then
    grep -v '^fuzz: elapsed' "$out" >&2
    rm -f "$out"
    line="$fn in $pkg FAILED: the input is saved under $pkg/testdata/fuzz/$fn; rerun 'go test -run=$fn ./$pkg'"
    echo "$line"
    summary+=("$line")
    failed+=("$fn")
    continue # the other targets still run
  fi
  execs=$(grep -o 'execs: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || true)
  corpus=$(grep -o 'total: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || true)
  rm -f "$out"
  line=$(printf '%-24s %-20s %12s execs  %6s corpus entries  %4ss' "$fn" "$pkg" "${execs:-?}" "${corpus:-?}" "$(( $(date +%s) - start ))")
  echo "$line"
  summary+=("$line")
done
log "fuzz summary ($mode, FUZZTIME=$FUZZTIME)"
printf '%s\n' "${summary[@]}"
[[ ${#failed[@]} -eq 0 ]] || die "fuzzing found failures in: ${failed[*]}"
