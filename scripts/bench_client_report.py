#!/usr/bin/env python3
"""Writes the table of `scripts/bench.sh client` (issue #23) into BENCHMARKS.md.

Usage: bench_client_report.py RESULTS_DIR BENCHMARKS_MD

Reads RESULTS_DIR/results.jsonl (one scripts/bench_client.py report per shape, system and run)
and RESULTS_DIR/meta.txt; replaces the text between `<!-- client-bench:begin -->` and
`<!-- client-bench:end -->` (the markers are added at the end of the file when missing) with
the medians over runs per shape and system, custos/etcd ratios of the medians, and the run
conditions. A run with errors is reported, never hidden: the table says how many.
"""

import json
import pathlib
import re
import statistics
import sys

BEGIN, END = "<!-- client-bench:begin -->", "<!-- client-bench:end -->"
SHAPES = [
    ("seq-write", "sequential writes (1 writer)"),
    ("write-10", "10 concurrent writers"),
    ("write-100", "100 concurrent writers"),
    ("write-100-leader", "100 concurrent writers, leader only"),
    ("read-lin", "linearizable readers"),
    ("read-ser", "serializable readers"),
]


def main():
    out, md = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    meta = dict(l.split("=", 1) for l in (out / "meta.txt").read_text().splitlines() if "=" in l)
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines() if l.strip()]
    by = {}
    for r in rows:
        by.setdefault((r["shape"], r["system"]), []).append(r)
    runs = sorted({r["run"] for r in rows})

    med = lambda xs: statistics.median(xs) if xs else float("nan")

    def stat(shape, system, f):
        return med([f(r) for r in by.get((shape, system), [])])

    tput = lambda r: r["ops_per_s"]
    p50 = lambda r: r["latency_ms"]["p50"]
    p99 = lambda r: r["latency_ms"]["p99"]
    cpu = lambda r: r["server_cpu_ms_per_op"] or 0.0
    ccpu = lambda r: r["client_cpu_ms_per_op"] or 0.0

    def rng(shape, system, f, fmt):
        xs = [f(r) for r in by.get((shape, system), [])]
        return f"{fmt(med(xs))} [{fmt(min(xs))}–{fmt(max(xs))}]" if xs else "–"

    n0 = lambda v: f"{v:,.0f}"
    f2 = lambda v: f"{v:.2f}"
    f3 = lambda v: f"{v:.3f}"

    def on_leader(rs):
        xs = [r.get("clients_on_leader") for r in sorted(rs, key=lambda r: r["run"])]
        return "?" if None in xs else " / ".join(str(x) for x in xs)

    def gave_up(rs):
        return sum(1 for r in rs if (r.get("idle_gate") or {}).get("gave_up"))

    def layout(shape):
        r = (by.get((shape, "custos")) or by.get((shape, "etcd")))[0]
        t = r["threads_per_proc"]
        threads = f"{t[0]}" if len(set(t)) == 1 else f"{min(t)}–{max(t)}"
        return f"{r['clients']} ({r['procs']} × {threads})"

    lines = []
    lines.append(
        f"Run {meta.get('date', '?')}, scripts at commit `{meta.get('commit', '?')}`, custos "
        f"binary `{meta.get('binary', '?')}` ({meta.get('openraft', 'openraft ?')}), "
        f"{meta.get('etcd', 'etcd ?')}, "
        f"{meta.get('cpus', '?')} CPUs, {len(runs)} runs per shape and system (medians; ranges "
        f"in brackets), systems alternating run by run on fresh clusters, idle gate "
        f"{meta.get('idle_gate', '?')}. Client: {rows[0].get('client', '?')}; clients = worker "
        f"processes × threads, one channel (own TCP connection) per client. "
        f"{int(meta.get('keys', 0)):,} preloaded volumes / keys for the reads.")
    lines.append("")
    ops = {}
    for shape, _ in SHAPES:
        rs = by.get((shape, "custos")) or by.get((shape, "etcd")) or []
        if rs:
            ops[shape] = rs[0]["ops_requested"]
    lines.append("Operations per shape and run: " + ", ".join(f"{s} {ops[s]:,}" for s, _ in SHAPES if s in ops) + ".")
    lines.append("")
    lines.append("| shape | clients (procs × threads) | system | ops/s | p50 ms | p99 ms | server CPU ms/op | client CPU ms/op | clients on the leader (per run) | foreign CPU s (max); idle gate gave up | errors |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape, label in SHAPES:
        for system in ("custos", "etcd"):
            rs = by.get((shape, system), [])
            if not rs:
                continue
            errors = sum(r["errors"] for r in rs)
            lines.append(
                f"| {label} | {layout(shape)} | {system} | {rng(shape, system, tput, n0)} | "
                f"{rng(shape, system, p50, f2)} | {rng(shape, system, p99, f2)} | "
                f"{rng(shape, system, cpu, f3)} | {f3(stat(shape, system, ccpu))} | "
                f"{on_leader(rs)} | "
                f"{max(r['foreign_cpu_s'] for r in rs):.1f}; {gave_up(rs)}/{len(rs)} | {errors} |")
    lines.append("")
    lines.append("custos / etcd (ratios of the medians; throughput: higher is better for custos; "
                 "latency and CPU: lower is):")
    lines.append("")
    lines.append("| shape | throughput | p50 | p99 | server CPU per op |")
    lines.append("|---|---|---|---|---|")
    for shape, label in SHAPES:
        if not by.get((shape, "custos")) or not by.get((shape, "etcd")):
            continue
        ratio = lambda f: stat(shape, "custos", f) / stat(shape, "etcd", f)
        lines.append(f"| {label} | {ratio(tput):.2f}× | {ratio(p50):.2f}× | {ratio(p99):.2f}× | {ratio(cpu):.2f}× |")
    lines.append("")
    lines.append("Run conditions (\"foreign\" = busy CPU of the machine that was neither the "
                 "servers nor the Python clients, e.g. another engineer's build; large values "
                 "make a run suspect):")
    lines.append("")
    lines.append("| system | shape runs | idle gate passed | foreign CPU s per shape run (median [max]) | Python clients' share of the machine's busy CPU (median) | errors |")
    lines.append("|---|---|---|---|---|---|")
    for system in ("custos", "etcd"):
        rs = [r for r in rows if r["system"] == system]
        if not rs:
            continue
        passed = sum(1 for r in rs if not (r.get("idle_gate") or {}).get("gave_up"))
        foreign = [r["foreign_cpu_s"] for r in rs]
        share = [r["client_cpu_s"] / r["machine_busy_s"] for r in rs if r["machine_busy_s"] > 0]
        lines.append(f"| {system} | {len(rs)} | {passed}/{len(rs)} | {med(foreign):.1f} [{max(foreign):.1f}] | "
                     f"{100 * med(share):.0f}% | {sum(r['errors'] for r in rs)} |")
    firsts = sorted({f"{r['system']} {r['shape']}: {r['first_error']}" for r in rows if r.get("first_error")})
    if firsts:
        lines.append("")
        lines.append("First errors: " + "; ".join(firsts))
    table = "\n".join(lines)

    text = md.read_text() if md.exists() else ""
    if BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    text = re.sub(re.escape(BEGIN) + r"\n.*?" + re.escape(END),
                  lambda m: BEGIN + "\n" + table + "\n" + END, text, flags=re.S)
    md.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
