#!/usr/bin/env bash
# Runs every test of copilot-route. Installs what it needs (pinned), starts what it needs, and
# fails loudly. CI runs exactly this (.ci/run) on a clean clone, as root, with only the package
# registries reachable.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
start=$(date +%s)

log "go mod download"
go mod download || die "go mod download failed"

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))
[[ -z "$unformatted" ]] || die "gofmt would change: $unformatted"

log "go vet"
go vet ./... || die "go vet failed"

log "staticcheck"
need_staticcheck
staticcheck ./... || die "staticcheck failed"

log "the gh-aw compiler $GH_AW_VERSION (the check-lock tests compile their locks with it)"
GH_AW_BIN=$(need_gh_aw)
export GH_AW_BIN

log "go test -race"
go test -race -count=1 ./... || die "go test failed"

log "fuzz: URL/host classification and domain validation (short runs; FUZZTIME=${FUZZTIME:=10s} each)"
for target in internal/platform:FuzzClassify internal/platform:FuzzDetect internal/allowlist:FuzzDomain; do
  pkg=${target%%:*} fn=${target##*:}
  go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" "./$pkg" ||
    die "fuzzing $fn in $pkg found a failure: rerun 'go test -run='^\$' -fuzz=^${fn}\$ ./$pkg'; the input is saved under $pkg/testdata/fuzz/$fn"
done

log "end-to-end: the real Copilot CLI through copilot-route serve to the fake tenant (private network namespace)"
"$ROOT/scripts/e2e-copilot-cli.sh" || die "the Copilot CLI end-to-end test failed: rerun scripts/e2e-copilot-cli.sh (COPILOT_E2E_KEEP=1 keeps its logs)"

log "actionlint (workflows, and every workflow snippet of README.md and docs/; local actions ./ and ./stop are parsed through them) and the action metadata check"
need_actionlint
actionlint .github/workflows/*.yml testdata/workflows/*.yml || die "actionlint failed"
snippet_dir=$(mktemp -d)
go run ./scripts/internal/snippets "$snippet_dir" README.md docs/*.md >/dev/null || die "could not extract the docs' workflow snippets"
actionlint "$snippet_dir"/*.yml || die "actionlint failed on a workflow snippet of the docs (file names say which file and line)"
rm -rf "$snippet_dir"
bash scripts/check-action-metadata.sh action.yml stop/action.yml ||
  die "action metadata check failed: pass inputs to run: scripts through env:, give every run step a shell"
if bash scripts/check-action-metadata.sh testdata/actions/injection/action.yml >/dev/null; then
  die "check-action-metadata.sh accepted testdata/actions/injection/action.yml, which expands an input in a script"
fi

log "gh-aw examples: detect's frontmatter, compiled by gh-aw $GH_AW_VERSION with 0 errors, locks up to date, check-lock verdicts"
bash scripts/test-gh-aw.sh || die "the gh-aw examples failed: rerun scripts/test-gh-aw.sh (UPDATE=1 rewrites the committed locks)"

log "the action's resolve step (checksummed release binary, tampered binary, build from source, no Go)"
bash scripts/test-resolve-binary.sh || die "scripts/resolve-binary.sh misbehaves"

log "reproducible release build (scripts/build-dist.sh twice, different paths and caches, byte-identical)"
bash scripts/test-reproducible.sh || die "the release build is not reproducible"

log "end-to-end: the action under nektos/act (host mode, loopback-only sandbox, fake tenant as acme.ghe.com)"
bash scripts/e2e-act.sh || die "the act end-to-end test failed: rerun scripts/e2e-act.sh (E2E_KEEP=1 keeps its logs)"

log "end-to-end inside the firewall: README's workflow under act, awf's topology from real parts (Squid, iptables, namespaces), the real Copilot CLI"
bash scripts/e2e-awf.sh || die "the awf end-to-end test failed: rerun scripts/e2e-awf.sh (E2E_KEEP=1 keeps its logs)"

log "fuzz (short): request router, advertised-endpoint validation, exchange-reply parser (FUZZTIME=${FUZZTIME:-10s} each)"
FUZZTIME=${FUZZTIME:-10s} bash scripts/fuzz.sh short FuzzRoute FuzzValidateEndpoint FuzzParseExchangeReply ||
  die "a fuzz target failed: see above (scripts/fuzz.sh long runs them for minutes)"

log "soak (CI mode, about a minute): 1,000 concurrent 500-chunk streams hash-checked, then mixed traffic with fake-tenant restarts"
bash scripts/soak.sh ci || die "the soak failed: rerun scripts/soak.sh ci"

log "benchmark smoke run (BENCH_QUICK=1 scripts/bench.sh: figures printed, nothing asserted; scripts/bench.sh is the real run)"
BENCH_QUICK=1 BENCH_OUT="$TOOLS/bench-results-quick.json" bash scripts/bench.sh ||
  die "the benchmark smoke run failed: rerun BENCH_QUICK=1 scripts/bench.sh"

log "all tests passed in $(( $(date +%s) - start ))s"
