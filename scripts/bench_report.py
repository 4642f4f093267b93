"""Turns the results of `scripts/bench.sh cluster` into BENCHMARKS.md tables and PNG plots.

usage: bench_report.py RESULTS_DIR BENCHMARKS.md PLOT_DIR

RESULTS_DIR holds results.jsonl (one `custos bench -o json` report per line, plus "shape" and
"run"), meta.txt and lat/LABEL.SHAPE.RUN.txt (latencies in µs). Every figure is a median over
the runs; every comparison is a ratio against etcd measured in the same invocation. Nothing is
hard-coded: a target that is missed is reported as missed, with the gap.
"""

import json
import pathlib
import re
import statistics
import sys

OUT = pathlib.Path(sys.argv[1])
MD = pathlib.Path(sys.argv[2])
PLOTS = pathlib.Path(sys.argv[3])

SHAPES = [
    ("seq-write", "sequential writes (1 client)"),
    ("write-10", "10 concurrent writers"),
    ("write-100", "100 concurrent writers"),
    ("read-lin-100", "100 linearizable readers, all members"),
    ("read-ser-100", "100 serializable readers, all members"),
]
SYSTEMS = [
    ("custos-auth", "custos (auth on)"),
    ("custos-noauth", "custos (auth off)"),
    ("etcd-auth", "etcd (auth on)"),
]
CUSTOS, PEER, NOAUTH = "custos-auth", "etcd-auth", "custos-noauth"

results = [json.loads(l) for l in (OUT / "results.jsonl").read_text().splitlines() if l.strip()]
meta = dict(l.split("=", 1) for l in (OUT / "meta.txt").read_text().splitlines() if "=" in l)


def runs(label, shape):
    return [r for r in results if r["label"] == label and r["shape"] == shape]


def med(label, shape, f):
    vals = [f(r) for r in runs(label, shape)]
    return statistics.median(vals) if vals else None


def ops(r):
    return r["ops_per_s"]


def p50(r):
    return r["latency_ms"]["p50"]


def p99(r):
    return r["latency_ms"]["p99"]


def cpu(r):
    return r["server_cpu_ms_per_op"]


def ratio(shape, f, a=CUSTOS, b=PEER):
    x, y = med(a, shape, f), med(b, shape, f)
    return x / y if x is not None and y else None


def fx(v, d=2):
    return "–" if v is None else f"{v:.{d}f}"


# --- measured figures --------------------------------------------------------------------------
rows = [
    "| shape | system | ops/s (median [range]) | p50 ms | p99 ms | max ms | server CPU ms/op | client CPU ms/op | errors |",
    "|---|---|---|---|---|---|---|---|---|",
]
for shape, title in SHAPES:
    for label, name in SYSTEMS:
        rs = runs(label, shape)
        if not rs:
            continue
        o = [ops(r) for r in rs]
        rows.append(
            f"| {title} | {name} | {statistics.median(o):,.0f} [{min(o):,.0f}–{max(o):,.0f}] "
            f"| {fx(med(label, shape, p50))} | {fx(med(label, shape, p99))} "
            f"| {fx(med(label, shape, lambda r: r['latency_ms']['max']))} "
            f"| {fx(med(label, shape, cpu), 3)} | {fx(med(label, shape, lambda r: r['client_cpu_ms_per_op']), 3)} "
            f"| {sum(r['errors'] for r in rs)} |"
        )
measured = "\n".join(rows)

# --- ratios against etcd ---------------------------------------------------------------------
rows = [
    "| shape | throughput custos/etcd | p50 custos/etcd | p99 custos/etcd | server CPU per op custos/etcd |",
    "|---|---|---|---|---|",
]
for shape, title in SHAPES:
    rows.append(
        f"| {title} | {fx(ratio(shape, ops))}× | {fx(ratio(shape, p50))}× "
        f"| {fx(ratio(shape, p99))}× | {fx(ratio(shape, cpu))}× |"
    )
ratios = "\n".join(rows)


# --- targets -------------------------------------------------------------------------------------
def at_least(value, goal):
    if value is None:
        return "not measured"
    if value >= goal:
        return "**met**"
    return f"**missed**: {value:.2f}× against ≥ {goal}× (custos needs {100 * (goal / value - 1):.0f}% more)"


