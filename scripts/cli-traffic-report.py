#!/usr/bin/env python3
"""Summarise the recordings of scripts/record-cli-traffic.sh.

Usage: cli-traffic-report.py DIR   (DIR/VERSION/CELL[.N]/ as the recorder writes them)

Writes DIR/routes.tsv (one line per request of every run), DIR/routes-summary.tsv (one line per
distinct request of a version and cell, with in how many runs it was seen) and DIR/report.md (per mode, a table of
version x (host, METHOD, path) with the credential each carried; then every METHOD + path
normalised, the upstream it belongs to, and which versions and modes send it).
"""
import collections
import json
import os
import re
import sys

ROLES = {
    "proxy.route.test": "COPILOT_API_URL",
    "rest.route.test": "COPILOT_DEBUG_GITHUB_API_URL",
    "byok.route.test": "COPILOT_PROVIDER_BASE_URL",
}

# Modes of the brief, in order, and the cells of each.
MODES = [
    ("1. Documented: ghs_ token, COPILOT_API_URL, GH_HOST=acme.ghe.com",
     ["documented", "documented-claude-sonnet-4.5", "documented-chat-only", "documented-no-telemetry"]),
    ("2. Documented + COPILOT_DEBUG_GITHUB_API_URL", ["documented-debug"]),
    ("3. gho_/ghu_/github_pat_ tokens with COPILOT_API_URL (with and without the DEBUG variable)",
     ["gho", "gho-debug", "ghu", "ghu-debug", "pat", "pat-debug"]),
    ("4. GH_HOST without COPILOT_API_URL", ["gh-host-only-ghs", "gh-host-only-gho"]),
    ("5. BYOK", ["byok-offline-openai", "byok-offline-responses", "byok-offline-anthropic",
                 "byok-online-openai", "byok-online-openai-api-url"]),
    ("6. GHES (GH_HOST=github.example.com) with COPILOT_API_URL",
     ["ghes-seat-on-tenant", "ghes-seat-on-github.com", "ghes-seat-on-tenant-gho"]),
]

ID = re.compile(r"/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9]+|[0-9a-f]{32,})(?=/|$)")


def label(cell):
    """A cell's name without its mode's prefix, for table values."""
    for prefix in ("documented-", "gh-host-only-", "byok-", "ghes-seat-on-"):
        if cell.startswith(prefix):
            return cell[len(prefix):]
    return cell


def vkey(v):
    return tuple(int(x) for x in v.split(".")) if re.fullmatch(r"[0-9.]+", v) else (0,)


def host_label(host):
    host = host.split(":")[0]
    return ROLES.get(host, host)


def normalise(path):
    """Query dropped; ids (numbers, UUIDs, long hex) shown as {id}."""
    return ID.sub("/{id}", path)


def upstream(host, path):
    h = host.split(":")[0]
    if h == "byok.route.test":
        return "BYOK provider (COPILOT_PROVIDER_BASE_URL)"
    if h == "proxy.route.test" or h.startswith("copilot-api.") or h.endswith("githubcopilot.com") and h.startswith("api."):
        return "Copilot API"
    if "telemetry" in h:
        return "telemetry"
    return "REST API"


def credential(r, cell):
    """How the request carried a credential, e.g. 'Authorization: Bearer (GitHub token)'."""
    if not r.get("auth_header"):
        return "none"
    sha = r.get("auth_token_sha256", "")
    who = {cell.get("token_sha256"): "GitHub token", cell.get("key_sha256"): "provider key"}.get(sha, "other")
    scheme = r.get("auth_scheme", "")
    return "%s: %s(%s)" % (r["auth_header"], scheme + " " if scheme else "", who)


def short_cred(c):
    if c == "none":
        return "–"
    m = re.match(r"(\S+): (?:(\S+) )?\((.*)\)", c)
    hdr, scheme, who = m.groups()
    parts = [{"Authorization": ""}.get(hdr, hdr.lower()), scheme or "",
             {"GitHub token": "", "provider key": "key", "other": "?"}[who]]
    return " ".join(p for p in parts if p)


