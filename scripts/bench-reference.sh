#!/usr/bin/env bash
# The OpenStorage reference comparison (issue #7): how the cost of Volume.Create grows with the
# number of volumes, for upstream's own SDK server (`osd` with its `fake` driver and in-memory
# kvdb) and for a 3-member custos cluster (release, auth on), measured in the same run by the
# same client (`custos bench custos --workload write`, one sequential client, the JWT of an
# administrator). Both grow in steps of REF_STEP creates up to REF_VOLUMES; each step reports
# creates/s, p50 and the server CPU per create. The two systems alternate step by step, so a
# change in the machine's speed shows in both. Writes the table between the reference-bench
# markers of BENCHMARKS.md.
#
# It needs an `osd` binary: OSD_BIN=/path/to/osd. None is built here: `osd` is upstream's code
# (github.com/libopenstorage/openstorage, `go build -mod=vendor ./cmd/osd` in a checkout, with
# Debian's golang-go). Without OSD_BIN the script says so and exits 2.
# Note: `osd` listens on all interfaces (its SDK, REST, management and gossip ports have no
# address option); run it on a machine without outside access.
# Knobs: REF_VOLUMES (2000), REF_STEP (200), BENCH_BIN, BENCH_CARGO.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
VOLUMES="${REF_VOLUMES:-2000}"
STEP="${REF_STEP:-200}"
OUT="$TARGET_DIR/bench-reference"

if [ -z "${OSD_BIN:-}" ] || [ ! -x "$OSD_BIN" ]; then
  echo "bench-reference: set OSD_BIN to an osd binary (upstream libopenstorage/openstorage," \
    "go build -mod=vendor ./cmd/osd); none is built by this script" >&2
  exit 2
fi
release_bin

trap cleanup EXIT

rm -rf "$OUT"
mkdir -p "$OUT/osd"
BASE="$(free_base_port)"
OSD_BASE="$(free_base_port)"
SECRET="bench-reference-$RANDOM$RANDOM$RANDOM"

log "osd (fake driver, kv-mem) with SDK port $OSD_BASE"
(cd "$OUT/osd" && exec "$OSD_BIN" -d --driver=name=fake --kvdb kv-mem://localhost \
  --sdkport "$OSD_BASE" --sdkrestport "$((OSD_BASE + 1))" --mgmtport "$((OSD_BASE + 2))" \
  --jwt-issuer custos-bench --jwt-shared-secret "$SECRET" >"$OUT/osd/osd.log" 2>&1) &
OSD_PID=$!
STARTED+=("$OSD_PID")

log "custos: 3 nodes from base port $BASE"
start_dev "$OUT/cluster" "$BASE"
EP="$(field '",".join(d["endpoints"])')"
ADMIN="$(field 'd["tokens"]["admin"]')"
CUSTOS_PIDS="$(field '",".join(str(n["pid"]) for n in d["nodes"])')"

cat >"$OUT/admin.yaml" <<'EOF'
name: bench-admin
email: bench-admin@example.invalid
sub: bench-admin@example.invalid
roles: ["system.admin"]
groups: ["*"]
EOF
OSD_TOKEN="$("$BIN" auth token generate --auth-config "$OUT/admin.yaml" --issuer custos-bench \
  --shared-secret "$SECRET")"
OSD_EP="127.0.0.1:$OSD_BASE"
for _ in $(seq 300); do
  "$BIN" bench custos --endpoint "$OSD_EP" --token "$OSD_TOKEN" --workload write --target all \
    --ops 1 -o json >/dev/null 2>&1 && break
  sleep 0.1
done

# step SYSTEM ENDPOINT TOKEN TARGET PIDS: one step of STEP sequential creates, one JSON line.
step() {
  "$BIN" bench custos --endpoint "$2" --token "$3" --workload write --target "$4" \
    --clients 1 --connections 1 --ops "$STEP" --deadline-secs 600 --pids "$5" -o json \
    --label "$1"
}

log "growing both to $VOLUMES volumes in steps of $STEP"
: >"$OUT/steps.jsonl"
done_count=0
while [ "$done_count" -lt "$VOLUMES" ]; do
  step osd "$OSD_EP" "$OSD_TOKEN" all "$OSD_PID" >>"$OUT/steps.jsonl"
  step custos "$EP" "$ADMIN" leader "$CUSTOS_PIDS" >>"$OUT/steps.jsonl"
  done_count=$((done_count + STEP))
  log "$done_count volumes each"
done

python3 - "$OUT/steps.jsonl" "$STEP" <<'PY'
import json, pathlib, re, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
step = int(sys.argv[2])
for r in rows:
    assert r["errors"] == 0, r
by = {"osd": [r for r in rows if r["label"] == "osd"], "custos": [r for r in rows if r["label"] == "custos"]}
out = ["| volumes before the step | osd creates/s | osd p50 | osd CPU/create | custos creates/s | custos p50 | custos CPU/create (3 members) | custos / osd throughput |",
       "|---|---|---|---|---|---|---|---|"]
for i, (o, c) in enumerate(zip(by["osd"], by["custos"])):
    out.append(f"| {i * step} | {o['ops_per_s']:.0f} | {o['latency_ms']['p50']:.2f} ms | {o['server_cpu_ms_per_op']:.2f} ms "
               f"| {c['ops_per_s']:.0f} | {c['latency_ms']['p50']:.2f} ms | {c['server_cpu_ms_per_op']:.2f} ms | {c['ops_per_s'] / o['ops_per_s']:.2f}x |")
def fall(rs):
    return rs[-1]["ops_per_s"] / rs[0]["ops_per_s"]
out.append("")
out.append(f"Last step against the first: osd {fall(by['osd']):.2f}x the throughput, "
           f"custos {fall(by['custos']):.2f}x.")
table = "\n".join(out)
path = pathlib.Path("BENCHMARKS.md")
new = re.sub(r"(<!-- reference-bench:begin -->\n).*?(<!-- reference-bench:end -->)",
             lambda m: m.group(1) + table + "\n" + m.group(2), path.read_text(), flags=re.S)
path.write_text(new)
print(table)
PY
