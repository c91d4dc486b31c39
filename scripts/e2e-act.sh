#!/usr/bin/env bash
# End-to-end tests of the action under a real runner implementation: nektos/act (pinned) in host
# mode runs the workflows in testdata/workflows/ against `copilot-route fake-tenant` posing as
# acme.ghe.com.
#
# Everything after the builds runs in a sandbox: new network, mount and PID namespaces with only
# loopback, where a private /etc/hosts makes acme.ghe.com and its API hosts resolve to 127.0.0.1
# and the fake tenant serves TLS on port 443 with its own CA. So the action runs with nothing but
# `server-url: https://acme.ghe.com`, a token and the CA, exactly as on a real tenant; act pulls no
# image and clones no action (only `uses: ./` and `./stop`); and when the sandbox's first process
# exits, the kernel ends every process left in it.
#
# It proves: outputs consumed by later steps (the allowlist, a streamed request through proxy-url
# with client-token), the proxy alive two steps later and stopped by ./stop, the job summary (the
# steps' summaries, as act reports them) holding the detection and traffic sections, no token in
# any line of act's output, a bad input failing the job with an annotation and no outputs; and it
# measures the detect step and start-to-ready as whole processes. Needs root (namespaces).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if [[ "${1:-}" != --inner ]]; then
  [[ $(id -u) == 0 ]] || die "e2e-act.sh needs root for its network namespace sandbox (unshare)"
  need_act
  need_apt ip iproute2
  command -v unshare >/dev/null || need_apt unshare util-linux
  command -v curl >/dev/null || need_apt curl curl
  work=$(mktemp -d)
  if [[ -n "${E2E_KEEP:-}" ]]; then echo "e2e-act: keeping $work" >&2; else trap 'rm -rf "$work"' EXIT; fi
  mkdir -p "$work/bin" "$work/src" "$work/out" "$work/home"
  # Build everything before the sandbox (no module downloads inside it).
  go build -o "$work/bin/copilot-route" ./cmd/copilot-route || die "go build failed"
  go build -o "$work/bin/actlog" ./scripts/internal/actlog || die "go build actlog failed"
  act_checkout "$work/src"
  unshare --net --mount --pid --fork --mount-proc -- bash "$0" --inner "$work"
  exit $?
fi

# ---- inside the sandbox ----
work=$2
export PATH="$work/bin:$PATH"
ip link set lo up || die "could not bring up loopback in the sandbox"
{ echo "127.0.0.1 localhost"; echo "::1 localhost"
  echo "127.0.0.1 acme.ghe.com api.acme.ghe.com copilot-api.acme.ghe.com copilot-telemetry-service.acme.ghe.com"; } >"$work/hosts"
mount --bind "$work/hosts" /etc/hosts || die "could not bind-mount a private /etc/hosts"

fake_pid=""
trap '[[ -n "$fake_pid" ]] && kill "$fake_pid" 2>/dev/null' EXIT

