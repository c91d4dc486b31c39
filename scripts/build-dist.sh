#!/usr/bin/env bash
# build-dist.sh [VERSION] [OUTDIR]
# Reproducible release builds of copilot-route for linux/amd64, linux/arm64, darwin/amd64 and
# darwin/arm64, plus SHA256SUMS. The same source and Go version give the same bytes: -trimpath
# (no local paths), an empty build id, no VCS stamp, CGO off, and a version fixed by the caller.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${1:-$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)}
out=${2:-$ROOT/dist}
[[ "$version" =~ ^[A-Za-z0-9._+-]+$ ]] || { echo "FAIL: version $version has characters outside [A-Za-z0-9._+-]" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# TARGETS="linux/amd64" limits the build (the reproducibility test builds one target twice).
read -r -a targets <<<"${TARGETS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}"
cd "$ROOT"
for t in "${targets[@]}"; do
  goos=${t%/*} goarch=${t#*/}
  name="copilot-route-$goos-$goarch"
  echo "building $name ($version)" >&2
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOFLAGS=-mod=readonly \
    go build -trimpath -buildvcs=false \
      -ldflags "-buildid= -s -w -X github.com/copilot-route/copilot-route/internal/cli.Version=$version" \
      -o "$out/$name" ./cmd/copilot-route
done

sumcmd() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
names=()
for t in "${targets[@]}"; do names+=("copilot-route-${t%/*}-${t#*/}"); done
(cd "$out" && sumcmd "${names[@]}" >SHA256SUMS)
cat "$out/SHA256SUMS"
