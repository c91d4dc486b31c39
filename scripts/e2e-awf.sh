#!/usr/bin/env bash
# End-to-end test inside the firewall: README's "Use it" workflow (testdata/workflows/e2e-awf.yml)
# and the BYOK variant of docs/action.md (e2e-awf-byok.yml) run under nektos/act in host mode, with
# the real Copilot CLI (each of lib.sh's COPILOT_CLI_VERSIONS) in awf's topology built from real parts:
#
#   internet namespace   10.255.0.1    the fake tenant (acme.ghe.com and its API hosts, TLS)
#        │ veth (routed)
#   runner (sandbox)     10.255.0.254  act, the action's steps, copilot-route serve on 0.0.0.0:8790,
#        │                              a decoy service on 0.0.0.0:8791
#        │ bridge awf-net 172.30.0.1    (host.docker.internal for the agent)
#        ├── Squid namespace  172.30.0.10:3128  real Squid with awf's squid.conf
#        └── agent namespace  172.30.0.20       awf's iptables rules; the Copilot CLI
#
# The workflow calls `sudo -E awf $AWF_ARGS --env-all -- copilot ...` exactly as README does; `awf`
# is scripts/internal/awfsim/awf, which reads those arguments as awf does (awfsim: allowlist and
# blocklist with awf's matching and overlap rules, the tenant's hosts awf adds from
# GITHUB_SERVER_URL, --env-all, NO_PROXY, host access on --allow-host-ports, iptables mode) and
# builds it. The runner context is a GHE.com tenant's (act --github-instance acme.ghe.com).
#
# It shows, per CLI version and mode: the CLI answers with the tenant's reply through the proxy;
# the tenant saw only the real token, only from the runner (never from Squid); every connection
# of the CLI (strace) went to the proxy or to Squid, and Squid denied every tenant API host
# (TCP_DENIED); from the agent, HTTPS to the tenant's API hosts is denied by Squid and every host
# port but the proxy's is closed; the real token is in no file under the test's directory (which
# holds everything the agent could read of this run), in the agent's environment, or in any
# process it can see. First it checks the simulator's squid.conf against real Squid: awf's
# matching rules (a bare name admits subdomains, *.x only subdomains, a scheme one protocol, the
# blocklist wins, raw IPs and other ports refused) and no overlapping entries.
#
# Needs root. E2E_KEEP=1 keeps the work directory; E2E_AWF_VERSIONS="1.0.85 1.0.43" runs other CLI
# versions. Prints a table of versions × modes × where their traffic went.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PROXY_PORT=8790 # copilot-route's default with proxy-host (internal/cli.DefaultProxyPort)
DECOY_PORT=8791
TENANT_NAMES="acme.ghe.com api.acme.ghe.com copilot-api.acme.ghe.com copilot-telemetry-service.acme.ghe.com"
# The CLI versions to run (default lib.sh's COPILOT_CLI_VERSIONS); e.g. E2E_AWF_VERSIONS="1.0.85 1.0.43".
export E2E_AWF_VERSIONS=${E2E_AWF_VERSIONS:-${COPILOT_CLI_VERSIONS[*]}}

if [[ "${1:-}" != --inner ]]; then
  [[ $(id -u) == 0 ]] || die "e2e-awf.sh needs root (network namespaces, iptables, Squid)"
  t0=$(date +%s%N)
  need_act
  command -v unshare >/dev/null || need_apt unshare util-linux
  need_apt ip iproute2
  need_apt iptables iptables
  need_apt squid squid
  need_apt strace strace
  need_apt pgrep procps
  need_apt curl curl
  need_apt python3 python3
  work=$(mktemp -d /tmp/copilot-route-e2e-awf.XXXXXX)
  chmod 755 "$work" # Squid drops to its own user and reads its configuration under here
  if [[ -n "${E2E_KEEP:-}" ]]; then echo "e2e-awf: keeping $work" >&2; else trap 'rm -rf "$work"' EXIT; fi
  mkdir -p "$work/bin" "$work/secrets"
  chmod 700 "$work/secrets"
  go build -o "$work/bin/copilot-route" ./cmd/copilot-route || die "go build failed"
  go build -o "$work/bin/actlog" ./scripts/internal/actlog || die "go build actlog failed"
  go build -o "$work/bin/awfsim" ./scripts/internal/awfsim || die "go build awfsim failed"
  cp scripts/internal/awfsim/awf scripts/internal/awfsim/sudo "$work/bin/"
  for v in $E2E_AWF_VERSIONS; do
    cli=$(need_copilot_cli "$v")
    mkdir -p "$work/cli-$v"
    ln -s "$cli" "$work/cli-$v/copilot"
    copilot_pkg_cache "$v" >"$work/cli-$v/pkg-cache"
  done
  act_checkout "$work/src"
  E2E_T0=$t0 unshare --net --mount --pid --fork --mount-proc -- bash "$0" --inner "$work"
  exit $?
