#!/usr/bin/env bash
# The gh-aw examples, checked against the real compiler (GH_AW_VERSION in lib.sh, built from the
# Go module proxy once, then offline):
#   1. each examples/gh-aw/*.md holds, between its copilot-route markers, exactly what
#      `copilot-route detect --format gh-aw` prints for the platform its marker line names;
#   2. the pinned compiler compiles every example with zero errors and zero warnings, in a
#      loopback-only network namespace (it must not need the network);
#   3. the committed .lock.yml beside each example is what the compiler writes (UPDATE=1 rewrites);
#   4. check-lock says each lock fits every example's platform whose Copilot is licensed on the
#      same host (exit 0) and no platform whose Copilot is elsewhere (exit 1).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
start=$(date +%s%N)

[[ $(id -u) == 0 ]] || command -v unshare >/dev/null || die "test-gh-aw.sh needs unshare (util-linux) for a network namespace"
GH_AW=$(need_gh_aw)
BIN=$(build_binary)
WORK=$(mktemp -d /tmp/copilot-route-gh-aw.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

declare -A PLATFORM # example → the detect flags its marker names
declare -A LICENSED # example → where its Copilot is licensed
for md in examples/gh-aw/*.md; do
  name=$(basename "$md" .md)
  marker=$(grep -m1 '^# --- copilot-route detect --format gh-aw ' "$md") || die "$md has no copilot-route marker line"
  flags=${marker#"# --- copilot-route detect --format gh-aw "}
  flags=${flags%" ---"}
  PLATFORM[$name]=$flags
  # shellcheck disable=SC2086
  LICENSED[$name]=$("$BIN" detect --format json $flags 2>/dev/null | sed -n 's/^  "copilot_host": "\(.*\)",$/\1/p')
  [[ -n ${LICENSED[$name]} ]] || die "detect $flags gave no copilot_host"
  # shellcheck disable=SC2086 # the flags are words
  want=$("$BIN" detect --format gh-aw $flags 2>/dev/null) || die "detect $flags failed"
  got=$(sed -n '/^# --- copilot-route detect --format gh-aw /,/^# --- end copilot-route ---$/p' "$md" | sed '1d;$d')
  [[ "$got" == "$want" ]] || die "$md differs from \`copilot-route detect --format gh-aw $flags\`:
$(diff <(printf '%s\n' "$got") <(printf '%s\n' "$want") || true)"
done
log "the examples hold detect's frontmatter verbatim (${#PLATFORM[@]} examples)"

mkdir -p "$WORK/repo/.github/workflows"
cp examples/gh-aw/*.md "$WORK/repo/.github/workflows/"
git -C "$WORK/repo" init -q .
compile_start=$(date +%s%N)
out=$(cd "$WORK/repo" && HOME="$WORK" unshare --net --map-root-user -- "$GH_AW" compile --no-check-update --approve 2>&1) ||
  die "gh-aw $GH_AW_VERSION failed to compile the examples:
$out"
compile_ms=$(( ($(date +%s%N) - compile_start) / 1000000 ))
grep -q "0 warnings" <<<"$out" && ! grep -qi "error" <<<"$out" ||
  die "gh-aw $GH_AW_VERSION compiled the examples with errors or warnings:
$out"
log "gh-aw $GH_AW_VERSION compiled ${#PLATFORM[@]} examples, 0 errors, 0 warnings, in ${compile_ms} ms"

for name in "${!PLATFORM[@]}"; do
  lock="$WORK/repo/.github/workflows/$name.lock.yml"
  committed="examples/gh-aw/$name.lock.yml"
  if [[ -n "${UPDATE:-}" ]]; then
    cp "$lock" "$committed"
  elif ! cmp -s "$lock" "$committed"; then
    die "$committed is not what gh-aw $GH_AW_VERSION compiles from $name.md: run UPDATE=1 scripts/test-gh-aw.sh"
  fi
done
log "the committed locks are the compiler's${UPDATE:+ (rewritten)}"

for name in "${!PLATFORM[@]}"; do
  for other in "${!PLATFORM[@]}"; do
    # shellcheck disable=SC2086
    set -- ${PLATFORM[$other]}
    rc=0
    env -u COPILOT_GITHUB_TOKEN -u GITHUB_SERVER_URL -u GITHUB_ACTIONS -u GITHUB_OUTPUT \
      "$BIN" check-lock --probe false --format text "$@" "examples/gh-aw/$name.lock.yml" >"$WORK/check.out" 2>&1 || rc=$?
    want=0
    [[ ${LICENSED[$name]} == "${LICENSED[$other]}" ]] || want=1
    if [[ $rc != "$want" ]]; then
      cat "$WORK/check.out" >&2
      die "check-lock examples/gh-aw/$name.lock.yml (Copilot on ${LICENSED[$name]}) on $other's platform ($*, Copilot on ${LICENSED[$other]}): exit $rc, want $want"
    fi
  done
done
log "check-lock: each example fits the platforms with its Copilot host and no other"
log "gh-aw examples passed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