def load(root):
    runs = []
    for version in sorted(os.listdir(root), key=vkey):
        vdir = os.path.join(root, version)
        if not os.path.isdir(vdir):
            continue
        for name in sorted(os.listdir(vdir)):
            d = os.path.join(vdir, name)
            try:
                cell = json.load(open(os.path.join(d, "cell.json")))
                result = json.load(open(os.path.join(d, "result.json")))
            except (OSError, ValueError):
                continue
            reqs = []
            if os.path.exists(os.path.join(d, "requests.jsonl")):
                reqs = [json.loads(l) for l in open(os.path.join(d, "requests.jsonl")) if l.strip()]
            reqs.sort(key=lambda r: r["at"])
            dns = []
            if os.path.exists(os.path.join(d, "dns.log")):
                dns = sorted({l.split()[0] for l in open(os.path.join(d, "dns.log")) if l.strip()})
            odd = []
            if os.path.exists(os.path.join(d, "connects.txt")):
                for l in open(os.path.join(d, "connects.txt")):
                    m = re.search(r"sa_family=AF_INET6?, sin6?_port=htons\((\d+)\).*?(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")", l)
                    if m and m.group(1) not in ("443", "53"):
                        odd.append("%s:%s" % (m.group(2) or m.group(3), m.group(1)))
            out = open(os.path.join(d, "cli.out"), errors="replace").read() if os.path.exists(os.path.join(d, "cli.out")) else ""
            err = open(os.path.join(d, "cli.err"), errors="replace").read() if os.path.exists(os.path.join(d, "cli.err")) else ""
            agents = sorted({m for r in reqs for m in re.findall(r"copilot(?:-cli)?/([0-9][0-9.]*)", r.get("user_agent", ""))})
            runs.append(dict(agents=agents, version=cell["version"], cell=cell["cell"], dir=d, meta=cell, rc=result["rc"], ms=result["ms"],
                             reqs=reqs, dns=dns, odd=sorted(set(odd)), replied="recorded reply" in out, err=err))
    return runs


