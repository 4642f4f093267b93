#!/usr/bin/env bash
# Issue #20: linearizable read latency under 100 concurrent writers against its own quiet
# latency, for custos binaries and for etcd (the peer, same machine, same run). Fresh 3-member
# clusters (custos: release `custos dev`, auth on, BENCH_KEYS volumes preloaded; etcd: Debian's,
# auth on, BENCH_KEYS keys preloaded) take turns pair by pair (A B E, then E B A, ...); on each,
# `custos bench contention` interleaves quiet and busy phases (4 sequential linearizable
# readers on the leader: Volume.Inspect / KV.Range; 100 writers sharing 10 connections to the
# leader in busy phases: Volume.Create / KV.Put). The load generator is BENCH_LOADGEN (default
# BENCH_B), so every system is driven by the same client. Prints a markdown table: quiet and
# busy p50/p99 per pair and system, the busy/quiet ratios (target: p99 ratio <= 2), and B's
# ratios against etcd's (and A's) in the same pair.
#
#   BENCH_B=new/custos scripts/bench-contention.sh              # custos B against etcd
#   BENCH_A=old/custos BENCH_B=new/custos scripts/bench-contention.sh
#
# Knobs: BENCH_CONTENTION_PAIRS (3), BENCH_CONTENTION_BURSTS (5), BENCH_CONTENTION_QUIET_MS
# (2000), BENCH_CONTENTION_BUSY_MS (2000), BENCH_CONTENTION_READ_AT (leader | follower),
# BENCH_CONTENTION_ETCD (1: run etcd as side E; 0: custos only), BENCH_KEYS (10000),
# BENCH_IDLE_PCT (25), BENCH_IDLE_WAIT (60).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
: "${BENCH_B:?BENCH_B: the custos binary to measure}"
BENCH_A="${BENCH_A:-}"
WITH_ETCD="${BENCH_CONTENTION_ETCD:-1}"
SIDES="${BENCH_A:+A }B"
if [ "$WITH_ETCD" != 0 ]; then
  ensure_etcd
  SIDES="$SIDES E"
  ETCD_PASSWORD="bench-$RANDOM$RANDOM"
fi
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

# contention LABEL PAIR PIDS ARGS...: one `custos bench contention` run, appended to results.jsonl.
contention() {
  local label="$1" pair="$2" pids="$3"
  shift 3
  log "$label pair $pair: contention"
  "$LOADGEN" bench contention "$@" -o json \
    --read-at "$READ_AT" --bursts "$BURSTS" --quiet-ms "$QUIET_MS" --busy-ms "$BUSY_MS" \
    --keys "$KEYS" --pids "$pids" --idle-below-pct "$IDLE_PCT" \
    --idle-max-wait-secs "$IDLE_WAIT" --label "$label" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r["pair"]=int(sys.argv[1]); print(json.dumps(r))' "$pair" \
    >>"$OUT/results.jsonl"
}

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
  contention "$label" "$pair" "$pids" --endpoint "$endpoints" --token "$token"
  cleanup
}

# run_etcd PAIR: one fresh etcd cluster, the key space preloaded, one contention run.
run_etcd() {
  local pair="$1" base auth
  base="$(free_base_port)"
  start_etcd "$OUT/E-$pair" "$base" "$ETCD_PASSWORD"
  auth=(--etcd-endpoint "$ETCD_ENDPOINTS" --user bench --password "$ETCD_PASSWORD")
  "$LOADGEN" bench etcd "${auth[@]}" -o json --workload preload --clients 100 --connections 10 \
    --ops "$KEYS" --deadline-secs 300 >/dev/null
  contention E "$pair" "$ETCD_PIDS" --system etcd "${auth[@]}"
  cleanup
}

for pair in $(seq "$PAIRS"); do
  if [ $((pair % 2)) = 1 ]; then order="$SIDES"; else order="$(echo "$SIDES" | tr ' ' '\n' | tac | tr '\n' ' ')"; fi
  for side in $order; do
    case "$side" in
      A) BIN="$BENCH_A"; run_one A "$pair" ;;
      B) BIN="$BENCH_B"; run_one B "$pair" ;;
      E) run_etcd "$pair" ;;
    esac
  done
done

python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["label"], r["pair"]): r for r in rows}
pairs = sorted({r["pair"] for r in rows})
sides = [s for s in ("A", "B", "E") if any((s, p) in by for p in pairs)]
name = {"A": "custos A", "B": "custos B", "E": "etcd"}
print("| pair | system | quiet p50 / p99 ms | busy p50 / p99 ms | busy/quiet p50 | busy/quiet p99 | reads/s quiet / busy | writes/s (busy) | server CPU s quiet / busy | read errors | write errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in pairs:
    for side in sides:
        r = by[(side, p)]
        q, b = r["quiet"], r["busy"]
        print(f"| {p} | {name[side]} | {q['latency_ms']['p50']:.2f} / {q['latency_ms']['p99']:.2f} | "
              f"{b['latency_ms']['p50']:.2f} / {b['latency_ms']['p99']:.2f} | {r['p50_ratio']:.2f}× | {r['p99_ratio']:.2f}× | "
              f"{q['reads_per_s']:.0f} / {b['reads_per_s']:.0f} | {b['writes_per_s']:.0f} | "
              f"{q['servers_cpu_s']:.1f} / {b['servers_cpu_s']:.1f} | "
              f"{q['read_errors'] + b['read_errors']} | {r['write_errors']} |")
def rng(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}×"
def compare(x_side, y_side):
    xs = [by[(x_side, p)] for p in pairs]; ys = [by[(y_side, p)] for p in pairs]
    print(f"| {name[y_side]} / {name[x_side]}, range over {len(pairs)} pairs | "
          f"{rng([y['busy']['latency_ms']['p99'] / x['busy']['latency_ms']['p99'] for x, y in zip(xs, ys)])} | "
          f"{rng([y['busy']['latency_ms']['p50'] / x['busy']['latency_ms']['p50'] for x, y in zip(xs, ys)])} | "
          f"{rng([y['p99_ratio'] / x['p99_ratio'] for x, y in zip(xs, ys)])} | "
          f"{rng([y['busy']['writes_per_s'] / x['busy']['writes_per_s'] for x, y in zip(xs, ys)])} |")
print()
print("| same pair | busy p99 | busy p50 | busy/quiet p99 ratio | writes/s (busy) |")
print("|---|---|---|---|---|")
if "E" in sides:
    compare("E", "B")
if "A" in sides:
    compare("A", "B")
PY
