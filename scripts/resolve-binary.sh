#!/usr/bin/env bash
# resolve-binary.sh ACTION_ROOT [--print]
# Finds the copilot-route binary for this runner: dist/copilot-route-<os>-<arch> when its SHA-256
# matches dist/SHA256SUMS, otherwise a build from the action's own source with the runner's Go
# (into RUNNER_TEMP), otherwise a clear failure. Writes `binary=PATH` to GITHUB_OUTPUT, or prints
# the path with --print. The path is also recorded in $RUNNER_TEMP/copilot-route/binary for the
# stop action.
set -euo pipefail

root=${1:?usage: resolve-binary.sh ACTION_ROOT [--print]}
mode=${2:-}
root=$(cd "$root" && pwd)
tmp=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
state="$tmp/copilot-route"
mkdir -p "$state"
chmod 700 "$state"

err() { echo "::error title=copilot-route::$*"; exit 1; }
note() { echo "copilot-route: $*" >&2; }

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) err "unsupported runner OS $(uname -s): copilot-route runs on Linux and macOS runners" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) err "unsupported runner architecture $(uname -m): copilot-route has builds for amd64 and arm64" ;;
esac

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

name="copilot-route-$os-$arch"
bin=""
if [[ -f "$root/dist/$name" && -f "$root/dist/SHA256SUMS" ]]; then
  want=$(awk -v f="$name" '$2 == f || $2 == "*" f { print $1; exit }' "$root/dist/SHA256SUMS")
  got=$(sha256 "$root/dist/$name")
  if [[ -n "$want" && "$got" == "$want" ]]; then
    bin="$root/dist/$name"
    if [[ ! -x "$bin" ]]; then
      # A checkout may drop the executable bit; run a private copy instead of changing the action.
      cp "$bin" "$state/$name" && chmod 755 "$state/$name" && bin="$state/$name"
    fi
    note "using the release binary dist/$name (SHA-256 matches dist/SHA256SUMS)"
  else
    echo "::warning title=copilot-route::dist/$name does not match dist/SHA256SUMS; building from source instead"
  fi
fi

if [[ -z "$bin" ]]; then
  command -v go >/dev/null 2>&1 ||
    err "no release binary for $os/$arch in this version of the action and no Go toolchain to build one: use a release tag of the action (e.g. @v1), or add actions/setup-go before it"
  [[ -f "$root/go.mod" ]] || err "the action's source is missing at $root (go.mod not found)"
  bin="$state/bin/copilot-route"
  mkdir -p "$state/bin"
  note "building copilot-route from source with $(go version | cut -d' ' -f3)"
  # -trimpath and CGO off: the same binary the release builds make; -mod=readonly: never edit go.mod.
  if ! (cd "$root" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$bin" ./cmd/copilot-route) >&2; then
    err "go build of copilot-route failed (see above): check that the runner's Go is at least the version in go.mod"
  fi
fi

printf '%s\n' "$bin" >"$state/binary"
if [[ "$mode" == "--print" ]]; then
  printf '%s\n' "$bin"
elif [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  printf 'binary=%s\n' "$bin" >>"$GITHUB_OUTPUT"
else
  printf '%s\n' "$bin"
fi
