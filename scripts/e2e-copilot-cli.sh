#!/usr/bin/env bash
# End-to-end test with the REAL Copilot CLI (npm @github/copilot, every version in lib.sh's
# COPILOT_CLI_VERSIONS: 1.0.102 and 1.0.83, the one gh-aw v0.89.10 pins):
#
#   copilot -p ... ──(client token ghs_…, COPILOT_API_URL=proxy)──► copilot-route serve
#                  ──(real token gho_…)──► copilot-route fake-tenant (TLS, acme.ghe.com)
#
# It runs in a private network namespace (unshare: only loopback exists, the tenant's names map to
# 127.0.0.1 in a private /etc/hosts), so nothing can leave the machine whatever the CLI tries, and
# the CLI runs under strace so any connection it attempts other than to the proxy fails the test.
# Checks: the CLI prints the tenant's reply and exits 0; the tenant saw only the real token; the
# tenant never saw the client token; the CLI never held or sent the real token; neither token
# appears in any file the run wrote. Set COPILOT_E2E_KEEP=1 to keep the work directory.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if [[ "${COPILOT_E2E_INNER:-}" != 1 ]]; then
  [[ $(id -u) == 0 ]] || die "the Copilot CLI end-to-end test needs root (unshare --net --mount); run it as root or in CI"
  need_apt unshare util-linux
  need_apt ip iproute2
  need_apt strace strace
  need_apt python3 python3
  BIN=$(build_binary)
  NODE_DIR=$(dirname "$(command -v node)") || die "node is needed to start the Copilot CLI's npm loader"
  # Every version in COPILOT_CLI_VERSIONS (lib.sh): the newest supported and the one gh-aw
  # v0.89.10 pins (1.0.83); COPILOT_E2E_VERSIONS picks others. Each runs with its own package
  # cache, so auto-update cannot swap one for another.
  read -r -a versions <<<"${COPILOT_E2E_VERSIONS:-${COPILOT_CLI_VERSIONS[*]}}"
  for v in "${versions[@]}"; do
    COPILOT=$(need_copilot_cli "$v")
    COPILOT_PKG_CACHE_HOME=$(copilot_pkg_cache "$v")
    export COPILOT_E2E_INNER=1 BIN COPILOT NODE_DIR COPILOT_PKG_CACHE_HOME COPILOT_E2E_VERSION=$v
    log "Copilot CLI end-to-end (real CLI $v → serve → fake tenant) in a private network namespace"
    unshare --net --mount --fork -- bash "$0" "$@" || die "the Copilot CLI $v end-to-end test failed"
  done
  exit 0
fi

# ---- inside the namespace ----
ip link set lo up || die "could not bring up loopback in the namespace"
ip -o addr show | grep -v ' lo ' | grep -q inet && die "the namespace has a non-loopback address; refusing to run"

WORK=$(mktemp -d /tmp/copilot-route-e2e.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $rc != 0 || -n "${COPILOT_E2E_KEEP:-}" ]]; then
    # The CLI unpacks itself (about 235 MB) into each HOME; keep the logs, not that.
    [[ -n "${COPILOT_E2E_KEEP:-}" ]] || rm -rf "$WORK"/*/*/home/.cache/copilot/pkg
    printf 'e2e work directory kept: %s\n' "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

printf '127.0.0.1 localhost acme.ghe.com api.acme.ghe.com copilot-api.acme.ghe.com\n::1 localhost\n' >"$WORK/hosts"

# --disable-client-telemetry exists in 1.0.102; 1.0.83 exits on it as an unknown option. Ask the
# CLI itself (its --help, with a throw-away HOME) rather than keep a version table.
TELEMETRY_FLAG=()
mkdir -p "$WORK/help-home"
if env -i PATH="$NODE_DIR:/usr/bin:/bin" HOME="$WORK/help-home" COPILOT_PKG_CACHE_HOME="$COPILOT_PKG_CACHE_HOME" \
     timeout 60 "$COPILOT" --help 2>/dev/null | grep -q -- '--disable-client-telemetry'; then
  TELEMETRY_FLAG=(--disable-client-telemetry)
fi
rm -rf "$WORK/help-home"
mount --bind "$WORK/hosts" /etc/hosts || die "could not bind-mount a private /etc/hosts"

