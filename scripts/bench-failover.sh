#!/usr/bin/env bash
# The leader-failover benchmark (issue #7): one sequential writer (`custos bench timeline`:
# every attempt has a 200 ms deadline and is retried on the next member until acknowledged)
# against a 3-member custos cluster (release build, auth on) and a 3-member etcd cluster (auth
# on), BENCH_FAILOVER_TRIALS trials each (10 by default): 2.5 s into each 8 s trial the leader
# is SIGKILLed, 2.5 s later it is restarted. Reports the longest gap between acknowledged writes
# per trial (target: at most 500 ms in 10 of 10) and that every acknowledged write reads back.
# Writes the table between the failover-bench markers of BENCHMARKS.md. Run by
# `scripts/bench.sh failover`; knobs: BENCH_FAILOVER_TRIALS, BENCH_FAILOVER_DEV_FLAGS (extra
# `custos dev` flags, e.g. "--heartbeat-ms 50 --election-timeout-ms 150-300"; the table is then
# written only when BENCH_MD is set), BENCH_BIN, BENCH_CARGO, BENCH_MD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
TRIALS="${BENCH_FAILOVER_TRIALS:-10}"
OUT="$TARGET_DIR/bench-failover"
PASSWORD="failover-$RANDOM$RANDOM"

ensure_etcd
release_bin

