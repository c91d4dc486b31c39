#!/usr/bin/env bash
# check-action-metadata.sh FILE...
# The checks actionlint does not make on action metadata files (action.yml): every `run:` script
# must be free of `${{ ... }}` expressions that read inputs (inputs reach scripts through `env:`
# only; an input expanded into a script is a script-injection hole), and the file must be a
# composite action whose steps each name a shell. Exit 1 with one line per finding.
set -euo pipefail
status=0
for f in "$@"; do
  [[ -f "$f" ]] || { echo "$f: no such file"; status=1; continue; }
  out=$(awk -v file="$f" '
    function indent(s) { match(s, /^ */); return RLENGTH }
    # Report ${{ ... inputs. ... }} (any spacing, any expression mentioning inputs) in script text.
    function scan(text, line) {
      t = text
      while (match(t, /\$\{\{[^}]*\}\}/)) {
        e = substr(t, RSTART, RLENGTH)
        if (e ~ /inputs[.[]/) { printf "%s:%d: run: script expands %s: pass it through env: instead\n", file, line, e }
        t = substr(t, RSTART + RLENGTH)
      }
      if (t ~ /\$\{\{[^}]*inputs[.[]/) { printf "%s:%d: run: script expands an input: pass it through env: instead\n", file, line }
    }
    /^[[:space:]]*#/ { next }
    {
      if (inrun) {
        if ($0 ~ /^[[:space:]]*$/ || indent($0) > runindent) { scan($0, NR); next }
        inrun = 0
      }
      if (match($0, /^ *(- +)?run: */)) {
        runindent = indent($0)
        if ($0 ~ /^ *- /) { runindent += 2 }
        rest = substr($0, RLENGTH + 1)
        scan(rest, NR)
        inrun = 1
      }
      if ($0 ~ /^ *using: *["'"'"']?composite/) { composite = 1 }
      if ($0 ~ /^ *(- +)?run: */) { runs++ }
      if ($0 ~ /^ *(- +)?shell: */) { shells++ }
      if ($0 ~ /\t/) { printf "%s:%d: tab character (YAML indentation must be spaces)\n", file, NR }
    }
    END {
      if (!composite) { printf "%s: not a composite action (runs.using: composite)\n", file }
      if (runs != shells) { printf "%s: %d run: steps but %d shell: keys (a composite run step needs shell:)\n", file, runs, shells }
    }' "$f")
  if [[ -n "$out" ]]; then echo "$out"; status=1; fi
done
exit $status
