#!/usr/bin/env bash
# Records what the REAL Copilot CLI sends, per version and per mode (not part of test.sh):
#
#   copilot -p ... ──► every host name resolves to 127.0.0.1 ──► copilot-route fake-tenant --any-host
#                                                                 (127.0.0.1:443, TLS for any name)
#
# Each run is in a network namespace of its own making with only loopback (unshare --net --mount),
# a private /etc/hosts and /etc/resolv.conf pointing at a tiny DNS responder on 127.0.0.1:53 that
# logs every name asked and answers 127.0.0.1 for all of them, so whatever host the CLI picks it
# reaches the fake, which records each request (host, method, path, query, which header carried
# the credential, its scheme, HTTP version, the reply's status; never a header value). strace
# records every connect(2). Base URLs we control get names of their own, so the recording says
# where each request went:
#   https://proxy.route.test  COPILOT_API_URL           (the role copilot-route serve plays)
#   https://rest.route.test   COPILOT_DEBUG_GITHUB_API_URL
#   https://byok.route.test   COPILOT_PROVIDER_BASE_URL
#
# Usage: scripts/record-cli-traffic.sh [-v "1.0.102 1.0.83"] [-c CELL_REGEX] [-n RUNS] [-o DIR]
#   -v  CLI versions (default: 1.0.102 1.0.85 1.0.83 1.0.43)
#   -c  only the cells whose name matches this extended regex (see CELLS below)
#   -n  runs per cell (default 1)
#   -o  output directory (default .tools/cli-recordings); each run's files go to
#       DIR/VERSION/CELL[.N]/, and scripts/cli-traffic-report.py summarises all of DIR in
#       DIR/routes.tsv, DIR/routes-summary.tsv (testdata/cli-traffic.tsv) and DIR/report.md.
# Needs root (unshare), strace, python3. The CLI versions are installed by lib.sh, each with its
# own package cache (COPILOT_PKG_CACHE_HOME), unpacked once and shared by the runs of that version.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if [[ "${RECORD_INNER:-}" != 1 ]]; then
  VERSIONS="1.0.102 1.0.85 1.0.83 1.0.43"
  ONLY=""
  RUNS=1
  OUT="$TOOLS/cli-recordings"
  while getopts "v:c:n:o:" opt; do
    case $opt in
      v) VERSIONS=$OPTARG ;;
      c) ONLY=$OPTARG ;;
      n) RUNS=$OPTARG ;;
      o) OUT=$OPTARG ;;
      *) die "usage: $0 [-v VERSIONS] [-c CELL_REGEX] [-n RUNS] [-o DIR]" ;;
    esac
  done
  need_cli_sandbox "recording the Copilot CLI"
  BIN=$(build_binary)
  declare -A CLI
  for v in $VERSIONS; do
    cli=$(need_copilot_cli "$v")
    # The loader (npm-loader.js) only spawns the platform package's standalone binary; run that
    # directly so no Node.js is needed and strace sees one process tree.
    CLI[$v]=${cli%/.bin/copilot}/@github/copilot-linux-x64/copilot
    [[ -x ${CLI[$v]} ]] || die "no standalone binary for @github/copilot $v at ${CLI[$v]}"
    copilot_pkg_cache "$v" >/dev/null
  done
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  export RECORD_INNER=1 BIN OUT VERSIONS ONLY RUNS
  for v in $VERSIONS; do export "CLI_${v//./_}=${CLI[$v]}"; done
  log "recording Copilot CLI ${VERSIONS// /, } in a private network namespace → $OUT"
  unshare --net --mount --fork -- bash "$0"
  python3 "$ROOT/scripts/cli-traffic-report.py" "$OUT"
  log "to update the committed summary: cp $OUT/routes-summary.tsv testdata/cli-traffic.tsv (and internal/faketenant/CLI-TRAFFIC.md from $OUT/report.md)"
  exit 0
fi

# ---- inside the namespace ----
sandbox_loopback_up

ETC=$(mktemp -d /tmp/record-cli-etc.XXXXXX)
printf '127.0.0.1 localhost\n::1 localhost\n' >"$ETC/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$ETC/resolv.conf"
mount --bind "$ETC/hosts" /etc/hosts || die "could not bind-mount a private /etc/hosts"
mount --bind "$ETC/resolv.conf" /etc/resolv.conf || die "could not bind-mount a private /etc/resolv.conf"

