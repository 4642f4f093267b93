#!/usr/bin/env bash
# The scale benchmark (issues #6 and #7): a 3-member custos cluster (release build, auth on)
# grown from 1,000 to SCALE_VOLUMES volumes (100,000 by default). Measures, in the same run:
#   - Volume.Inspect p50 (serializable, every member) at 1,000 and at the full size: the ratio;
#   - Volume.Enumerate (REST GET /v1/volumes) at both sizes;
#   - RSS of each member at the full size;
#   - restart to serving (SIGTERM, start, gRPC health via `cluster status` serving) of a follower;
#   - a new member joining (`server --join`) and catching up by snapshot install, to voter.
# Writes the table between the scale-bench markers of BENCHMARKS.md. Run by
# `scripts/bench.sh scale`; knobs: SCALE_VOLUMES, BENCH_BIN (a custos binary), BENCH_CARGO.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
VOLUMES="${SCALE_VOLUMES:-100000}"
OUT="$TARGET_DIR/bench-scale"

release_bin

trap cleanup EXIT

rm -rf "$OUT"
mkdir -p "$OUT"
BASE="$(free_base_port)"
DIR="$OUT/cluster"
log "custos: 3 nodes from base port $BASE"
start_dev "$DIR" "$BASE"
EP="$(field '",".join(d["endpoints"])')"
ADMIN="$(field 'd["tokens"]["admin"]')"
REST="127.0.0.1:$((BASE + 200))"

# Both sizes are measured on a quiet machine (the idle gate): right after the bulk creation the
# members are still applying, snapshotting and purging, which the first runs measured too.
inspect_p50() {  # inspect_p50 KEYS
  "$BIN" bench custos --endpoint "$EP" --token "$ADMIN" -o json --workload read-serializable \
    --target all --clients 10 --connections 3 --ops 5000 --keys "$1" --deadline-secs 120 \
    --idle-below-pct 25 --idle-max-wait-secs 60 \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["errors"]==0, r; print("%.3f" % r["latency_ms"]["p50"])'
}
enumerate_ms() {  # median of 5 GET /v1/volumes
  python3 - "$REST" "$ADMIN" <<'PY'
import sys, time, urllib.request, statistics, json
rest, token = sys.argv[1], sys.argv[2]
times = []
for _ in range(5):
    req = urllib.request.Request(f"http://{rest}/v1/volumes", headers={"Authorization": "bearer " + token})
    t = time.monotonic()
    body = urllib.request.urlopen(req, timeout=120).read()
    times.append((time.monotonic() - t) * 1000)
n = len(json.loads(body).get("volume_ids", []))
print("%.1f %d" % (statistics.median(times), n))
PY
}
preload() {  # preload N
  "$BIN" bench custos --endpoint "$EP" --token "$ADMIN" -o json --workload preload \
    --clients 100 --connections 10 --ops "$1" --keys "$1" --deadline-secs 3600 \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["errors"]==0, r; print("%.0f" % r["ops_per_s"])'
}

log "preloading 1,000 volumes"
preload 1000 >/dev/null
P50_SMALL="$(inspect_p50 1000)"
read -r ENUM_SMALL N_SMALL <<<"$(enumerate_ms)"
log "growing to $VOLUMES volumes"
T0=$(date +%s.%N)
RATE="$(preload "$VOLUMES")"
T1=$(date +%s.%N)
P50_LARGE="$(inspect_p50 "$VOLUMES")"
read -r ENUM_LARGE N_LARGE <<<"$(enumerate_ms)"
RSS="$(python3 - "$DIR/cluster.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
out = []
for n in d["nodes"]:
    for line in open(f"/proc/{n['pid']}/status"):
        if line.startswith("VmRSS:"):
            out.append("%.0f" % (int(line.split()[1]) / 1024))
print(" / ".join(out))
PY
)"
DATA_MB="$(du -sm "$DIR/node-1/data" | cut -f1)"

