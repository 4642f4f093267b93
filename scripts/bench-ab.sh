#!/usr/bin/env bash
# A/B of two custos binaries on the read shapes of the cluster matrix: fresh 3-member `custos dev`
# clusters (release binaries, auth on, 10,000 volumes preloaded), the binaries alternating pair by
# pair (A B, then B A, ...), 100 linearizable and 100 serializable readers each, with the same
# load generator and idle gate as `scripts/bench.sh cluster`, and 100 writers whose every write
# the role check refuses (the `view` token: what a refusal costs). Prints a table of throughput
# (refusals per second for the refused shape) and server CPU per operation, each B figure as a
# ratio of the A figure of the same pair, and each pair's p50/p99 latency.
#
# More shapes, run only when named in BENCH_AB_SHAPES: `write-followers-100`, 100 writers
# whose writes all go to the two followers (issue #23: what forwarding costs),
# `write-leader-100`, the same writers at the leader, `write-all-100`, the same writers at
# every member (the cluster matrix's 100-writer shape), and `write-seq`, one sequential writer
# at the leader. Each run also records the forwarding RPCs
# and the commands they carried (`custos_forward_*` summed over the members; 0 for a binary
# without them).
#
#   BENCH_A=old/custos BENCH_B=new/custos scripts/bench-ab.sh
#   BENCH_AB_SHAPES=write-followers-100 BENCH_A=... BENCH_B=... scripts/bench-ab.sh
#
# Knobs: BENCH_AB_PAIRS (3), BENCH_AB_SHAPES (comma-separated shape names; default
# read-lin-100,read-ser-100,refused-write-100), BENCH_LIN_OPS (10000), BENCH_READ_OPS (60000),
# BENCH_REFUSED_OPS (20000), BENCH_WRITE_OPS (20000), BENCH_SEQ_OPS (3000), BENCH_KEYS (10000),
# BENCH_IDLE_PCT (25), BENCH_IDLE_WAIT (60).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
: "${BENCH_A:?BENCH_A: the baseline custos binary}"
: "${BENCH_B:?BENCH_B: the custos binary to compare}"
PAIRS="${BENCH_AB_PAIRS:-3}"
LIN_OPS="${BENCH_LIN_OPS:-10000}"
READ_OPS="${BENCH_READ_OPS:-60000}"
REFUSED_OPS="${BENCH_REFUSED_OPS:-20000}"
WRITE_OPS="${BENCH_WRITE_OPS:-20000}"
SEQ_OPS="${BENCH_SEQ_OPS:-3000}"
SELECTED=",${BENCH_AB_SHAPES:-read-lin-100,read-ser-100,refused-write-100},"
KEYS="${BENCH_KEYS:-10000}"
IDLE_PCT="${BENCH_IDLE_PCT:-25}"
IDLE_WAIT="${BENCH_IDLE_WAIT:-60}"
# name workload clients connections ops token (a token of cluster.json) members (all: every
# member; followers: every member but the leader; leader: the bench finds the leader)
ALL_SHAPES=(
  "read-lin-100 read-linearizable 100 10 $LIN_OPS user all"
  "read-ser-100 read-serializable 100 10 $READ_OPS user all"
  "refused-write-100 write 100 10 $REFUSED_OPS view all"
  "write-followers-100 write 100 10 $WRITE_OPS user followers"
  "write-leader-100 write 100 10 $WRITE_OPS user leader"
  "write-all-100 write 100 10 $WRITE_OPS user all"
  "write-seq write 1 1 $SEQ_OPS user leader"
)
SHAPES=()
for shape in "${ALL_SHAPES[@]}"; do
  case "$SELECTED" in *",${shape%% *},"*) SHAPES+=("$shape") ;; esac
done
[ "${#SHAPES[@]}" -gt 0 ] || { echo "BENCH_AB_SHAPES names no shape" >&2; exit 2; }
# The read shapes read the preloaded volumes; the write shapes need none.
PRELOAD=0
case "$SELECTED" in *,read-*) PRELOAD=1 ;; esac
OUT="$TARGET_DIR/bench-ab/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
trap cleanup EXIT
log "results in $OUT"