# The DNS responder: logs "NAME TYPE" per question; A → 127.0.0.1, anything else → no answer.
cat >"$ETC/dns.py" <<'PY'
import socket, struct, sys
log = open(sys.argv[1], "a", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[2], "w").write("ready\n")
while True:
    data, addr = s.recvfrom(4096)
    try:
        qid, = struct.unpack(">H", data[:2])
        i, labels = 12, []
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
            i += 1 + data[i]
        qtype, = struct.unpack(">H", data[i + 1:i + 3])
        qend = i + 5
    except Exception:
        continue
    log.write("%s %s\n" % (".".join(labels).lower(), {1: "A", 28: "AAAA", 65: "HTTPS"}.get(qtype, qtype)))
    answer = b""
    if qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    head = struct.pack(">HHHHHH", qid, 0x8180, 1, 1 if answer else 0, 0, 0)
    s.sendto(head + data[12:qend] + answer, addr)
PY

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$ETC"
}
trap cleanup EXIT

rand() {
  local s=""
  while ((${#s} < $1)); do s+=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'); done
  printf '%s' "${s:0:$1}"
}
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

wait_file() { # FILE PID NAME
  for _ in $(seq 200); do
    [[ -s $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited before it was ready"
    sleep 0.05
  done
  die "$3 was not ready within 10s"
}

API=https://proxy.route.test
REST=https://rest.route.test
BYOK=https://byok.route.test

# CELLS: name | token kind (ghs gho ghu pat none) | model ("" = the CLI's default) | environment.
# The token goes in COPILOT_GITHUB_TOKEN; BYOK cells also get a provider key (another value, so
# the recording tells them apart by hash).
CELLS=(
  "documented|ghs||GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "documented-claude-sonnet-4.5|ghs|claude-sonnet-4.5|GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "documented-chat-only|ghs|claude-sonnet-4|GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "documented-no-telemetry|ghs||GH_HOST=acme.ghe.com COPILOT_API_URL=$API FLAG=--disable-client-telemetry"
  "documented-debug|ghs||GH_HOST=acme.ghe.com COPILOT_API_URL=$API COPILOT_DEBUG_GITHUB_API_URL=$REST"
  "gho|gho||GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "gho-debug|gho||GH_HOST=acme.ghe.com COPILOT_API_URL=$API COPILOT_DEBUG_GITHUB_API_URL=$REST"
  "ghu|ghu||GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "ghu-debug|ghu||GH_HOST=acme.ghe.com COPILOT_API_URL=$API COPILOT_DEBUG_GITHUB_API_URL=$REST"
  "pat|pat||GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "pat-debug|pat||GH_HOST=acme.ghe.com COPILOT_API_URL=$API COPILOT_DEBUG_GITHUB_API_URL=$REST"
  "gh-host-only-ghs|ghs||GH_HOST=acme.ghe.com"
  "gh-host-only-gho|gho||GH_HOST=acme.ghe.com"
  "byok-offline-openai|none||COPILOT_OFFLINE=true COPILOT_PROVIDER_BASE_URL=$BYOK COPILOT_MODEL=gpt-5-mini KEY=1"
  "byok-offline-responses|none||COPILOT_OFFLINE=true COPILOT_PROVIDER_BASE_URL=$BYOK COPILOT_PROVIDER_WIRE_API=responses COPILOT_MODEL=gpt-5-mini KEY=1"
  "byok-offline-anthropic|none||COPILOT_OFFLINE=true COPILOT_PROVIDER_BASE_URL=$BYOK COPILOT_PROVIDER_TYPE=anthropic COPILOT_MODEL=claude-sonnet-4.5 KEY=1"
  "byok-online-openai|ghs||GH_HOST=acme.ghe.com COPILOT_PROVIDER_BASE_URL=$BYOK COPILOT_MODEL=gpt-5-mini KEY=1"
  "byok-online-openai-api-url|ghs||GH_HOST=acme.ghe.com COPILOT_API_URL=$API COPILOT_PROVIDER_BASE_URL=$BYOK COPILOT_MODEL=gpt-5-mini KEY=1"
  "ghes-seat-on-tenant|ghs||GH_HOST=github.example.com COPILOT_GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  "ghes-seat-on-github.com|ghs||GH_HOST=github.example.com COPILOT_GH_HOST=github.com COPILOT_API_URL=$API"
  "ghes-seat-on-tenant-gho|gho||GH_HOST=github.example.com COPILOT_GH_HOST=acme.ghe.com COPILOT_API_URL=$API"
  # Inside a repository checkout (REPO=1: the working directory is a git clone of
  # https://acme.ghe.com/octo/app): the CLI names the repository in some routes.
  "documented-in-repo|ghs||GH_HOST=acme.ghe.com COPILOT_API_URL=$API REPO=1"
  "gho-debug-in-repo|gho||GH_HOST=acme.ghe.com COPILOT_API_URL=$API COPILOT_DEBUG_GITHUB_API_URL=$REST REPO=1"
)

token_of() { # KIND → a token of that shape (random)
  case $1 in
    ghs) printf 'ghs_%s' "$(rand 36)" ;;
    gho) printf 'gho_%s' "$(rand 36)" ;;
    ghu) printf 'ghu_%s' "$(rand 36)" ;;
    pat) printf 'github_pat_%s_%s' "$(rand 22)" "$(rand 59)" ;;
    none) printf '' ;;
  esac
}