# Restart to serving: a follower, SIGTERM, then start it again from its config.
LEADER="$("$BIN" cluster status --endpoint "$EP" --token "$ADMIN" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])')"
F=1; [ "$LEADER" = 1 ] && F=2
FPID="$(field "[n['pid'] for n in d['nodes'] if n['id']==$F][0]")"
FSDK="$(field "[n['sdk'] for n in d['nodes'] if n['id']==$F][0]")"
log "restart to serving: node $F (SIGTERM, start, wait for serving)"
kill -TERM "$FPID"
while kill -0 "$FPID" 2>/dev/null; do sleep 0.05; done
RS0=$(date +%s.%N)
"$BIN" server --config "$DIR/node-$F/config.toml" >>"$DIR/node-$F/restart.log" 2>&1 &
STARTED+=("$!")
until "$BIN" cluster status --endpoint "$FSDK" --token "$ADMIN" -o json 2>/dev/null \
  | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["serving"] else 1)' 2>/dev/null; do
  sleep 0.05
done
RS1=$(date +%s.%N)

# A new member joins and catches up (the log is purged behind snapshots: a snapshot install).
log "a new member joins"
NEW="$OUT/node-4"
mkdir -p "$NEW"
"$BIN" certs node --ca-dir "$DIR/tls" --id 4 --out-dir "$NEW/tls" >/dev/null
python3 - "$DIR/node-3/config.toml" "$NEW" "$BASE" <<'PY'
import sys, re
src, new, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src).read()
text = text[: text.index("[[initial_members]]")] + text[text.index("[auth]"):] if "[auth]" in text else text[: text.index("[[initial_members]]")]
text = re.sub(r"node_id = \d+", "node_id = 4", text)
for off in (0, 100, 200, 300):
    text = text.replace(f"127.0.0.1:{base + off + 2}", f"127.0.0.1:{base + off + 3}")
text = re.sub(r'data_dir = ".*"', f'data_dir = "{new}/data"', text)
text = re.sub(r'cert_file = ".*"', f'cert_file = "{new}/tls/node.pem"', text)
text = re.sub(r'key_file = ".*"', f'key_file = "{new}/tls/node.key"', text)
open(f"{new}/config.toml", "w").write(text)
PY
J0=$(date +%s.%N)
"$BIN" server --config "$NEW/config.toml" --join "127.0.0.1:$((BASE + 100))" >"$NEW/server.log" 2>&1 &
STARTED+=("$!")
until "$BIN" cluster status --endpoint "$EP" --token "$ADMIN" -o json 2>/dev/null \
  | python3 -c 'import json,sys; m=[x for x in json.load(sys.stdin)["members"] if x["id"]==4]; sys.exit(0 if m and m[0]["voter"] else 1)' 2>/dev/null; do
  sleep 0.1
done
J1=$(date +%s.%N)
SNAP=no; grep -q "install snapshot" "$NEW/server.log" && SNAP=yes

TABLE="$(python3 - <<PY
small, large = float("$P50_SMALL"), float("$P50_LARGE")
rows = [
  "| figure | value |",
  "|---|---|",
  "| volumes | $N_SMALL → $N_LARGE (created at $RATE/s, 100 clients) |",
  "| Inspect p50 (serializable, all members) at $N_SMALL / $N_LARGE volumes | %.3f ms / %.3f ms (ratio **%.2f×**, target ≤ 1.2×) |" % (small, large, large / small),
  "| Enumerate (REST GET /v1/volumes) at $N_SMALL / $N_LARGE | $ENUM_SMALL ms / $ENUM_LARGE ms |",
  "| RSS per member at $N_LARGE volumes | $RSS MiB (target ≤ 512) |",
  "| data dir of a member | $DATA_MB MiB |",
  "| restart to serving (follower, SIGTERM → serving) | %.2f s (target < 5 s) |" % ($RS1 - $RS0),
  "| new member: join → caught up → voter | %.2f s (snapshot install: $SNAP) |" % ($J1 - $J0),
]
print("\n".join(rows))
PY
)"
echo "$TABLE"
python3 - "$TABLE" <<'PY'
import pathlib, re, sys
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
block = "<!-- scale-bench:begin -->\n" + sys.argv[1] + "\n<!-- scale-bench:end -->"
if "<!-- scale-bench:begin -->" in text:
    text = re.sub(r"<!-- scale-bench:begin -->.*?<!-- scale-bench:end -->", lambda m: block, text, flags=re.S)
else:
    text += "\n## Scale (issues #6, #7)\n\n`scripts/bench.sh scale`: one 3-member cluster (release build, auth on, mutual TLS between\npeers) grown from 1,000 volumes to the full size in the same run.\n\n" + block + "\n"
path.write_text(text)
PY
