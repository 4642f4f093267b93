#!/usr/bin/env python3
"""Writes the overload benchmark's table (issue #20) into BENCHMARKS.md between
<!-- overload-bench:begin --> and <!-- overload-bench:end --> from OUT/report.json and OUT/meta.txt,
and prints it. Usage: bench_overload_report.py OUT BENCHMARKS.md"""
import json
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1])
md = pathlib.Path(sys.argv[2])
r = json.loads((out / "report.json").read_text())
meta = dict(l.split("=", 1) for l in (out / "meta.txt").read_text().splitlines() if "=" in l)

def mib(kib):
    return f"{kib / 1024:.0f} MiB" if kib is not None else "n/a"

rows = [
    f"Run {meta.get('date')} at {meta.get('commit')} ({meta.get('cpus')} cores): {r['writers']} writers over "
    f"{r['connections']} connections for {r['duration_s']:.0f} s against 3 members (release, auth on, "
    f"audit retention {meta.get('audit_max_records', 'default')} records).",
    "",
    "| member | RSS at 1 min | RSS at end | max ÷ min RSS after 1 min (target ≤ 1.20) | max proposal queue | Raft term first → last | health answered |",
    "|---|---|---|---|---|---|---|",
]
samples = r["samples"]
after = [s for s in samples if s["at_s"] >= 60.0]
for i, spread in enumerate(r["rss_spread_after_first_minute"]):
    first = next((s["members"][i]["rss_kib"] for s in after), None)
    last = samples[-1]["members"][i]["rss_kib"] if samples else None
    answered = sum(1 for s in samples if s["members"][i]["health_answered"])
    q = r["max_queue_depth"][i]
    terms = [s["members"][i].get("term") for s in samples if s["members"][i].get("term") is not None]
    term = f"{terms[0]} → {terms[-1]}" if terms else "n/a"
    rows.append(
        f"| {i + 1} | {mib(first)} | {mib(last)} | {f'{spread:.3f}' if spread is not None else 'n/a'} | "
        f"{q if q is not None else 'n/a'} | {term} | {answered}/{len(samples)} |"
    )
rows += [
    "",
    f"Acknowledged writes: {r['acked']:,} ({r['acked_per_s']:.0f}/s); answered RESOURCE_EXHAUSTED "
    f"{r['exhausted']:,}, UNAVAILABLE {r['unavailable']:,}, other {r['other_errors']:,}"
    + (f" (first: {r['first_other_error']})" if r.get("first_other_error") else "")
    + f". Read back: {r['checked_volumes'] - r['lost']} of {r['checked_volumes']} volumes hold their last "
    f"acknowledged write (lost: {r['lost']}).",
    f"Longest stretch with no write acknowledged: {r.get('longest_stall_s', 0):.0f} s.",
]
disks = [meta.get(f"disk_node_{n}") for n in (1, 2, 3)]
if all(disks):
    rows.append("Left on disk per member at the end (store and local logs): "
                + ", ".join(f"{int(d) / 2**20:.0f} MiB" for d in disks) + ".")
table = "\n".join(rows)
text = md.read_text()
if "<!-- overload-bench:begin -->" not in text:
    text += "\n## Overload (issue #20)\n\n<!-- overload-bench:begin -->\n<!-- overload-bench:end -->\n"
text = re.sub(r"(<!-- overload-bench:begin -->\n).*?(<!-- overload-bench:end -->)",
              lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
md.write_text(text)
print(table)