# record VERSION CLI CELL DIR: one run of the CLI in one cell.
record() {
  local version=$1 cli=$2 spec=$3 dir=$4
  local name kind model envs
  IFS='|' read -r name kind model envs <<<"$spec"
  rm -rf "$dir"
  mkdir -p "$dir/cwd"
  copilot_home "$version" "$dir/home"
  local token key="" flags=()
  token=$(token_of "$kind")

  "$BIN" fake-tenant --listen 127.0.0.1:443 --any-host --ca-out "$dir/ca.pem" --ready-file "$dir/fake.ready" \
    --request-log "$dir/requests.jsonl" --reply "recorded reply" >"$dir/fake.out" 2>"$dir/fake.err" &
  local fake_pid=$!
  PIDS+=("$fake_pid")
  wait_file "$dir/fake.ready" "$fake_pid" fake-tenant
  python3 "$ETC/dns.py" "$dir/dns.log" "$dir/dns.ready" 2>"$dir/dns.err" &
  local dns_pid=$!
  PIDS+=("$dns_pid")
  wait_file "$dir/dns.ready" "$dns_pid" "the DNS responder"

  local env=(PATH=/usr/bin:/bin HOME="$dir/home" NODE_EXTRA_CA_CERTS="$dir/ca.pem"
    COPILOT_PKG_CACHE_HOME="$(copilot_pkg_cache "$version")" NO_COLOR=1)
  [[ -n $token ]] && env+=(COPILOT_GITHUB_TOKEN="$token")
  local kv
  for kv in $envs; do
    case $kv in
      KEY=1) key="sk-$(rand 40)"; env+=(COPILOT_PROVIDER_API_KEY="$key") ;;
      REPO=1) git -C "$dir/cwd" init -q && git -C "$dir/cwd" remote add origin https://acme.ghe.com/octo/app.git ;;
      FLAG=*) flags+=("${kv#FLAG=}") ;;
      *) env+=("$kv") ;;
    esac
  done
  [[ -n $model ]] && flags+=(--model "$model")
  # What the summary needs to tell the credentials apart, as hashes (never the values).
  printf '{"version":"%s","cell":"%s","token_kind":"%s","model":"%s","env":"%s","flags":"%s","token_sha256":"%s","key_sha256":"%s"}\n' \
    "$version" "$name" "$kind" "$model" "$envs" "${flags[*]}" "$([[ -n $token ]] && sha "$token")" "$([[ -n $key ]] && sha "$key")" >"$dir/cell.json"

  local start_ns rc
  start_ns=$(date +%s%N)
  set +e
  (cd "$dir/cwd" && env -i "${env[@]}" timeout -k 5 90 strace -f -qq -e trace=connect -e signal=none -o "$dir/connects.txt" \
    "$cli" -p "say hi" --allow-all-tools --no-auto-update "${flags[@]}" >"$dir/cli.out" 2>"$dir/cli.err")
  rc=$?
  set -e
  printf '{"rc":%d,"ms":%d}\n' "$rc" $(( ($(date +%s%N) - start_ns) / 1000000 )) >"$dir/result.json"

  # Stopping the fake waits for its handlers, so every request's log line is written.
  kill -TERM "$fake_pid" "$dns_pid"
  wait "$fake_pid" 2>/dev/null || true
  wait "$dns_pid" 2>/dev/null || true
  PIDS=()
  # The fake's log and ours must hold no credential; the CLI's own files (HOME) are noted.
  local hits
  hits=$( { [[ -n $token ]] && grep -rlF -- "$token" "$dir"; [[ -n $key ]] && grep -rlF -- "$key" "$dir"; } 2>/dev/null || true)
  grep -v "^$dir/home/" <<<"$hits" | grep -q . && die "a credential value was written to: $hits"
  [[ -z $hits ]] || printf '%s\n' $hits >"$dir/credential-in-cli-files.txt"
  printf '  %-8s %-32s rc=%-3s %6sms %3s requests\n' "$version" "$name" "$rc" \
    "$(( ($(date +%s%N) - start_ns) / 1000000 ))" "$(cat "$dir/requests.jsonl" 2>/dev/null | grep -c . || true)" >&2
}

for version in $VERSIONS; do
  var="CLI_${version//./_}"
  cli=${!var}
  for spec in "${CELLS[@]}"; do
    name=${spec%%|*}
    [[ -z $ONLY || $name =~ $ONLY ]] || continue
    for ((i = 1; i <= RUNS; i++)); do
      dir="$OUT/$version/$name"
      ((RUNS == 1)) || dir+=".$i"
      record "$version" "$cli" "$spec" "$dir"
    done
  done
done