fi

# ---- inside the sandbox: this namespace is the runner ----
work=$2
export PATH="$work/bin:$PATH"
ip link set lo up || die "could not bring up loopback"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# The internet: one namespace holding the tenant's address, routed through the runner.
unshare --net sleep infinity &
inet=$!
pids+=("$inet")
sleep 0.05
ip link add name inet type veth peer name inet-c
ip link set inet-c netns "$inet"
ip addr add 10.255.0.254/24 dev inet
ip link set inet up
nsenter -t "$inet" -n sh -c 'ip link set lo up && ip addr add 10.255.0.1/24 dev inet-c && ip link set inet-c up &&
  ip route add default via 10.255.0.254' || die "could not set up the internet namespace"
echo 1 >/proc/sys/net/ipv4/ip_forward # the runner routes between its networks
echo "10.255.0.1 $TENANT_NAMES" >"$work/dns-hosts" # what DNS answers, for the runner, Squid and the agent
{ echo "127.0.0.1 localhost"; echo "::1 localhost"; cat "$work/dns-hosts"; } >"$work/hosts"
mount --bind "$work/hosts" /etc/hosts || die "could not bind-mount a private /etc/hosts"

# A service on the runner the agent must not reach (awf opens only the allowed host ports).
python3 -m http.server --bind 0.0.0.0 "$DECOY_PORT" --directory "$work/bin" >/dev/null 2>&1 &
pids+=($!)

