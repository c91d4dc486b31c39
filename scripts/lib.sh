# shellcheck shell=bash
# Shared helpers for the project's scripts: pinned tool installs into .tools/ (git-ignored), so a
# fresh machine with only Go (and the package registries) gets everything the tests need.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$PATH"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

STATICCHECK_VERSION=v0.8.2
ACTIONLINT_VERSION=v1.7.12
ACT_VERSION=v0.2.89
# The Copilot CLI versions the end-to-end tests run: the newest we support, and the one gh-aw
# v0.89.10 pins (its installer falls back to it). COPILOT_CLI_VERSION is the default.
COPILOT_CLI_VERSIONS=(1.0.102 1.0.83)
COPILOT_CLI_VERSION=${COPILOT_CLI_VERSIONS[0]}

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# go_tool NAME MODULE@VERSION: install a Go tool once into .tools/bin, keyed by version.
go_tool() {
  local name=$1 mod=$2 stamp="$TOOLS/bin/.$1.version"
  if [[ -x "$TOOLS/bin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$mod" ]]; then return 0; fi
  log "installing $mod"
  GOBIN="$TOOLS/bin" go install "$mod" || die "go install $mod failed"
  echo "$mod" >"$stamp"
}

need_staticcheck() { go_tool staticcheck "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"; }
need_actionlint() { go_tool actionlint "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"; }
need_act() { go_tool act "github.com/nektos/act@$ACT_VERSION"; }

