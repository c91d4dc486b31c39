#!/usr/bin/env bash
# Proves scripts/build-dist.sh is reproducible: the same target built twice, from two copies of
# the source at different paths and with two separate build caches, gives identical bytes.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
target=${TARGETS:-linux/amd64}
# One snapshot of the tree, unpacked twice: the working tree may change while we build.
git ls-files -z --cached --others --exclude-standard | grep -zv '^dist/copilot-route-' |
  tar --null -T - -cf "$work/src.tar" || die "snapshot of the source failed"
for i in 1 2; do
  mkdir -p "$work/src$i/tree-$i"
  tar -xf "$work/src.tar" -C "$work/src$i/tree-$i"
done
for i in 1 2; do
  GOCACHE="$work/cache$i" TARGETS="$target" bash "$work/src$i/tree-$i/scripts/build-dist.sh" v0.0.0-repro "$work/out$i" >/dev/null ||
    die "build $i failed"
done
name="copilot-route-${target%/*}-${target#*/}"
cmp "$work/out1/$name" "$work/out2/$name" || die "two builds of $name differ: the release build is not reproducible"
cmp "$work/out1/SHA256SUMS" "$work/out2/SHA256SUMS" || die "SHA256SUMS differ"
strings "$work/out1/$name" | grep -q "$work" && die "$name embeds the build path $work (-trimpath missing?)"
log "reproducible: $name built twice from different paths and caches is byte-identical ($(cut -c1-16 "$work/out1/SHA256SUMS")...)"