# Every process this script started, by pid file (restarted members get new pids).
cleanup() {
  for f in "$OUT"/custos/node-*/pid "$OUT"/etcd/e*.pid "$OUT"/dev.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT


json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# trial SYSTEM N KILL RESTART WRITER...: the writer runs 8 s; KILL (a function) SIGKILLs the
# leader 2.5 s in and prints what it killed; RESTART (a function) brings it back 2.5 s later.
trial() {
  local system="$1" n="$2" kill_fn="$3" restart_fn="$4"; shift 4
  local out="$OUT/$system-$n.json"
  "$@" -o json >"$out" 2>"$out.err" &
  local writer=$!
  sleep 2.5
  local victim
  victim="$($kill_fn)"
  sleep 2.5
  "$restart_fn" "$victim"
  wait "$writer" || true
  log "$system trial $n: killed $victim; $(json '"longest gap %.0f ms, %d acknowledged, %d missing" % (d["longest_gap_ms"], d["acked"], d["missing"])' <"$out" 2>/dev/null || echo "no report: $(tail -1 "$out.err")")"
  # The restarted member catches up before the next trial.
  sleep 3
}

rm -rf "$OUT"
mkdir -p "$OUT/custos" "$OUT/etcd"

# custos: a `custos dev` cluster (release); a killed node restarts from its config.
BASE="$(free_base_port)"
log "custos: 3 nodes from base port $BASE"
# shellcheck disable=SC2086
"$BIN" dev --dir "$OUT/custos" --nodes 3 --base-port "$BASE" ${BENCH_FAILOVER_DEV_FLAGS:-} \
  >"$OUT/custos/dev.log" 2>&1 &
echo $! >"$OUT/dev.pid"
for _ in $(seq 900); do [ -s "$OUT/custos/cluster.json" ] && break; sleep 0.1; done
[ -s "$OUT/custos/cluster.json" ] || { cat "$OUT/custos/dev.log" >&2; exit 1; }
EPS="$(json '",".join(d["endpoints"])' <"$OUT/custos/cluster.json")"
ADMIN="$(json 'd["tokens"]["admin"]' <"$OUT/custos/cluster.json")"
USER_TOKEN="$(json 'd["tokens"]["user"]' <"$OUT/custos/cluster.json")"

custos_kill() {
  local id
  id="$("$BIN" cluster status -o json --endpoint "$EPS" --token "$ADMIN" | json 'd["leader_id"]')"
  kill -9 "$(cat "$OUT/custos/node-$id/pid")"
  echo "$id"
}
custos_restart() {
  "$BIN" server --config "$OUT/custos/node-$1/config.toml" >>"$OUT/custos/node-$1/server.log" 2>&1 &
  echo $! >"$OUT/custos/node-$1/pid"
  disown $!
}
for n in $(seq "$TRIALS"); do
  trial custos "$n" custos_kill custos_restart \
    "$BIN" bench timeline --system custos --endpoint "$EPS" --token "$USER_TOKEN"
done
for f in "$OUT"/custos/node-*/pid "$OUT"/dev.pid; do kill "$(cat "$f")" 2>/dev/null || true; done

# etcd (Debian's), auth on: a user limited to the benchmark's prefix, as in the cluster shapes.
BASE="$(free_base_port)"
CLUSTER="" EEPS=""
for i in 0 1 2; do
  CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$((BASE + 100 + i))"
  EEPS+="${EEPS:+,}127.0.0.1:$((BASE + i))"
done
log "etcd ($(etcd --version | head -1)): 3 members from base port $BASE"
etcd_start() {
  local i="$1"
  etcd_member "$OUT/etcd" "$BASE" "$i" "$CLUSTER" "failover-$BASE"
  echo $! >"$OUT/etcd/e$i.pid"
  disown $!
}
for i in 0 1 2; do etcd_start "$i"; done
export ETCDCTL_API=3
CTL=(etcdctl --endpoints "$EEPS" --command-timeout 5s)
for _ in $(seq 300); do "${CTL[@]}" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
etcd_enable_auth "$EEPS" "$PASSWORD" /failover/

etcd_kill() {
  local i
  i="$("${CTL[@]}" --user "root:$PASSWORD" endpoint status -w json | json '
next(n for n, x in enumerate(d) if x["Status"]["header"]["member_id"] == next(y["Status"]["leader"] for y in d if y["Status"]["leader"]))')"
  kill -9 "$(cat "$OUT/etcd/e$i.pid")"
  echo "$i"
}
etcd_restart() { etcd_start "$1"; }
for n in $(seq "$TRIALS"); do
  trial etcd "$n" etcd_kill etcd_restart \
    "$BIN" bench timeline --system etcd --etcd-endpoint "$EEPS" --user bench --password "$PASSWORD"
done

MD="${BENCH_MD:-BENCHMARKS.md}"
if [ -n "${BENCH_FAILOVER_DEV_FLAGS:-}" ] && [ -z "${BENCH_MD:-}" ]; then MD=/dev/null; fi
python3 - "$OUT" "$TRIALS" "$MD" <<'PY'
import json, pathlib, re, statistics, sys
out, trials, md = pathlib.Path(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
rows = {}
for system in ("custos", "etcd"):
    gaps, acked, missing = [], 0, 0
    for t in range(1, trials + 1):
        try:
            r = json.loads((out / f"{system}-{t}.json").read_text())
        except (OSError, ValueError):
            continue
        gaps.append(r["longest_gap_ms"])
        acked += r["acked"]
        missing += r["missing"] + (1 if r.get("verify_error") else 0)
    rows[system] = (gaps, acked, missing)
etcd_median = statistics.median(rows["etcd"][0]) if rows["etcd"][0] else None
lines = [
    "| system | trials reported | longest gap: median | worst | trials within 500 ms | writes acknowledged | missing after | median gap vs etcd |",
    "|---|---|---|---|---|---|---|---|",
]
for system, (gaps, acked, missing) in rows.items():
    if not gaps:
        lines.append(f"| {system} | 0 of {trials} | | | | | | |")
        continue
    med = statistics.median(gaps)
    ratio = f"{med / etcd_median:.2f}x" if etcd_median else ""
    lines.append(
        f"| {system} | {len(gaps)} of {trials} | {med:.0f} ms | {max(gaps):.0f} ms | "
        f"{sum(g <= 500 for g in gaps)} of {len(gaps)} | {acked} | {missing} | {ratio} |"
    )
table = "\n".join(lines)
print(table)
if str(md) == "/dev/null":
    sys.exit(0)
text = md.read_text()
new = re.sub(r"(<!-- failover-bench:begin -->\n).*?(<!-- failover-bench:end -->)",
             lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
md.write_text(new)
PY
