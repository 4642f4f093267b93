"""Turns the results of `scripts/bench.sh flood` into the flood table of BENCHMARKS.md.

usage: bench_flood_report.py RESULTS_DIR BENCHMARKS.md

RESULTS_DIR holds results.jsonl (one `custos bench flood -o json` report per line, plus "run")
and meta.txt. The peer of every figure is the same writer's latency in the quiet phases of the
same measurement; figures are medians over the runs with their ranges. Nothing is hard-coded:
the verdict against issue #5's target (p99 under flood at most 2x the quiet p99) follows from
the measured ratios, and a run whose legitimate writes failed or whose flood was answered
otherwise than with UNAUTHENTICATED is reported as such.
"""

import json
import pathlib
import re
import statistics
import sys

OUT = pathlib.Path(sys.argv[1])
MD = pathlib.Path(sys.argv[2])
TARGET = 2.0

results = [json.loads(l) for l in (OUT / "results.jsonl").read_text().splitlines() if l.strip()]
meta = dict(l.split("=", 1) for l in (OUT / "meta.txt").read_text().splitlines() if "=" in l)
sizes = sorted({r["flood_loops"] for r in results})


def med(vals):
    return statistics.median(vals) if vals else None


def rng(vals, fmt):
    if not vals:
        return "–"
    return f"{fmt(med(vals))} [{fmt(min(vals))}–{fmt(max(vals))}]"


f2 = lambda v: f"{v:.2f}"
f0 = lambda v: f"{v:,.0f}"
fx = lambda v: f"{v:.2f}×"


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:.0f}"


def foreign_s(r):
    """Busy CPU of the machine in the phases that was neither the servers nor the generator."""
    q, f = r["quiet"], r["flood"]
    busy = q["machine_busy_s"] + f["machine_busy_s"]
    return max(0.0, busy - q["servers_cpu_s"] - f["servers_cpu_s"] - r["client_cpu_s"])


lines = [
    f"Run {meta['date']} at commit `{meta['commit']}`, {meta['cpus']} CPUs, release build, "
    f"{meta['runs']} runs per flood size (medians; ranges in brackets; a fresh cluster per run, "
    f"the sizes in alternating order), each run {meta['bursts']} × ({int(meta['quiet_ms']) / 1000:g} s "
    f"quiet + {int(meta['flood_ms']) / 1000:g} s flood), idle gate {meta['idle_gate']}. "
    "The latency columns are medians of each figure over the runs; the ratio columns are medians "
    "of each run's own ratio (so they are not the quotients of the latency columns).",
    "",
    "| flood loops | refusals/s | writer p50 ms quiet / flood | writer p99 ms quiet / flood "
    "| **p99 flood/quiet** | p50 flood/quiet | writes quiet / flood | flooded member CPU in flood phases "
    "| flooded member RSS MiB before → after | target p99 ≤ 2× |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
verdicts = []
for k in sizes:
    rs = [r for r in results if r["flood_loops"] == k]
    p99r = [r["p99_ratio"] for r in rs]
    met = sum(1 for v in p99r if v <= TARGET)
    m = med(p99r)
    verdict = ("**met**" if m <= TARGET else "**missed**") + f" (median {m:.3f}×; {met}/{len(rs)} runs ≤ 2×)"
    verdicts.append((k, m, met, len(rs)))
    lat = lambda phase, p: med([r[phase]["latency_ms"][p] for r in rs])
    cpu_share = [100 * r["flood"]["flooded_cpu_s"] / r["flood"]["elapsed_s"] for r in rs if r["flood"]["elapsed_s"] > 0]
    rss = [(r.get("flooded_rss_kib_before"), r.get("flooded_rss_kib_after")) for r in rs]
    rss_txt = ", ".join(f"{mib(b)} → {mib(a)}" for b, a in rss)
    lines.append(
        f"| {k} | {rng([r['refusals_per_s'] for r in rs], f0)} "
        f"| {f2(lat('quiet', 'p50'))} / {f2(lat('flood', 'p50'))} "
        f"| {f2(lat('quiet', 'p99'))} / {f2(lat('flood', 'p99'))} "
        f"| {rng(p99r, fx)} | {rng([r['p50_ratio'] for r in rs], fx)} "
        f"| {f0(med([r['quiet']['writes'] for r in rs]))} / {f0(med([r['flood']['writes'] for r in rs]))} "
        f"| {rng(cpu_share, lambda v: f'{v:.0f}%')} of a core "
        f"| {rss_txt} | {verdict} |"
    )

lines += [
    "",
    "Every run (\"foreign\" = busy CPU of the machine in the measured phases that was neither the "
    "servers nor the load generator; large values make a run suspect):",
    "",
    "| run | flood loops | p99 ms quiet / flood | p99 flood/quiet | p50 flood/quiet | refusals | "
    "unexpected flood answers | failed legitimate writes | idle gate | foreign CPU s |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for r in sorted(results, key=lambda r: (r["run"], r["flood_loops"])):
    gate = r.get("idle_gate")
    gate_txt = "–" if not gate else ("passed" if gate["passed"] else f"not passed ({gate['busy_pct']:.0f}% busy)")
    lines.append(
        f"| {r['run']} | {r['flood_loops']} | {f2(r['quiet']['latency_ms']['p99'])} / "
        f"{f2(r['flood']['latency_ms']['p99'])} | {fx(r['p99_ratio'])} | {fx(r['p50_ratio'])} "
        f"| {r['refusals']:,} | {r['flood_errors']} "
        f"| {r['quiet']['write_errors'] + r['flood']['write_errors']} | {gate_txt} | {foreign_s(r):.1f} |"
    )

summary = "; ".join(
    f"{k} flood loops: {'met' if m <= TARGET else 'missed'} (median p99 ratio {m:.3f}×, {met}/{n} runs ≤ 2×)"
    for k, m, met, n in verdicts
)
lines += ["", f"Verdict on this machine, issue #5's target (p99 under flood ≤ 2× quiet): {summary}."]

table = "\n".join(lines)
text = MD.read_text()
pattern = r"(<!-- flood-bench:begin -->\n).*?(<!-- flood-bench:end -->)"
if not re.search(pattern, text, flags=re.S):
    sys.exit(f"{MD} has no flood-bench markers")
MD.write_text(re.sub(pattern, lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S))
print(table)