def at_most(value, goal):
    if value is None:
        return "not measured"
    if value <= goal:
        return "**met**"
    return f"**missed**: {value:.2f}× against ≤ {goal}× ({100 * (value / goal - 1):.0f}% over)"


def auth_cost(shape):
    on, off = med(CUSTOS, shape, ops), med(NOAUTH, shape, ops)
    return None if on is None or not off else 1 - on / off


targets = [
    ("100 writers: throughput ≥ 2× etcd", ratio("write-100", ops), lambda v: at_least(v, 2.0)),
    ("100 writers: p99 below etcd's", ratio("write-100", p99), lambda v: at_most(v, 1.0)),
    ("sequential write: p50 ≤ 0.7× etcd's", ratio("seq-write", p50), lambda v: at_most(v, 0.7)),
    ("server CPU per write (100 writers) ≤ 0.5× etcd's", ratio("write-100", cpu), lambda v: at_most(v, 0.5)),
    ("server CPU per write (sequential) ≤ 0.5× etcd's", ratio("seq-write", cpu), lambda v: at_most(v, 0.5)),
    ("server CPU per linearizable read ≤ 0.5× etcd's", ratio("read-lin-100", cpu), lambda v: at_most(v, 0.5)),
    ("100 linearizable readers: throughput ≥ 1.5× etcd", ratio("read-lin-100", ops), lambda v: at_least(v, 1.5)),
    ("100 serializable readers: throughput ≥ 1.5× etcd", ratio("read-ser-100", ops), lambda v: at_least(v, 1.5)),
]
def target_rows(targets):
    rows = ["| target | measured (custos/etcd) | verdict |", "|---|---|---|"]
    for name, value, verdict in targets:
        rows.append(f"| {name} | {fx(value)}× | {verdict(value)} |")
    return rows


rows = target_rows(targets)
def ranges_overlap(shape):
    a = [ops(r) for r in runs(CUSTOS, shape)]
    b = [ops(r) for r in runs(NOAUTH, shape)]
    return bool(a and b) and min(a) <= max(b) and min(b) <= max(a)


for shape, title in SHAPES:
    c = auth_cost(shape)
    noise = " (the auth-on and auth-off throughput ranges overlap: within run-to-run noise)" if ranges_overlap(shape) else ""
    if c is None:
        verdict = "not measured"
    elif c <= 0.05:
        verdict = "**met**" + noise
    else:
        verdict = f"**missed**: {100 * c:.1f}% against ≤ 5% ({100 * (c - 0.05):.1f} points over){noise}"
    rows.append(f"| auth costs ≤ 5% of throughput: {title} | {fx(None if c is None else 100 * c, 1)}% of custos' auth-off throughput | {verdict} |")
target_table = "\n".join(rows)

# Issue #23 (openraft 0.10, writes at the floor); reads must not regress.
targets_23 = [
    ("sequential write: p50 ≤ 1.0× etcd's (compass 0.7×)", ratio("seq-write", p50), lambda v: at_most(v, 1.0)),
    ("10 writers: throughput ≥ 1.0× etcd", ratio("write-10", ops), lambda v: at_least(v, 1.0)),
    ("100 writers: throughput ≥ 1.2× etcd", ratio("write-100", ops), lambda v: at_least(v, 1.2)),
    ("100 writers: p99 ≤ 1.0× etcd's", ratio("write-100", p99), lambda v: at_most(v, 1.0)),
    ("server CPU per write (sequential) ≤ 1.0× etcd's", ratio("seq-write", cpu), lambda v: at_most(v, 1.0)),
    ("server CPU per write (100 writers) ≤ 1.0× etcd's", ratio("write-100", cpu), lambda v: at_most(v, 1.0)),
]
target_table_23 = "\n".join(target_rows(targets_23))

# --- run conditions -----------------------------------------------------------------------------
rows = [
    "| system | runs | idle gate passed | foreign CPU s per run (median [max]) | load generator CPU share of the machine (median) |",
    "|---|---|---|---|---|",
]
for label, name in SYSTEMS:
    rs = [r for r in results if r["label"] == label]
    if not rs:
        continue
    foreign = [r["foreign_cpu_s"] for r in rs]
    gate = sum(1 for r in rs if r.get("idle_gate") and r["idle_gate"]["passed"])
    share = statistics.median(
        r["client_cpu_s"] / r["machine_busy_s"] for r in rs if r["machine_busy_s"] > 0
    )
    rows.append(
        f"| {name} | {len(rs)} | {gate}/{len(rs)} | {statistics.median(foreign):.1f} [{max(foreign):.1f}] | {100 * share:.0f}% |"
    )