rand() {
  local s=""
  while ((${#s} < $1)); do s+=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'); done
  printf '%s' "${s:0:$1}"
}
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# ---- 1. the simulator's squid.conf in real Squid: awf's matching rules ----
log "Squid with awfsim's configuration: awf's matching rules"
m="$work/match"
mkdir -p "$m/squid"
chown proxy:proxy "$m/squid"
echo "127.0.0.1 bare.example sub.bare.example xbare.example wild.example a.wild.example tls.example plain.example no.bare.example" >"$m/hosts"
AWF_SIM_SQUID_DIR="$m/squid" AWF_SIM_SQUID_HOSTS="$m/hosts" awfsim plan "$m" -- \
  --allow-domains bare.example,sub.bare.example,'*.wild.example',https://tls.example,http://plain.example \
  --block-domains no.bare.example -- true || die "awfsim plan failed"
squid -k parse -f "$m/squid.conf" >"$m/parse.txt" 2>&1 || { cat "$m/parse.txt" >&2; die "Squid rejects awfsim's configuration"; }
if grep -i 'is a subdomain of' "$m/parse.txt" >&2; then die "awfsim left overlapping entries that awf drops (above)"; fi
unshare --net bash -c '
  set -u
  ip link set lo up
  sed -i "s/^http_port 3128$/http_port 127.0.0.1:3128/" "$1/squid.conf"
  squid -N -f "$1/squid.conf" >"$1/squid.out" 2>&1 & sq=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/3128) 2>/dev/null && break; sleep 0.05; done
  while read -r url want; do
    code=$(curl -s -o /dev/null --max-time 5 -x http://127.0.0.1:3128 -w "%{http_connect} %{http_code}" "$url")
    got=allow; [[ $code == *403* ]] && got=deny
    echo "$url $want $got ($code)"
  done <<EOF
https://bare.example/ allow
https://sub.bare.example/ allow
https://xbare.example/ deny
https://wild.example/ deny
https://a.wild.example/ allow
https://tls.example/ allow
http://tls.example/ deny
http://plain.example/ allow
https://plain.example/ deny
https://no.bare.example/ deny
https://bare.example:8443/ deny
https://127.0.0.1/ deny
EOF
  kill $sq; wait $sq 2>/dev/null' _ "$m" >"$m/results.txt" || die "the Squid rules check failed to run"
if awk '$2 != $3' "$m/results.txt" | grep . >&2; then
  cat "$m/squid/cache.log" >&2 2>/dev/null
  die "Squid with awfsim's configuration decided the requests above differently from awf's rules"
fi
log "awf's rules hold in real Squid: $(wc -l <"$m/results.txt") requests decided as awf documents"

# ---- 2. the workflows under act, per CLI version and mode ----
cat >"$work/probe.sh" <<EOF
# Runs in the agent's namespaces with the agent's environment, after the CLI (scripts/e2e-awf.sh).
run=\$1
echo "probe-start=\$(date +%s.%N)"
tcp() { timeout 1 bash -c "exec 3<>/dev/tcp/\$1/\$2" 2>/dev/null && echo open || echo closed; }
echo "gateway:$PROXY_PORT=\$(tcp 172.30.0.1 $PROXY_PORT)"
echo "gateway:$DECOY_PORT=\$(tcp 172.30.0.1 $DECOY_PORT)"
echo "gateway:22=\$(tcp 172.30.0.1 22)"
echo "tenant-ip:8443=\$(tcp 10.255.0.1 8443)"
for h in $TENANT_NAMES; do
  c=\$(curl -s -o /dev/null -A awf-probe --max-time 5 -w '%{http_connect}' "https://\$h/meta"); rc=\$?
  echo "via-squid:\$h=connect \$c exit \$rc"
done
curl -s -o /dev/null -A awf-probe --noproxy '*' --max-time 5 https://api.acme.ghe.com/meta; echo "direct:api.acme.ghe.com=exit \$?"
n=0
for p in /proc/[0-9]*; do
  n=\$((n + 1))
  { tr '\0' '\n' <"\$p/environ"; tr '\0' ' ' <"\$p/cmdline"; echo; } >>"\$run/agent-proc.txt" 2>/dev/null
done
echo "processes-visible=\$n"
EOF

rows=()
run_case() { # run_case VERSION MODE WORKFLOW
  local v=$1 mode=$2 wf=$3
  local d="$work/case-$v-$mode"
  mkdir -p "$d/home" "$d/sim"
  cp "$work/dns-hosts" "$d/sim/dns-hosts"
  local real reply
  real="gho_$(rand 36)" reply="copilot-route e2e-awf reply $(rand 12)"
  (umask 077 && printf 'COPILOT_GITHUB_TOKEN=%s\n' "$real" >"$work/secrets/$v-$mode")

  nsenter -t "$inet" -n env E2E_REAL_TOKEN="$real" copilot-route fake-tenant --listen 10.255.0.1:443 --host acme.ghe.com \
    --token-env E2E_REAL_TOKEN --ca-out "$d/ca.pem" --ready-file "$d/fake.json" --request-log "$d/tenant.jsonl" \
    --reply "$reply" </dev/null >"$d/fake.log" 2>&1 &
  local fake=$!
  pids+=("$fake")
  for _ in $(seq 200); do [[ -s "$d/fake.json" ]] && break; sleep 0.05; done
  [[ -s "$d/fake.json" ]] || die "the fake tenant did not start: $(cat "$d/fake.log")"

  local t0 rc=0
  t0=$(date +%s%N)
  PATH="$work/cli-$v:$PATH" HOME="$d/home" timeout 300 act workflow_dispatch -C "$work/src" -W "$ROOT/testdata/workflows/$wf" \
    "${ACT_HOST_FLAGS[@]}" --github-instance acme.ghe.com \
    --env GITHUB_API_URL=https://api.acme.ghe.com --env GITHUB_GRAPHQL_URL=https://api.acme.ghe.com/graphql \
    --action-cache-path "$d/act-cache" --secret-file "$work/secrets/$v-$mode" \
    --env E2E_SRC="$work/src" --env FAKE_CA="$d/ca.pem" --env COPILOT_PKG_CACHE_HOME="$(cat "$work/cli-$v/pkg-cache")" \
    --env AWF_SIM_DIR="$d/sim" --env AWF_SIM_PROBE="$work/probe.sh" --env AWF_SIM_STRACE=1 \
    >"$d/act.log" 2>&1 || rc=$?
  local act_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  kill "$fake"
  wait "$fake" 2>/dev/null || true
  actlog text "$d/act.log" >"$d/act.txt"
  local fail="[$v $mode] (logs: $d; E2E_KEEP=1 keeps them)"
  show() { grep -v 'unable to get git' "$d/act.txt" | tail -60 >&2; }
  [[ $rc == 0 ]] || { show; die "$fail act exited $rc"; }
  grep -qF "$reply" "$d/act.txt" || { show; die "$fail the CLI did not print the tenant's reply"; }
  local runs=("$d"/sim/run.*)
  [[ ${#runs[@]} == 1 && -d ${runs[0]} ]] || die "$fail want one awf run, found: ${runs[*]}"
  local r=${runs[0]}
  [[ $(cat "$r/exit-code") == 0 ]] || die "$fail the CLI inside awf exited $(cat "$r/exit-code")"

  # What the awf step was given: README's flags from awf-args, and the agent's environment.
  local want_args
  want_args=$(printf '%s\n' --enable-host-access --allow-host-ports "$PROXY_PORT" --allow-domains host.docker.internal \
    --block-domains api.acme.ghe.com,copilot-api.acme.ghe.com --env-all -- copilot -p "Say hello" --allow-all-tools --no-auto-update)
  [[ $(cat "$r/awf-argv.txt") == "$want_args" ]] || die "$fail awf was called with (one argument a line)
$(cat "$r/awf-argv.txt")
want
$want_args"
  local url_var=COPILOT_API_URL
  [[ $mode == byok ]] && url_var=COPILOT_PROVIDER_BASE_URL
  local agent_env
  agent_env=$(tr '\0' '\n' <"$r/agent.env")
  grep -qx "$url_var=http://host.docker.internal:$PROXY_PORT" <<<"$agent_env" ||
    die "$fail the agent's $url_var is not http://host.docker.internal:$PROXY_PORT"

  # The tenant: only the real token, only from the runner (10.255.0.254, where the proxy runs),
  # never from Squid (172.30.0.10).
  python3 - "$d/tenant.jsonl" "$(sha "$real")" "$mode" <<'PY' || die "$fail the tenant's record is wrong (above)"
import json, sys
path, real, mode = sys.argv[1:4]
reqs = [json.loads(l) for l in open(path) if l.strip()]
paths = {r["path"] for r in reqs}
completions = {"/responses", "/v1/messages", "/chat/completions"}
missing = (["/models"] if mode == "doc" and "/models" not in paths else []) + ([] if paths & completions else ["a completion"])
# diagnose's GET /meta reachability probe carries no credential; everything else the real one.
bad = [(r["method"], r["path"], r.get("auth"), r.get("remote_ip")) for r in reqs
       if r.get("remote_ip") != "10.255.0.254" or not (r.get("auth_token_sha256") == real and r.get("auth_ok")
                                                       or r.get("auth") == "none" and r["path"] == "/meta")]
if not reqs or bad or missing:
    print("tenant: %d requests; not with the real token from the runner: %s; missing %s" % (len(reqs), bad, missing), file=sys.stderr)
    sys.exit(1)
PY

  # Squid: every tenant API host it saw was denied; the probe's direct HTTPS was among them.
  local access="$r/squid/access.log"
  if grep -E ' (api|copilot-api)\.acme\.ghe\.com:' "$access" | grep -v TCP_DENIED >&2; then die "$fail Squid let a tenant API request through (above)"; fi
  grep -E ' api\.acme\.ghe\.com:443 .* CONNECT 403 TCP_DENIED.*"awf-probe"' -q "$access" || die "$fail no TCP_DENIED for the agent's direct HTTPS to api.acme.ghe.com in Squid's log"

  # strace: every connection of the CLI went to the proxy or to Squid.
  local others
  others=$(grep -E 'connect\(.*AF_INET6?' "$r/connects.txt" | grep -v 'AF_UNIX' |
    grep -vE "sin_port=htons\(($PROXY_PORT)\), sin_addr=inet_addr\(\"172\.30\.0\.1\"\)|sin_port=htons\(3128\), sin_addr=inet_addr\(\"172\.30\.0\.10\"\)" || true)
  [[ -z $others ]] || die "$fail the CLI connected elsewhere: $others"
  grep -qE "htons\($PROXY_PORT\), sin_addr=inet_addr\(\"172\.30\.0\.1\"\)" "$r/connects.txt" || die "$fail the CLI never connected to the proxy"

  # The probe, in the agent's view.
  local p="$r/probe.txt" want_line
  for want_line in "gateway:$PROXY_PORT=open" "gateway:$DECOY_PORT=closed" "gateway:22=closed" "tenant-ip:8443=closed" \
    "via-squid:api.acme.ghe.com=connect 403 exit 56" "via-squid:copilot-api.acme.ghe.com=connect 403 exit 56" \
    "via-squid:acme.ghe.com=connect 200 exit 60"; do
    grep -qxF "$want_line" "$p" || die "$fail the agent's probe lacks '$want_line':
$(cat "$p")"
  done
  grep -qE '^direct:api.acme.ghe.com=exit [1-9]' "$p" || die "$fail HTTPS from the agent straight to api.acme.ghe.com did not fail: $(grep direct "$p")"
  ! grep -q ' serve --listen' "$r/agent-proc.txt" || die "$fail the agent can see the proxy's process"

  # The real token: in no file under the work directory (the agent's environment, its /proc view,
  # the CLI's HOME, the workspace, RUNNER_TEMP, every log), except the secret store act reads and
  # act's own log (the runner's log, which the agent never sees), where only act's record of the
  # ::add-mask:: request may hold it.
  local hits client
  hits=$(grep -rlF --exclude-dir=secrets --exclude=act.log --exclude=act.txt -- "$real" "$work" 2>/dev/null || true)
  [[ -z $hits ]] || die "$fail the real token is in: $hits"
  client=$(sed -n 's/^\(COPILOT_GITHUB_TOKEN\|COPILOT_PROVIDER_API_KEY\)=//p' <<<"$agent_env")
  [[ $client =~ ^ghs_[A-Za-z0-9]{36}$ ]] || die "$fail the agent holds no ghs_ client token"
  ACTLOG_SECRETS=$real ACTLOG_OUTPUT_SECRETS=$client actlog scan "$d/act.log" >"$d/leaks" ||
    { head -5 "$d/leaks" >&2; die "$fail a token appears in act's log (lines above, token replaced)"; }

  # The row: what went where, from strace (connections), the proxy's log and Squid's log.
  local via_proxy squid_cli cli_ms
  actlog summary "$d/act.log" >"$d/summary.md"
  grep -qxF -- '- Requests without the client token: 0' "$d/summary.md" && grep -qxF -- '- Refused before reaching upstream: 0' "$d/summary.md" ||
    die "$fail the proxy's traffic report shows requests without the client token or refused ones: $d/summary.md"
  via_proxy=$(sed -n '/^| Route | Requests | Statuses |$/,/^$/p' "$d/summary.md" | grep -v 'Route\|---\|local:\|^$' |
    awk -F' \\| ' '{gsub(/^\| |`/, "", $1); printf "%s ×%s (%s), ", $1, $2, $3}' | sed 's/ |)/)/g; s/, $//')
  # The CLI's entries in Squid's log: from the agent, before the probe started.
  squid_cli=$(awk -v t="$(sed -n 's/^probe-start=//p' "$p")" '$1 < t && $2 ~ /^172\.30\.0\.20:/ {split($8, d, ":"); print $9" "d[1]}' "$access" |
    sort | uniq -c | awk '{printf "%s %s ×%d, ", $2, $3, $1}' | sed 's/, $//')
  # With README's environment the CLI does not even try the tenant past the proxy.
  if grep -q 'acme\.ghe\.com' <<<"$squid_cli"; then die "$fail the CLI tried the tenant directly (Squid denied it): $squid_cli"; fi
  local to_proxy to_squid
  to_proxy=$(grep -c "htons($PROXY_PORT)" "$r/connects.txt" || true)
  to_squid=$(grep -c 'htons(3128)' "$r/connects.txt" || true)
  rows+=("| $v | $mode | $to_proxy / $to_squid | ${via_proxy} | ${squid_cli:-none} | 0 | ${act_ms} ms |")
  log "[$v $mode] passed in ${act_ms} ms: the reply came through the proxy; Squid from the CLI: ${squid_cli:-none}"
}

for v in $E2E_AWF_VERSIONS; do
  run_case "$v" doc e2e-awf.yml
  run_case "$v" byok e2e-awf-byok.yml
done

{
  echo
  echo "| CLI | mode | CLI connections to the proxy / to Squid (strace) | requests through the proxy (route ×count (statuses), from its traffic report) | requests the CLI sent to Squid (Squid log) | tenant requests not from the proxy (tenant log) | act run |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} >&2
log "e2e-awf: all passed in $(( ($(date +%s%N) - E2E_T0) / 1000000000 )) s"