# need_apt CMD PACKAGE...: install Debian packages unless CMD is already on PATH.
need_apt() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  [[ $(id -u) == 0 ]] || die "$cmd is missing and installing it needs root: apt-get install $*"
  log "apt-get install $*"
  if [[ ! -f "$TOOLS/.apt-updated" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    touch "$TOOLS/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# need_copilot_cli [VERSION]: the real Copilot CLI from npm, pinned (default COPILOT_CLI_VERSION),
# one npm directory per version; prints the path of its binary. Give each version its own
# package cache when running it (copilot_pkg_cache VERSION): with auto-update on, a CLI runs the
# newest package in its cache, whatever version was installed.
need_copilot_cli() {
  local version=${1:-$COPILOT_CLI_VERSION}
  local dir="$TOOLS/npm-copilot-$version"
  if [[ ! -f "$dir/node_modules/@github/copilot/package.json" ]] ||
     ! grep -q "\"version\": \"$version\"" "$dir/node_modules/@github/copilot/package.json"; then
    # A machine with only Go gets Node.js and npm from Debian (the CLI's linux-x64 package is a
    # standalone binary, so the distribution's Node version is enough for its loader).
    need_apt npm nodejs npm
    log "npm install @github/copilot@$version"
    mkdir -p "$dir"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "@github/copilot@$version" >&2) ||
      die "npm install @github/copilot@$version failed"
  fi
  echo "$dir/node_modules/.bin/copilot"
}

# The gh-aw compiler the gh-aw tests compile with: examples/gh-aw and the check-lock tests' locks.
# v0.89.10 pins awf 0.28.15 and records Copilot CLI 1.0.83.
GH_AW_VERSION=v0.89.10

# need_gh_aw: build the gh-aw compiler (GH_AW_VERSION) into .tools/bin/gh-aw once and print its
# path. `go install` refuses the module (its go.mod has a replace directive), so the module is
# downloaded with `go mod download`, copied somewhere writable and built there. Only the Go module
# proxy is needed, once; afterwards it builds and compiles offline from the module cache.
need_gh_aw() {
  local bin="$TOOLS/bin/gh-aw" stamp="$TOOLS/bin/.gh-aw.version"
  if [[ -x "$bin" && "$(cat "$stamp" 2>/dev/null)" == "$GH_AW_VERSION" ]]; then echo "$bin"; return 0; fi
  log "building the gh-aw compiler $GH_AW_VERSION from the Go module proxy"
  local dir src
  dir=$(cd "$TOOLS" && go mod download -json "github.com/github/gh-aw@$GH_AW_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') || die "go mod download github.com/github/gh-aw@$GH_AW_VERSION failed"
  [[ -d "$dir" ]] || die "go mod download gave no directory for github.com/github/gh-aw@$GH_AW_VERSION"
  src="$TOOLS/gh-aw-src-$GH_AW_VERSION"
  rm -rf "$src"
  cp -r "$dir" "$src" && chmod -R u+w "$src" || die "copy the gh-aw module to $src failed"
  # A release compiler's version and isRelease: its locks then pin released actions and images,
  # as a user's locks do.
  (cd "$src" && go build -trimpath -o "$bin" \
     -ldflags "-X main.version=$GH_AW_VERSION -X main.isRelease=true" ./cmd/gh-aw >&2) ||
    die "go build of gh-aw $GH_AW_VERSION failed (in $src)"
  rm -rf "$src"
  echo "$GH_AW_VERSION" >"$stamp"
  echo "$bin"
}

# copilot_pkg_cache VERSION: a package cache directory of that version's own (COPILOT_PKG_CACHE_HOME).
copilot_pkg_cache() {
  local d="$TOOLS/copilot-pkg-cache-$1"
  mkdir -p "$d"
  echo "$d"
}

# need_cli_sandbox WHAT: what running the real Copilot CLI in a loopback-only namespace under
# strace needs (root for unshare --net --mount; the tools, installed when missing).
need_cli_sandbox() {
  [[ $(id -u) == 0 ]] || die "$1 needs root (unshare --net --mount); run it as root or in CI"
  need_apt unshare util-linux
  need_apt ip iproute2
  need_apt strace strace
  need_apt python3 python3
}

# sandbox_loopback_up: inside a fresh network namespace, bring loopback up and make sure it is
# the only interface with an address (nothing can leave the machine from here).
sandbox_loopback_up() {
  ip link set lo up || die "could not bring up loopback in the namespace"
  if ip -o addr show | grep -v ' lo ' | grep -q inet; then die "the namespace has a non-loopback address; refusing to run"; fi
}

# copilot_home VERSION DIR: make DIR a fresh HOME for that CLI version (a fresh HOME per run: the
# CLI caches the user reply and its session state there) whose unpacked package (about 235 MB,
# seconds to unpack) is shared by every run of the version. 1.0.8x and later unpack into
# COPILOT_PKG_CACHE_HOME (set it to copilot_pkg_cache VERSION); older ones such as 1.0.43 ignore it
# and unpack into $HOME/.cache/copilot/pkg, which is made a link to the same cache.
copilot_home() {
  local cache
  cache=$(copilot_pkg_cache "$1")
  rm -rf "$2"
  mkdir -p "$2/.cache/copilot" "$cache/pkg"
  ln -s "$cache/pkg" "$2/.cache/copilot/pkg"
}

# act_checkout DIR: the checkout the act end-to-end workflows copy into their workspace: this tree
# (tracked and untracked files, not ignored ones), with a release binary for this machine and its
# checksum in dist/, so the action's resolve step takes its checksum path; committed, because act
# reads its HEAD.
act_checkout() {
  local dir=$1
  mkdir -p "$dir"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | grep -zv '^dist/copilot-route-' | tar --null -T - -cf -) |
    tar -xf - -C "$dir" || die "could not copy the tree to $dir"
  TARGETS="linux/$(go env GOARCH)" bash "$ROOT/scripts/build-dist.sh" v0.0.0-e2e "$dir/dist" >/dev/null || die "build-dist failed"
  (cd "$dir" && git init -q . && git add -A && git -c user.email=e2e@localhost -c user.name=e2e commit -qm e2e) ||
    die "could not make the snapshot a git repository (act reads its HEAD)"
}

# ACT_HOST_FLAGS: act in host mode with no helper servers on outbound addresses (there are none in
# the sandboxes), no pulls, no action downloads, JSON log lines.
ACT_HOST_FLAGS=(-P ubuntu-latest=-self-hosted --no-cache-server --cache-server-addr 127.0.0.1
  --artifact-server-addr 127.0.0.1 --action-offline-mode --pull=false --json)

# build_binary: build copilot-route into .tools/bin and print its path.
build_binary() {
  go build -o "$TOOLS/bin/copilot-route" "$ROOT/cmd/copilot-route" || die "go build failed"
  echo "$TOOLS/bin/copilot-route"
}