# The tenant's token: random, never written anywhere but the 0600 secret file act reads.
token="gho_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 36)"
[[ ${#token} -eq 40 ]] || die "could not make a random token"
FAKE_TENANT_TOKEN=$token setsid copilot-route fake-tenant --listen 127.0.0.1:443 --host acme.ghe.com \
  --token-env FAKE_TENANT_TOKEN --ca-out "$work/ca.pem" --ready-file "$work/fake.json" </dev/null >"$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 200); do [[ -s "$work/fake.json" ]] && break; sleep 0.05; done
[[ -s "$work/fake.json" ]] || die "the fake tenant did not start: $(cat "$work/fake.log")"
curl -sS --cacert "$work/ca.pem" https://api.acme.ghe.com/meta >/dev/null ||
  die "https://api.acme.ghe.com/meta does not answer inside the sandbox"
log "sandbox: acme.ghe.com, api.acme.ghe.com and copilot-api.acme.ghe.com are the fake tenant on 127.0.0.1:443"
(umask 077 && printf 'COPILOT_TOKEN=%s\n' "$token" >"$work/secrets")

run_act() { # run_act WORKFLOW LOGFILE: act's whole output (JSON lines) goes to LOGFILE
  HOME="$work/home" timeout 300 act push -C "$work/src" -W "$ROOT/testdata/workflows/$1" "${ACT_HOST_FLAGS[@]}" \
    --action-cache-path "$work/act-cache" --secret-file "$work/secrets" \
    --env "E2E_SRC=$work/src" --env "E2E_OUT=$work/out" --env "FAKE_CA=$work/ca.pem" \
    >"$2" 2>&1
}
fail_with_log() { echo "---- act output ($1), last lines ----" >&2; actlog text "$1" | grep -v 'unable to get git' | tail -80 >&2; die "$2"; }
scan_tokens() { # scan_tokens LOGFILE TOKEN [CLIENT_TOKEN]: neither in any line act printed
  ACTLOG_SECRETS=$2 ACTLOG_OUTPUT_SECRETS=${3:-} actlog scan "$1" >"$work/leaks" ||
    { head -5 "$work/leaks" >&2; die "a token appears in act's output of $1 (lines above, token replaced)"; }
}

log "act: e2e-route.yml (detect, start, a streamed request, the proxy two steps later, stop)"
run_act e2e-route.yml "$work/route.log" || fail_with_log "$work/route.log" "the e2e-route workflow failed under act"
[[ -f "$work/out/stopped" ]] || fail_with_log "$work/route.log" "the workflow did not reach its last step"
reply=$(grep -o '"content":"[^"]*"' "$work/out/stream.txt" | sed 's/^"content":"//; s/"$//' | tr -d '\n')
[[ "$reply" == "Hello from the simulated acme tenant." ]] ||
  die "the streamed reply through the proxy is '$reply': $(head -c 300 "$work/out/stream.txt")"
grep -q '^data: \[DONE\]' "$work/out/stream.txt" || die "the stream did not end with [DONE]"
grep -q 'copilot-api.acme.ghe.com' "$work/out/allowed-domains" || die "allowed-domains: $(cat "$work/out/allowed-domains")"
pid=$(cat "$work/out/alive-pid")
state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1 || true)
[[ -z "$state" || "$state" == Z ]] || die "the proxy (pid $pid) survived the job (state $state)"
client=$(sed -n 's/.*"client_token": *"\([^"]*\)".*/\1/p' "$work/out/proxy.json")
[[ "$client" =~ ^ghs_[A-Za-z0-9]{36}$ ]] || die "no client token recorded"
actlog text "$work/route.log" >"$work/route.txt"
grep -q 'using the release binary' "$work/route.txt" || die "the resolve step did not use the checksummed dist binary"

actlog summary "$work/route.log" >"$work/route-summary.md"
for want in '## copilot-route: platform detection' '## ✅ copilot-route: ready' '## ✅ copilot-route: traffic'; do
  [[ $(grep -cxF "$want" "$work/route-summary.md") == 1 ]] || die "the job summary does not hold '$want' exactly once:
$(cat "$work/route-summary.md")"
done
grep -qF '| `/chat/completions` | 1 |' "$work/route-summary.md" || die "the traffic section does not count the one chat request"
grep -qF '**Proxy:** the agent reaches Copilot at `http://127.0.0.1:' "$work/route-summary.md" || die "the start step's proxy line is missing"
# A healthy tenant: no step of the action may warn or fail.
if grep -E '::(warning|error)' "$work/route.txt" >&2; then die "the healthy run produced the annotations above"; fi
scan_tokens "$work/route.log" "$token" "$client"
ready_ms=$(sed -n 's/.*proxy ready at .* in \([0-9.]*\) ms.*/\1/p' "$work/route.txt" | head -1)
log "e2e-route passed (start-to-ready inside act: ${ready_ms:-?} ms)"

log "act: e2e-bad-input.yml (server-url https://ghe.com must fail the job)"
if run_act e2e-bad-input.yml "$work/bad.log"; then
  fail_with_log "$work/bad.log" "the bad-input workflow succeeded; it must fail"
fi
[[ "$(cat "$work/out/bad-outcome" 2>/dev/null)" == failure ]] || fail_with_log "$work/bad.log" "the route step's outcome is not failure"
actlog text "$work/bad.log" >"$work/bad.txt"
grep -Eq '::error title=copilot-route(:|%3A) bad input server-url::input server-url' "$work/bad.txt" ||
  fail_with_log "$work/bad.log" "no error annotation naming the input server-url"
# A composite action always lists its outputs; after a failed detect every value must be empty.
outs=$(tr -d ' \n' <"$work/out/bad-outputs.json")
[[ "$outs" == "{"*"}" ]] || die "no outputs recorded: $outs"
grep -q '":"[^"]' <<<"$outs" && die "the failed route step left outputs with values: $outs"
scan_tokens "$work/bad.log" "$token"
log "e2e-bad-input passed"

log "act: e2e-detect-only.yml (start-proxy: false, no token: allowlist only, nothing to stop)"
run_act e2e-detect-only.yml "$work/detect-only.log" || fail_with_log "$work/detect-only.log" "the detect-only workflow failed"
[[ -f "$work/out/detect-only" ]] || fail_with_log "$work/detect-only.log" "the detect-only workflow did not reach its check"
actlog text "$work/detect-only.log" >"$work/detect-only.txt"
grep -q 'no proxy was started in this job; nothing to stop' "$work/detect-only.txt" || die "./stop did not say there was nothing to stop"
log "e2e-detect-only passed"

log "act: e2e-gh-aw-step.yml (the step in a gh-aw workflow's frontmatter: diagnose and check-lock, no proxy)"
run_act e2e-gh-aw-step.yml "$work/gh-aw.log" || fail_with_log "$work/gh-aw.log" "the gh-aw step workflow failed"
[[ "$(cat "$work/out/gh-aw-step" 2>/dev/null)" == "fits findings failure proxy=" ]] ||
  fail_with_log "$work/gh-aw.log" "verdicts, outcome and proxy-url are '$(cat "$work/out/gh-aw-step" 2>/dev/null)', want 'fits findings failure proxy='"
actlog summary "$work/gh-aw.log" >"$work/gh-aw-summary.md"
for want in '## ✅ copilot-route: check-lock `examples/gh-aw/ghe-com-tenant.lock.yml` — fits' \
            '## ❌ copilot-route: check-lock `examples/gh-aw/ghes-github-com.lock.yml` — 1 finding'; do
  grep -qxF "$want" "$work/gh-aw-summary.md" || die "the job summary does not hold '$want':
$(cat "$work/gh-aw-summary.md")"
done
grep -qF '| Live probe | GET https://copilot-api.acme.ghe.com/models answered 200 with `token`' "$work/gh-aw-summary.md" ||
  die "the tenant lock's live probe line is missing from the summary"
grep -qF '## ✅ copilot-route: ready' "$work/gh-aw-summary.md" || die "diagnose's section is missing from the summary"
actlog text "$work/gh-aw.log" >"$work/gh-aw.txt"
grep -Eq '::error title=copilot-route check-lock(:|%3A) api-target::' "$work/gh-aw.txt" ||
  die "no error annotation for the GHES lock's api-target on a tenant"
scan_tokens "$work/gh-aw.log" "$token"
log "e2e-gh-aw-step passed"

# Speed: the detect step and start-to-ready, each as a whole process (what a step costs).
m="$work/measure"
mkdir -p "$m/rt"
: >"$m/out"; : >"$m/sum"; : >"$m/env"
export RUNNER_TEMP="$m/rt" GITHUB_OUTPUT="$m/out" GITHUB_STEP_SUMMARY="$m/sum" GITHUB_ENV="$m/env"
export INPUT_SERVER_URL=https://acme.ghe.com INPUT_CA_FILE="$work/ca.pem" INPUT_GITHUB_TOKEN=$token
detect_us=() start_us=()
for _ in $(seq 11); do
  t0=$(date +%s%N); copilot-route detect --format none >/dev/null || die "detect failed while measuring"; t1=$(date +%s%N)
  detect_us+=($(( (t1 - t0) / 1000 )))
done
for _ in $(seq 5); do
  t0=$(date +%s%N); copilot-route start >/dev/null 2>&1 || die "start failed while measuring"; t1=$(date +%s%N)
  start_us+=($(( (t1 - t0) / 1000 )))
  copilot-route stop >/dev/null 2>&1
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
size=$(stat -c %s "$work/src/dist/copilot-route-linux-$(go env GOARCH)")
log "measured: detect step $(median "${detect_us[@]}") µs (median of 11 whole processes); start to ready $(median "${start_us[@]}") µs (median of 5, whole process: spawn serve, its /copilot_internal/user discovery, health check); release binary $((size / 1024)) KiB"
log "e2e-act: all passed"