def main():
    root = sys.argv[1]
    runs = load(root)
    versions = sorted({r["version"] for r in runs}, key=vkey, reverse=True)

    with open(os.path.join(root, "routes.tsv"), "w") as f:
        f.write("version\tcell\trun\tseq\tt_ms\thost\tmethod\tpath\tquery\tstatus\tproto\tcredential\tmodel\trpc_method\n")
        for run in runs:
            t0 = run["reqs"][0]["at"] if run["reqs"] else None
            for i, r in enumerate(run["reqs"]):
                f.write("\t".join(str(x) for x in [
                    run["version"], run["cell"], os.path.basename(run["dir"]), i, ms_between(t0, r["at"]),
                    host_label(r["host"]), r["method"], r["path"], r.get("query", ""), r.get("status", ""),
                    r["proto"], credential(r, run["meta"]), r.get("model", ""), r.get("rpc_method", "")]) + "\n")

    by = collections.defaultdict(list)  # (version, cell) -> runs
    for run in runs:
        by[(run["version"], run["cell"])].append(run)

    # The same, one line per distinct request shape of a version and cell, with in how many of its
    # runs it was seen: small enough to keep in the repository (testdata/cli-traffic.tsv).
    shapes = collections.OrderedDict()
    for run in runs:
        seen = set()
        for r in run["reqs"]:
            k = (run["version"], run["cell"], host_label(r["host"]), r["method"], r["path"], r.get("query", ""),
                 r["proto"], credential(r, run["meta"]), str(r.get("status", "")))
            if k not in seen:
                seen.add(k)
                shapes[k] = shapes.get(k, 0) + 1
    with open(os.path.join(root, "routes-summary.tsv"), "w") as f:
        f.write("version\tcell\thost\tmethod\tpath\tquery\tproto\tcredential\tstatus\truns\n")
        for k, n in shapes.items():
            f.write("\t".join(k) + "\t%d/%d\n" % (n, len(by[(k[0], k[1])])))

    md = []
    md.append("Recorded by `scripts/record-cli-traffic.sh` (CLI versions %s). Cells: `%s` (the "
              "replying host, `METHOD`, path; `?` marks a query). A table cell gives how many such requests "
              "one run sent and the credential: `Bearer`/`bearer`/`token` = `Authorization` with that scheme "
              "and the GitHub token, `… key` = the BYOK provider key, `x-api-key key` = that header, `–` = no "
              "credential; `(k/n)` = in k of n runs only; blank = never sent.\n" % (", ".join(versions),
                                                                                     "`, `".join(sorted({r['cell'] for r in runs}))))
    md.append("\n### Per run\n\n| version | cell | exit | printed the reply | ms | requests | User-Agent versions | names resolved (DNS) | other connects |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode, cells in MODES:
        for cell in cells:
            for v in versions:
                for run in by.get((v, cell), []):
                    md.append("| %s | %s | %d | %s | %d | %d | %s | %s | %s |" % (
                        v, os.path.basename(run["dir"]), run["rc"], "yes" if run["replied"] else "**no**", run["ms"],
                        len(run["reqs"]), ", ".join(run["agents"]) or "–", ", ".join(run["dns"]) or "–", ", ".join(run["odd"]) or "–"))

    # Per mode, one table: a row per (host, METHOD, path) any cell of the mode sent, a column per
    # version. A value names the cells it was seen in when that is not all of the mode's cells.
    for mode, cells in MODES:
        present = [c for c in cells if any((v, c) in by for v in versions)]
        if not present:
            continue
        md.append("\n### %s\n" % mode)
        for cell in present:
            meta = next(r["meta"] for v in versions for r in by.get((v, cell), []))
            md.append("- `%s`: token `%s`%s%s" % (cell, meta["token_kind"], ", `" + meta["env"] + "`" if meta["env"] else "",
                                                  (", `--model %s`" % meta["model"]) if meta["model"] else ""))
        md.append("")
        rows = collections.OrderedDict()
        for v in versions:
            for cell in present:
                rs = by.get((v, cell), [])
                for run in rs:
                    seen = collections.Counter()
                    creds = collections.defaultdict(set)
                    for r in run["reqs"]:
                        k = (host_label(r["host"]), r["method"], r["path"] + ("?…" if r.get("query") else ""))
                        seen[k] += 1
                        creds[k].add(short_cred(credential(r, run["meta"])))
                    for k, n in seen.items():
                        e = rows.setdefault(k, {}).setdefault(v, {"cells": collections.Counter(), "counts": set(), "creds": set()})
                        e["cells"][cell] += 1
                        e["counts"].add(n)
                        e["creds"] |= creds[k]
        md.append("| host | method | path | " + " | ".join(versions) + " |")
        md.append("| --- | --- | --- | " + " | ".join("---" for _ in versions) + " |")
        for (h, m, p), row in rows.items():
            cols = []
            for v in versions:
                e = row.get(v)
                if not e:
                    cols.append("")
                    continue
                counts = sorted(e["counts"])
                s = "%s× %s" % (counts[0] if len(counts) == 1 else "%d–%d" % (counts[0], counts[-1]), "/".join(sorted(e["creds"])))
                # Cells where this version ran at all (sent anything): a flag it refuses is no cell.
                ran = [c for c in present if any(r["reqs"] for r in by.get((v, c), []))]
                if any(e["cells"][c] < len(by[(v, c)]) for c in ran):
                    s += " (" + ", ".join(
                        label(c) + ("" if e["cells"][c] == len(by[(v, c)]) else " %d/%d runs" % (e["cells"][c], len(by[(v, c)])))
                        for c in ran if e["cells"][c]) + ")"
                cols.append(s)
            md.append("| %s | %s | `%s` | %s |" % (h, m, p, " | ".join(cols)))
        md.append("")

    # Routes the proxy must forward: every METHOD + normalised path, with its upstream and who sends it.
    routes = collections.OrderedDict()
    for run in runs:
        mode = next((m.split(".")[0] for m, cs in MODES if run["cell"] in cs), "?")
        for r in run["reqs"]:
            k = (upstream(r["host"], r["path"]), r["method"], normalise(r["path"]))
            e = routes.setdefault(k, {"versions": set(), "modes": set(), "hosts": set(), "status": set(), "creds": set()})
            e["versions"].add(run["version"])
            e["modes"].add(mode)
            e["hosts"].add(host_label(r["host"]))
            e["status"].add(str(r.get("status", "")))
            e["creds"].add(short_cred(credential(r, run["meta"])))
    md.append("\n### All routes seen (normalised: query dropped, ids as `{id}`)\n")
    md.append("| upstream | method | path | sent to | versions | modes | credential | fake's status |")
    md.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (up, m, p), e in sorted(routes.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        md.append("| %s | %s | `%s` | %s | %s | %s | %s | %s |" % (
            up, m, p, ", ".join(sorted(e["hosts"])), ", ".join(sorted(e["versions"], key=vkey, reverse=True)),
            ", ".join(sorted(e["modes"])), " ".join(sorted(e["creds"])), ", ".join(sorted(e["status"]))))

    with open(os.path.join(root, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("wrote %s and %s (%d runs)" % (os.path.join(root, "routes.tsv"), os.path.join(root, "report.md"), len(runs)), file=sys.stderr)


def ms_between(a, b):
    from datetime import datetime
    if not a:
        return 0
    p = lambda s: datetime.fromisoformat(s[:26].rstrip("Z") + "+00:00")
    return int((p(b) - p(a)).total_seconds() * 1000)


if __name__ == "__main__":
    main()
