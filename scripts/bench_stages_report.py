"""Issue #23's per-write stage table from a `scripts/bench-stages.sh` results dir.

Usage: bench_stages_report.py OUT_DIR BENCHMARKS_MD. Medians over runs of each stage's p50
(microseconds); written between the write-stages markers of BENCHMARKS_MD and printed.
"""
import json
import pathlib
import re
import statistics
import sys

out = pathlib.Path(sys.argv[1])
md = pathlib.Path(sys.argv[2])
meta = dict(l.split("=", 1) for l in (out / "meta.txt").read_text().split("\n") if "=" in l)

# rows[(target, row)] -> [p50 per run]
rows = {}


def put(target, row, value):
    if value is not None:
        rows.setdefault((target, row), []).append(value)


def stage(report, group, name):
    for s in report[group]:
        if s["stage"] == name and s["samples"] > 0:
            return s["p50_us"]
    return None


for m in sorted(out.glob("*.meta.json")):
    info = json.loads(m.read_text())
    base = str(m)[: -len(".meta.json")]
    target = info["target"]
    bench = json.loads(pathlib.Path(base + ".bench.json").read_text())
    assert bench["errors"] == 0, f"{base}: {bench['errors']} errors"
    put(target, "client round trip (the bench client's p50)", bench["latency_ms"]["p50"] * 1000)
    reports = [json.loads(l) for l in pathlib.Path(base + ".stages.jsonl").read_text().splitlines()]
    leader = next(r for r in reports if r["node"] == info["leader"])
    called = next(r for r in reports if r["node"] == info["called"])
    followers = [r for r in reports if r["node"] != info["leader"]]
    put(target, "custos: propose (on the member called)", stage(called, "custos", "propose"))
    if target == "follower":
        put(target, "custos: forward RPC, follower to leader and back", stage(called, "custos", "forward"))
    put(target, "custos: queue for an entry slot (leader)", stage(leader, "custos", "queue"))
    put(target, "custos: Raft client_write to its answer (leader)", stage(leader, "custos", "raft"))
    for name, label in [
        ("proposed_to_received", "openraft leader: proposed to received (API channel)"),
        ("received_to_submitted", "openraft leader: received to submitted (append called)"),
        ("submitted_to_persisted", "openraft leader: submitted to persisted (own flush)"),
        ("persisted_to_committed", "openraft leader: persisted to committed (quorum)"),
        ("committed_to_applied", "openraft leader: committed to applied"),
        ("proposed_to_applied", "openraft leader: proposed to applied"),
    ]:
        put(target, label, stage(leader, "openraft", name))
    f = [stage(r, "openraft", "submitted_to_persisted") for r in followers]
    f = [x for x in f if x is not None]
    if f:
        put(target, "openraft followers: submitted to persisted (their flush)", statistics.median(f))

order = []
for (_, row) in rows:
    if row not in order:
        order.append(row)


def cell(target, row):
    v = rows.get((target, row))
    if not v:
        return "–"
    return "%.0f" % statistics.median(v)


lines = [
    f"Measured {meta.get('date')} at `{meta.get('commit')}` ({meta.get('cpus')} cores, "
    f"{meta.get('runs')} runs of {meta.get('ops')} sequential writes each way, release, auth on; "
    "medians over runs of each stage's p50, in microseconds; stages overlap and p50s do not "
    "add up exactly).",
    "",
    "| stage | write sent to the leader | write sent to a follower |",
    "|---|---:|---:|",
]
for row in order:
    lines.append(f"| {row} | {cell('leader', row)} | {cell('follower', row)} |")
table = "\n".join(lines)
text = md.read_text()
begin, end = "<!-- write-stages:begin -->", "<!-- write-stages:end -->"
if begin not in text:
    text += f"\n\n## Where a write's time goes (issue #23)\n\n{begin}\n{end}\n"
text = re.sub(
    re.escape(begin) + r"\n.*?" + re.escape(end),
    lambda m: begin + "\n" + table + "\n" + end,
    text,
    flags=re.S,
)
md.write_text(text)
print(table)
