#!/usr/bin/env bash
# Where the leader's CPU goes: starts a fresh 3-member `custos dev` cluster (release build, auth
# on, loopback), drives it with `custos bench custos --workload write` (W writers at every
# member), and samples the leader with `perf record -e cpu-clock --call-graph dwarf` for 8 s in
# the middle of the load. Prints the writes/s while sampled, the samples per thread and the top
# symbols; the samples stay in OUT/perf.data for `perf report -i`. BENCHMARKS.md, "Where the
# leader's CPU goes", was made with it.
#
#   scripts/profile-leader.sh [OUT] [WRITERS] [OPS]      (defaults: target/profile-leader 100 40000)
#
# Knobs: BENCH_BIN (the custos binary; default: a release build of this tree), PROFILE_DEV_FLAGS
# (more `custos dev` flags, e.g. --no-auth; the writers then send no token). Needs `perf`
# (Debian's linux-perf; installed here when missing and apt-get is available).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
OUT="${1:-$TARGET_DIR/profile-leader}"
WRITERS="${2:-100}"
OPS="${3:-40000}"
if ! command -v perf >/dev/null; then
  log "installing perf (linux-perf)"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -q linux-perf >&2
fi
release_bin
rm -rf "$OUT"
mkdir -p "$OUT"
trap cleanup EXIT
# shellcheck disable=SC2086 # flags are words
start_dev "$OUT/cluster" "$(free_base_port)" ${PROFILE_DEV_FLAGS:-}
ENDPOINTS="$(field '",".join(d["endpoints"])')"
TOKEN="$(field 'd["tokens"]["user"]')"
ADMIN="$(field 'd["tokens"]["admin"]')"
LEADER=0
for _ in $(seq 100); do
  LEADER="$("$BIN" cluster status -o json --endpoint "$ENDPOINTS" --token "$ADMIN" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])' 2>/dev/null || echo 0)"
  [ "$LEADER" != 0 ] && break
  sleep 0.1
done
[ "$LEADER" != 0 ] || { echo "no leader after 10 s" >&2; exit 1; }
LEADER_PID="$(field "[n['pid'] for n in d['nodes'] if n['id'] == $LEADER][0]")"
log "leader: member $LEADER (pid $LEADER_PID); $WRITERS writers, $OPS writes"
AUTH=(--token "$TOKEN")
case " ${PROFILE_DEV_FLAGS:-} " in *" --no-auth "*) AUTH=() ;; esac
CONNECTIONS=$((WRITERS < 10 ? WRITERS : 10))
"$BIN" bench custos --endpoint "$ENDPOINTS" "${AUTH[@]}" -o json --workload write \
  --clients "$WRITERS" --connections "$CONNECTIONS" --ops "$OPS" --deadline-secs 120 >"$OUT/bench.json" &
LOAD=$!
sleep 3
timeout 60 perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$LEADER_PID" \
  -o "$OUT/perf.data" -- sleep 8 2>"$OUT/perf.log" || true
wait "$LOAD"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("writes/s: %.0f" % r["ops_per_s"])' "$OUT/bench.json"
echo "samples per thread:"
perf script -i "$OUT/perf.data" -F comm 2>/dev/null | sort | uniq -c | sort -rn | head -12
echo "top symbols (self):"
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -30