# rand N: N random alphanumerics (no pipe is cut short, which pipefail would report as SIGPIPE).
rand() {
  local s=""
  while ((${#s} < $1)); do s+=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'); done
  printf '%s' "${s:0:$1}"
}
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# wait_ready FILE PID NAME: until FILE exists (the process wrote its ready line), or fail.
wait_ready() {
  for _ in $(seq 200); do
    [[ -s $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || { cat "$W"/*.err >&2; die "$3 exited before it was ready"; }
    sleep 0.05
  done
  die "$3 was not ready within 10s"
}

# fail DIR MESSAGE: show what the run in DIR saw, then die.
fail() {
  printf -- '--- CLI stdout\n' >&2; cat "$1/cli.out" >&2 2>/dev/null || true
  printf -- '--- CLI stderr\n' >&2; tail -30 "$1/cli.err" >&2 2>/dev/null || true
  printf -- '--- tenant requests\n' >&2; cat "$W/fake-requests.jsonl" >&2 || true
  printf -- '--- serve log\n' >&2; tail -30 "$W/serve.log" >&2 || true
  die "[${COPILOT_E2E_VERSION:-?} $mode] $2"
}

# check_connects DIR PORT: the CLI connected only to the proxy, only on loopback (strace saw
# every connect(2) of the CLI and its children).
check_connects() {
  local others
  others=$(grep -E 'connect\(' "$1/connects.txt" | grep -E 'AF_INET6?' |
    grep -vE "sin6?_port=htons\($2\), (sin_addr=inet_addr\(\"127\.0\.0\.1\"\)|inet_pton\(AF_INET6, \"::1\")" || true)
  [[ -z $others ]] || fail "$1" "the CLI connected somewhere other than the proxy: $others"
  grep -qE "htons\($2\)" "$1/connects.txt" || fail "$1" "strace saw no connection from the CLI to the proxy"
}

# scenario MODE SCHEME MODEL...: the CLI once per MODEL ("" = its default) through a fresh proxy
# to a fresh tenant in --mode MODE; SCHEME is the Authorization scheme the tenant must see on a
# completion.
scenario() {
  mode=$1
  local want_scheme=$2
  shift 2
  local models=("$@") want_paths=()
  for m in "${models[@]}"; do
    case $m in
      "") want_paths+=(/responses) ;;
      claude-sonnet-4.5) want_paths+=(/v1/messages) ;;
      claude-sonnet-4) want_paths+=(/chat/completions) ;;
    esac
  done
  W="$WORK/$mode"
  mkdir -p "$W"
  local real_token="gho_$(rand 36)"   # the credential only serve and the tenant may hold
  local client_token="ghs_$(rand 36)" # what the CLI gets; ghs_ makes it skip the REST API calls
  local reply="copilot-route e2e reply $(rand 12)"

  # The tenant: accepts only the real token; logs header names and token hashes, never values.
  E2E_REAL_TOKEN=$real_token "$BIN" fake-tenant --mode "$mode" --token-env E2E_REAL_TOKEN \
    --ca-out "$W/ca.pem" --ready-file "$W/fake.ready" --request-log "$W/fake-requests.jsonl" \
    --reply "$reply" >"$W/fake.out" 2>"$W/fake.err" &
  local fake_pid=$!
  PIDS+=("$fake_pid")
  wait_ready "$W/fake.ready" "$fake_pid" "fake-tenant"
  local fake_url
  fake_url=$(json_field "$W/fake.ready" url)

  # The proxy: the real token and the client token come from its environment only.
  COPILOT_GITHUB_TOKEN=$real_token COPILOT_ROUTE_CLIENT_TOKEN=$client_token "$BIN" serve \
    --listen 127.0.0.1:0 --server-url https://acme.ghe.com --api-url "$fake_url" \
    --copilot-api-target "$fake_url" --ca-file "$W/ca.pem" --ready-file "$W/serve.ready" \
    --log-file "$W/serve.log" >"$W/serve.out" 2>"$W/serve.err" &
  local serve_pid=$!
  PIDS+=("$serve_pid")
  wait_ready "$W/serve.ready" "$serve_pid" "serve"
  local proxy_url proxy_port
  proxy_url=$(json_field "$W/serve.ready" url)
  proxy_port=${proxy_url##*:}
  proxy_port=${proxy_port%%/*}

  # The CLI: a clean environment (env -i) so it cannot inherit the real token, a fresh HOME per
  # run, the proxy as its Copilot API. It does not get the tenant's CA: it has no business talking
  # to the tenant. One run per model: the default picks /responses, claude-sonnet-4.5
  # /v1/messages, claude-sonnet-4 (chat completions only at the fake) /chat/completions.
  local model run_dir cli_rc start_ns cli_ms
  for model in "${models[@]}"; do
    run_dir="$W/cli-${model:-default}"
    mkdir -p "$run_dir/home"
    # COPILOT_DEBUG_GITHUB_API_URL sends the REST look-ups 1.0.83 and 1.0.85 make despite the
    # ghs_ token (GET /copilot_internal/managed_settings) to the proxy too: without it they go to
    # api.acme.ghe.com directly and the connect check below fails.
    local cli_env=(PATH="$NODE_DIR:/usr/bin:/bin" HOME="$run_dir/home" GH_HOST=acme.ghe.com
      COPILOT_API_URL="$proxy_url" COPILOT_DEBUG_GITHUB_API_URL="$proxy_url" COPILOT_GITHUB_TOKEN="$client_token"
      COPILOT_PKG_CACHE_HOME="$COPILOT_PKG_CACHE_HOME")
    [[ $proxy_url == https://* ]] && cli_env+=(NODE_EXTRA_CA_CERTS="$W/ca.pem")
    local model_args=()
    [[ -n $model ]] && model_args=(--model "$model")
    start_ns=$(date +%s%N)
    set +e
    env -i "${cli_env[@]}" timeout 120 strace -f -qq -e trace=connect -e signal=none -o "$run_dir/connects.txt" \
      "$COPILOT" -p "say hi" --allow-all-tools --no-auto-update "${TELEMETRY_FLAG[@]}" "${model_args[@]}" \
      >"$run_dir/cli.out" 2>"$run_dir/cli.err"
    cli_rc=$?
    set -e
    cli_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    [[ $cli_rc == 0 ]] || fail "$run_dir" "the Copilot CLI (model ${model:-default}) exited $cli_rc (124 = timed out after 120s)"
    grep -qF "$reply" "$run_dir/cli.out" || fail "$run_dir" "the CLI (model ${model:-default}) did not print the tenant's reply \"$reply\""
    check_connects "$run_dir" "$proxy_port"
    log "[${COPILOT_E2E_VERSION:-?} $mode] the CLI (model ${model:-default}) printed the tenant's reply in ${cli_ms}ms"
  done

  # What the tenant saw over all runs: each request with the real token, none with the client
  # token, completions on every route the models asked for, with the scheme the tenant accepts.
  python3 - "$W/fake-requests.jsonl" "$(sha "$real_token")" "$(sha "$client_token")" "$want_scheme" "${want_paths[@]}" <<'PY' ||
import json, sys
from datetime import datetime
path, real, client, scheme = sys.argv[1:5]
want_paths = sys.argv[5:]
reqs = [json.loads(l) for l in open(path) if l.strip()]
bad = [r for r in reqs if r.get("auth_token_sha256") != real or not r.get("auth_ok")]
leaked = [r for r in reqs if r.get("auth_token_sha256") == client]
paths = [r["path"] for r in reqs]
completions = [r for r in reqs if r["path"] in ("/responses", "/v1/messages", "/chat/completions")]
ok = True
for msg, cond in [
    ("no requests reached the tenant", not reqs),
    ("requests without the real token: %s" % [(r["method"], r["path"], r["auth"]) for r in bad], bad),
    ("the client token reached the tenant: %s" % [r["path"] for r in leaked], leaked),
    ("no GET /models", "/models" not in paths),
    ("missing completion routes: %s" % [p for p in want_paths if p not in paths], [p for p in want_paths if p not in paths]),
    ("no completion with 'Authorization: %s'" % scheme, not any(r.get("auth_scheme", "").lower() == scheme for r in completions)),
]:
    if cond:
        print("tenant:", msg, file=sys.stderr); ok = False
t0 = None
for r in reqs:
    at = datetime.fromisoformat(r["at"][:26].rstrip("Z") + "+00:00")
    t0 = t0 or at
    print("  +%5dms %-6s %-17s %-8s %-6s %s %s" % ((at - t0).total_seconds() * 1000, r["method"], r["path"], r["proto"],
          r.get("auth_scheme", ""), r.get("model", ""), "stream" if r.get("stream") else ""), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
    fail "$W" "the tenant's request log is wrong (above)"

  # What the proxy saw from the CLI: every request authenticated with the client token (a real
  # token, or anything else, would have been a 401 there) and none refused.
  python3 - "$W/serve.log" <<'PY' ||
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
reqs = [l for l in lines if l.get("msg") == "request"]
bad = [(l.get("method"), l.get("path"), l.get("status"), l.get("refused")) for l in reqs
       if l.get("status") == 401 or l.get("refused")]
if not reqs or bad:
    print("proxy: %d requests logged; unauthenticated or refused: %s" % (len(reqs), bad), file=sys.stderr)
    sys.exit(1)
PY
    fail "$W" "the proxy's log shows CLI requests without the client token (above)"

  # Neither token in any file the run wrote (logs, ready files, the CLI's HOME, strace output).
  local hits
  for name in real_token client_token; do
    hits=$(grep -rlF -- "${!name}" "$W" || true)
    [[ -z $hits ]] || fail "$W" "the $name value appears in: $hits"
  done

  # Both stop cleanly on SIGTERM (as the stop action and a runner's job end do).
  local pid rc
  for pid in "$serve_pid" "$fake_pid"; do
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    [[ $rc == 0 ]] || fail "$W" "process $pid (serve or fake-tenant) exited $rc on SIGTERM, want 0"
  done
  PIDS=() # all waited for: never signal these ids again, they may be reused

  local n
  n=$(grep -c . "$W/fake-requests.jsonl")
  log "[${COPILOT_E2E_VERSION:-?} $mode] passed: $n requests reached the tenant, all with the real token; no token in any file"
}

# healthy: everything works. seed: the report this project started from; the tenant refuses the
# Bearer scheme the CLI uses, so the proxy must switch to "token" on its own.
scenario healthy bearer "" claude-sonnet-4.5 claude-sonnet-4
scenario seed token ""