conditions = "\n".join(rows)

# --- plots ---------------------------------------------------------------------------------------
plot_note = ""
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)

    def median_run(label, shape):
        rs = sorted(runs(label, shape), key=ops)
        return rs[len(rs) // 2]["run"] if rs else None

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (shape, title) in zip(axes.flat, SHAPES):
        for label, name in SYSTEMS:
            run = median_run(label, shape)
            path = OUT / "lat" / f"{label}.{shape}.{run}.txt"
            if run is None or not path.exists():
                continue
            lat = sorted(int(x) / 1000 for x in path.read_text().split())
            if not lat:
                continue
            n = len(lat)
            ax.plot(lat, [(i + 1) / n for i in range(n)], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of operations")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes.flat[-1].axis("off")
    fig.suptitle(f"Latency CDF (median-throughput run of {meta.get('runs', '?')}), {meta.get('date', '')}")
    fig.tight_layout()
    fig.savefig(PLOTS / "latency-cdf.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, name in SYSTEMS:
        xs, ys = [], []
        for shape, clients in [("seq-write", 1), ("write-10", 10), ("write-100", 100)]:
            v = med(label, shape, ops)
            if v is not None:
                xs.append(clients)
                ys.append(v)
        ax.plot(xs, ys, marker="o", label=f"{name}, writes")
        for shape, marker, kind in [("read-lin-100", "s", "linearizable reads"), ("read-ser-100", "^", "serializable reads")]:
            v = med(label, shape, ops)
            if v is not None:
                ax.scatter([100], [v], marker=marker, label=f"{name}, {kind}")
    ax.set_xscale("log")
    ax.set_xlabel("concurrent clients (log scale)")
    ax.set_ylabel("operations per second (median)")
    ax.set_title("Throughput vs clients")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOTS / "throughput-vs-clients.png", dpi=90)
    plt.close(fig)
    rel = lambda p: p.relative_to(MD.parent) if p.is_absolute() else p
    plot_note = (
        f"![Latency CDF]({rel(PLOTS / 'latency-cdf.png')})\n\n"
        f"![Throughput vs clients]({rel(PLOTS / 'throughput-vs-clients.png')})\n"
    )
except ImportError:
    plot_note = "(matplotlib is not installed: no plots this time)\n"

shape_counts = {}
for shape, _ in SHAPES:
    rs = runs(CUSTOS, shape)
    if rs:
        shape_counts[shape] = (rs[0]["clients"], rs[0]["connections"], rs[0]["ops_requested"])
shape_text = ", ".join(f"{s} = {c} clients over {p} connections × {o:,} ops" for s, (c, p, o) in shape_counts.items())

body = f"""Run {meta.get('date', '?')} at commit `{meta.get('commit', '?')}`, {meta.get('etcd', 'etcd ?')}, {meta.get('cpus', '?')} CPUs,
{meta.get('runs', '?')} runs per shape (medians; ranges in brackets), idle gate {meta.get('idle_gate', '?')}. Shapes: {shape_text}.

Measured:

{measured}

custos (auth on) against etcd (auth on), same run (below 1× is lower; for throughput higher is better,
for latency and CPU lower is better):

{ratios}

Targets of issue #23 (same run; the failover and chaos targets are in their own sections):

{target_table_23}

Targets of issue #7:

{target_table}

Run conditions ("foreign" = busy CPU of the machine that was neither the servers nor the load
generator, e.g. other tenants' builds; large values make a run suspect):

{conditions}

{plot_note}"""

text = MD.read_text()
begin, end = "<!-- cluster-bench:begin -->", "<!-- cluster-bench:end -->"
if begin not in text:
    text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
text = re.sub(
    re.escape(begin) + r"\n.*?" + re.escape(end),
    lambda m: begin + "\n" + body.rstrip("\n") + "\n" + end,
    text,
    flags=re.S,
)
MD.write_text(text)
print(measured)
print()
print(ratios)
print()
print(target_table_23)
print()
print(target_table)
