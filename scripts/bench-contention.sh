#!/usr/bin/env bash
# Issue #20: linearizable Volume.Inspect latency under 100 concurrent writers against its own
# quiet latency, for two custos binaries in one run. Fresh 3-member `custos dev` clusters
# (release binaries, auth on, BENCH_KEYS volumes preloaded) alternate pair by pair (A B, then
# B A, ...); on each, `custos bench contention` interleaves quiet and busy phases (4 sequential
# linearizable readers on the leader; 100 writers sharing 10 connections to the leader in busy
# phases). The load generator is BENCH_LOADGEN (default BENCH_B: the subcommand is newer than
# most baselines), so both clusters are driven by the same client. Prints a markdown table:
# quiet and busy p50/p99 per pair, the busy/quiet ratios (target: p99 ratio <= 2) and B's
# figures as ratios of A's.
#
#   BENCH_A=old/custos BENCH_B=new/custos scripts/bench-contention.sh
#
# Knobs: BENCH_CONTENTION_PAIRS (3), BENCH_CONTENTION_BURSTS (5), BENCH_CONTENTION_QUIET_MS
# (2000), BENCH_CONTENTION_BUSY_MS (2000), BENCH_CONTENTION_READ_AT (leader | follower),
# BENCH_KEYS (10000), BENCH_IDLE_PCT (25), BENCH_IDLE_WAIT (60).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
: "${BENCH_A:?BENCH_A: the baseline custos binary}"
: "${BENCH_B:?BENCH_B: the custos binary to compare}"
LOADGEN="${BENCH_LOADGEN:-$BENCH_B}"
PAIRS="${BENCH_CONTENTION_PAIRS:-3}"
BURSTS="${BENCH_CONTENTION_BURSTS:-5}"
QUIET_MS="${BENCH_CONTENTION_QUIET_MS:-2000}"
BUSY_MS="${BENCH_CONTENTION_BUSY_MS:-2000}"
READ_AT="${BENCH_CONTENTION_READ_AT:-leader}"
KEYS="${BENCH_KEYS:-10000}"
IDLE_PCT="${BENCH_IDLE_PCT:-25}"
IDLE_WAIT="${BENCH_IDLE_WAIT:-60}"
OUT="$TARGET_DIR/bench-contention/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
trap cleanup EXIT
log "results in $OUT"

# run_one LABEL PAIR: one fresh cluster of binary BIN, one contention run.
run_one() {
  local label="$1" pair="$2" base endpoints pids token
  base="$(free_base_port)"
  start_dev "$OUT/$label-$pair" "$base"
  endpoints="$(field '",".join(d["endpoints"])')"
  pids="$(field '",".join(str(n["pid"]) for n in d["nodes"])')"
  token="$(field 'd["tokens"]["user"]')"
  "$LOADGEN" bench custos --endpoint "$endpoints" --token "$token" -o json --workload preload \
    --clients 100 --connections 10 --ops "$KEYS" --deadline-secs 300 >/dev/null
  log "$label pair $pair: contention"
  "$LOADGEN" bench contention --endpoint "$endpoints" --token "$token" -o json \
    --read-at "$READ_AT" --bursts "$BURSTS" --quiet-ms "$QUIET_MS" --busy-ms "$BUSY_MS" \
    --keys "$KEYS" --pids "$pids" --idle-below-pct "$IDLE_PCT" \
    --idle-max-wait-secs "$IDLE_WAIT" --label "$label" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["pair"]=int(sys.argv[1]); print(json.dumps(r))' "$pair" \
    >>"$OUT/results.jsonl"
  cleanup
}

for pair in $(seq "$PAIRS"); do
  if [ $((pair % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    if [ "$side" = A ]; then BIN="$BENCH_A"; else BIN="$BENCH_B"; fi
    run_one "$side" "$pair"
  done
done

python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["label"], r["pair"]): r for r in rows}
pairs = sorted({r["pair"] for r in rows})
print("| pair | binary | quiet p50 / p99 ms | busy p50 / p99 ms | busy/quiet p50 | busy/quiet p99 | reads/s quiet / busy | writes/s (busy) | read errors | write errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in pairs:
    for side in ("A", "B"):
        r = by[(side, p)]
        q, b = r["quiet"], r["busy"]
        print(f"| {p} | {side} | {q['latency_ms']['p50']:.2f} / {q['latency_ms']['p99']:.2f} | "
              f"{b['latency_ms']['p50']:.2f} / {b['latency_ms']['p99']:.2f} | {r['p50_ratio']:.2f}× | {r['p99_ratio']:.2f}× | "
              f"{q['reads_per_s']:.0f} / {b['reads_per_s']:.0f} | {b['writes_per_s']:.0f} | "
              f"{q['read_errors'] + b['read_errors']} | {r['write_errors']} |")
def rng(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}×"
print()
print("| B / A (same pair) | busy p99 | busy p50 | busy/quiet p99 ratio | writes/s (busy) |")
print("|---|---|---|---|---|")
a = [by[("A", p)] for p in pairs]; b = [by[("B", p)] for p in pairs]
print(f"| range over {len(pairs)} pairs | {rng([y['busy']['latency_ms']['p99'] / x['busy']['latency_ms']['p99'] for x, y in zip(a, b)])} | "
      f"{rng([y['busy']['latency_ms']['p50'] / x['busy']['latency_ms']['p50'] for x, y in zip(a, b)])} | "
      f"{rng([y['p99_ratio'] / x['p99_ratio'] for x, y in zip(a, b)])} | "
      f"{rng([y['busy']['writes_per_s'] / x['busy']['writes_per_s'] for x, y in zip(a, b)])} |")
PY