# run_one LABEL PAIR: one fresh cluster of binary BIN, every shape once.
run_one() {
  local label="$1" pair="$2" base endpoints pids token shape name workload clients conns ops who
  local members eps leader target rpcs0 cmds0 rpcs1 cmds1
  base="$(free_base_port)"
  start_dev "$OUT/$label-$pair" "$base"
  endpoints="$(field '",".join(d["endpoints"])')"
  pids="$(field '",".join(str(n["pid"]) for n in d["nodes"])')"
  token="$(field 'd["tokens"]["user"]')"
  if [ "$PRELOAD" = 1 ]; then
    "$BIN" bench custos --endpoint "$endpoints" --token "$token" -o json --workload preload \
      --clients 100 --connections 10 --ops "$KEYS" --deadline-secs 300 >/dev/null
  fi
  for shape in "${SHAPES[@]}"; do
    read -r name workload clients conns ops who members <<<"$shape"
    eps="$endpoints"
    target=()
    if [ "$members" = leader ]; then
      target=(--target leader)
    elif [ "$members" = followers ]; then
      target=(--target all)
      leader="$(leader_id "$endpoints")"
      eps="$(field "','.join(n['sdk'] for n in d['nodes'] if n['id'] != $leader)")"
    fi
    log "$label pair $pair: $name ($eps)"
    read -r rpcs0 cmds0 <<<"$(forward_counts)"
    "$BIN" bench custos --endpoint "$eps" "${target[@]}" \
      --token "$(field "d['tokens']['$who']")" \
      -o json --workload "$workload" \
      --clients "$clients" --connections "$conns" --ops "$ops" --keys "$KEYS" --pids "$pids" \
      --deadline-secs 180 --idle-below-pct "$IDLE_PCT" --idle-max-wait-secs "$IDLE_WAIT" \
      --label "$label" \
      >"$OUT/run.json"
    read -r rpcs1 cmds1 <<<"$(forward_counts)"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["shape"]=sys.argv[2]; r["pair"]=int(sys.argv[3]); r["forward_rpcs"]=int(sys.argv[4]); r["forward_commands"]=int(sys.argv[5]); print(json.dumps(r))' \
      "$OUT/run.json" "$name" "$pair" "$((rpcs1 - rpcs0))" "$((cmds1 - cmds0))" >>"$OUT/results.jsonl"
  done
  cleanup
  # The cluster's data (a gigabyte or more after the write shapes); its log stays beside it.
  rm -rf "$OUT/$label-$pair"
}

# forward_counts: the forwarding RPCs and the commands they carried so far, summed over the
# members' /metrics (plain HTTP: `custos dev` without --sdk-tls); 0 0 without those metrics.
forward_counts() {
  python3 - "$DEV_DIR/cluster.json" <<'PY'
import json, sys, urllib.request
d = json.load(open(sys.argv[1]))
sums = {"custos_forward_rpcs_total": 0, "custos_forward_commands_total": 0}
for n in d["nodes"]:
    try:
        text = urllib.request.urlopen(f"http://{n['metrics']}/metrics", timeout=5).read().decode()
    except OSError:
        continue
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in sums:
            sums[name] += int(float(value))
print(sums["custos_forward_rpcs_total"], sums["custos_forward_commands_total"])
PY
}

# leader_id ENDPOINTS: the id of the member that leads, as the members report it (bounded wait:
# 10 s).
leader_id() {
  local id
  for _ in $(seq 100); do
    id="$("$BIN" cluster status -o json --endpoint "$1" --token "$(field 'd["tokens"]["admin"]')" \
      2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])' \
      2>/dev/null || true)"
    if [ -n "$id" ] && [ "$id" != 0 ]; then echo "$id"; return; fi
    sleep 0.1
  done
  echo "no leader" >&2
  exit 1
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
for r in rows:
    # A shape whose every operation is refused: its rate and CPU are per refusal.
    if r["ops_ok"] == 0 and r["errors"] > 0:
        r["ops_per_s"] = r["errors"] / r["elapsed_s"]
        r["server_cpu_ms_per_op"] = 1000.0 * r["server_cpu_s"] / r["errors"]
by = {(r["label"], r["shape"], r["pair"]): r for r in rows}
fwd = lambda rs: " / ".join("%.1f" % (r["forward_commands"] / r["forward_rpcs"]) if r.get("forward_rpcs") else "–" for r in rs)
lat = lambda rs: " / ".join("%.1f/%.1f" % (r["latency_ms"]["p50"], r["latency_ms"]["p99"]) for r in rs)
shapes = sorted({r["shape"] for r in rows})
pairs = sorted({r["pair"] for r in rows})
print("| shape | A ops/s (per pair) | B ops/s | B/A throughput | A CPU ms/op | B CPU ms/op | B/A CPU per op | A p50/p99 ms | B p50/p99 ms | B commands per forwarding RPC | errors A/B (refusals for refused-*) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in shapes:
    a = [by[("A", s, p)] for p in pairs]; b = [by[("B", s, p)] for p in pairs]
    tr = [y["ops_per_s"] / x["ops_per_s"] for x, y in zip(a, b)]
    cr = [y["server_cpu_ms_per_op"] / x["server_cpu_ms_per_op"] for x, y in zip(a, b)]
    f = lambda rs, k, fmt: " / ".join(fmt % r[k] for r in rs)
    print(f"| {s} | {f(a, 'ops_per_s', '%.0f')} | {f(b, 'ops_per_s', '%.0f')} | {min(tr):.2f}–{max(tr):.2f}× | "
          f"{f(a, 'server_cpu_ms_per_op', '%.3f')} | {f(b, 'server_cpu_ms_per_op', '%.3f')} | {min(cr):.2f}–{max(cr):.2f}× | "
          f"{lat(a)} | {lat(b)} | {fwd(b)} | "
          f"{sum(r['errors'] for r in a)}/{sum(r['errors'] for r in b)} |")
PY
