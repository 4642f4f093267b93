#!/usr/bin/env bash
# Issue #23: where a write's time goes. Sequential writes (one client) to a fresh 3-member
# custos cluster (release, auth on), sent to the leader in one run and to a follower in the
# next; after each, every member's `/debug/write-stages` (custos' own stages and openraft's
# per-entry stages, p50/p99 in microseconds: crates/server/src/stages.rs) is read and the
# table "Where a write's time goes" in BENCHMARKS.md is rewritten (medians of BENCH_RUNS runs).
#
#   scripts/bench.sh stages          (BENCH_RUNS: 3; BENCH_STAGES_OPS: 2000; BENCH_BIN, BENCH_MD)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
trap cleanup EXIT

RUNS="${BENCH_RUNS:-3}"
OPS="${BENCH_STAGES_OPS:-2000}"
MD="${BENCH_MD:-BENCHMARKS.md}"
release_bin
OUT="$TARGET_DIR/bench-stages/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
log "results in $OUT"
{
  echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
  echo "cpus=$(nproc)"
  echo "runs=$RUNS"
  echo "ops=$OPS"
} >"$OUT/meta.txt"

# stages_of DIR [QUERY]: every member's /debug/write-stages, one JSON object per line.
stages_of() {
  python3 - "$1/cluster.json" "${2:-}" <<'PY'
import json, sys, urllib.request
d = json.load(open(sys.argv[1]))
for n in d["nodes"]:
    url = "http://%s/debug/write-stages%s" % (n["metrics"], sys.argv[2])
    with urllib.request.urlopen(url, timeout=10) as r:
        print(json.dumps(json.load(r)))
PY
}

# leader_sdk DIR: the SDK address of the member that leads (bounded wait: 10 s).
leader_sdk() {
  local i
  for i in $(seq 100); do
    if stages_of "$1" >"$OUT/probe.jsonl" 2>/dev/null; then
      python3 - "$1/cluster.json" "$OUT/probe.jsonl" <<'PY' && return
import json, sys
d = json.load(open(sys.argv[1]))
leaders = [json.loads(l)["node"] for l in open(sys.argv[2]) if json.loads(l)["leader"]]
if len(leaders) != 1:
    sys.exit(1)
print(next(n["sdk"] for n in d["nodes"] if n["id"] == leaders[0]), leaders[0])
PY
    fi
    sleep 0.1
  done
  echo "no leader" >&2
  exit 1
}

for run in $(seq "$RUNS"); do
  for target in leader follower; do
    dir="$OUT/stages-$target-$run"
    base="$(free_base_port)"
    log "custos: 3 nodes from base port $base"
    start_dev "$dir" "$base"
    PIDS="$(field '",".join(str(n["pid"]) for n in d["nodes"])')"
    TOKEN="$(field 'd["tokens"]["user"]')"
    read -r lsdk lid < <(leader_sdk "$dir")
    if [ "$target" = leader ]; then
      endpoint="$lsdk"
    else
      endpoint="$(python3 -c "import json; d=json.load(open('$dir/cluster.json')); print(next(n['sdk'] for n in d['nodes'] if n['id'] != $lid))")"
    fi
    # Start counting here: the members' own writes at start (registration) are not the load.
    stages_of "$dir" "?reset=true" >/dev/null
    log "run $run: $OPS sequential writes to the $target ($endpoint)"
    "$BIN" bench custos --endpoint "$endpoint" --token "$TOKEN" -o json --workload write \
      --clients 1 --connections 1 --ops "$OPS" --pids "$PIDS" --deadline-secs 300 --target all \
      --label "stages-$target" >"$dir.bench.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latency_ms"]; print("   %d ok, %d errors, p50 %.2f ms" % (r["ops_ok"], r["errors"], l["p50"]))' "$dir.bench.json" >&2
    stages_of "$dir" >"$dir.stages.jsonl"
    called="$(python3 -c "import json; d=json.load(open('$dir/cluster.json')); print(next(n['id'] for n in d['nodes'] if n['sdk'] == '$endpoint'))")"
    echo "{\"run\": $run, \"target\": \"$target\", \"endpoint\": \"$endpoint\", \"leader\": $lid, \"called\": $called}" >"$dir.meta.json"
    cleanup
    rm -rf "$dir"/node-*/data
  done
done
python3 scripts/bench_stages_report.py "$OUT" "$MD"
