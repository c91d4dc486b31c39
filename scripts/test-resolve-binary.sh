#!/usr/bin/env bash
# Tests scripts/resolve-binary.sh, the action's first step, on copies of this tree: a release
# binary whose checksum matches is used as is; a tampered one is refused (warning) and the binary
# is built from source; with no release binary it builds; with neither a binary nor Go it fails
# with an ::error:: saying what to do.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z --cached --others --exclude-standard | grep -zv '^dist/copilot-route-' | tar --null -T - -cf "$work/src.tar"
arch=$(go env GOARCH)
name="copilot-route-linux-$arch"

fresh() { rm -rf "$work/action" "$work/rt"; mkdir -p "$work/action" "$work/rt"; tar -xf "$work/src.tar" -C "$work/action"; }
resolve() { RUNNER_TEMP="$work/rt" GITHUB_OUTPUT="$work/rt/out" bash "$work/action/scripts/resolve-binary.sh" "$work/action" "$@"; }

log "resolve: a release binary whose SHA-256 matches is used"
fresh
TARGETS="linux/$arch" bash scripts/build-dist.sh v0.0.0-resolve "$work/action/dist" >/dev/null || die "build-dist failed"
out=$(resolve 2>&1) || die "resolve failed: $out"
grep -qx "binary=$work/action/dist/$name" "$work/rt/out" || die "did not use dist/$name: $(cat "$work/rt/out"); $out"
[[ "$("$work/action/dist/$name" version)" == "copilot-route v0.0.0-resolve" ]] || die "the release binary does not run"
[[ "$(cat "$work/rt/copilot-route/binary")" == "$work/action/dist/$name" ]] || die "the path for the stop action was not recorded"

log "resolve: a release binary without its executable bit runs from a private copy"
chmod -x "$work/action/dist/$name"
bin=$(resolve --print 2>/dev/null) || die "resolve --print failed"
[[ "$bin" == "$work/rt/copilot-route/$name" && -x "$bin" ]] || die "no executable copy: $bin"

log "resolve: a tampered release binary is refused and the binary is built from source"
chmod +x "$work/action/dist/$name"
printf 'x' >>"$work/action/dist/$name"
: >"$work/rt/out"
out=$(resolve 2>&1) || die "resolve failed: $out"
grep -q "::warning title=copilot-route::dist/$name does not match dist/SHA256SUMS" <<<"$out" || die "no warning for the tampered binary: $out"
grep -qx "binary=$work/rt/copilot-route/bin/copilot-route" "$work/rt/out" || die "did not build from source: $(cat "$work/rt/out")"
"$work/rt/copilot-route/bin/copilot-route" version >/dev/null || die "the built binary does not run"

log "resolve: no release binary (a branch, not a tag) builds from source"
fresh
out=$(resolve 2>&1) || die "resolve failed: $out"
grep -qx "binary=$work/rt/copilot-route/bin/copilot-route" "$work/rt/out" || die "did not build from source"

log "resolve: neither a release binary nor Go fails with what to do"
fresh
# A PATH with the script's tools and no go, wherever go is installed on this machine.
mkdir -p "$work/nogo"
for tool in bash uname mkdir chmod cat awk cut sha256sum shasum cp dirname; do
  p=$(command -v "$tool" 2>/dev/null) && ln -sf "$p" "$work/nogo/$tool"
done
if out=$(PATH="$work/nogo" resolve 2>&1); then die "resolve succeeded without Go: $out"; fi
grep -q '::error title=copilot-route::no release binary .* and no Go toolchain' <<<"$out" || die "unclear failure: $out"
log "resolve-binary: all cases passed"
