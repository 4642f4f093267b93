#!/usr/bin/env bash
# Runs custos's benchmarks and writes their tables into BENCHMARKS.md (between markers), as ratios
# against a peer measured in the same run:
#
#   scripts/bench.sh auth      the authorization cost benchmark (criterion)
#   scripts/bench.sh cluster   3-member custos (auth on and off) and etcd (auth on) clusters on
#                              loopback, driven by `custos bench` with one concurrency model;
#                              tables plus PNG plots in docs/bench/
#   scripts/bench.sh audit     audit List on a 1,000,000-record trail (criterion; builds the trail
#                              first, about two minutes), indexed query vs. a scanning peer; then
#                              audit Verify after retention at 10,000 and 1,000,000 kept records
#                              (builds both under retention, the second through a 1,000,000-
#                              denial flood; several minutes), incremental vs. full
#   scripts/bench.sh scale     one 3-member cluster grown from 1,000 to 100,000 volumes: Inspect
#                              p50 ratio, Enumerate, RSS, restart to serving, a joining member's
#                              catch-up by snapshot (scripts/bench-scale.sh)
#   scripts/bench.sh flood     issue #5: a legitimate writer's p99/p50 latency while another
#                              member of a 3-member custos cluster (release, auth on) is flooded
#                              with bad tokens, against its own quiet latency in the same run
#                              (`custos bench flood`: interleaved quiet and flood phases), for
#                              each flood size; target p99 ratio <= 2 (scripts/bench_flood_report.py)
#   scripts/bench.sh failover  leader SIGKILL under one sequential writer, custos vs etcd, 10
#                              trials each: longest write gap, acknowledged writes read back
#                              (scripts/bench-failover.sh)
#   scripts/bench.sh profile   where the leader's CPU goes under 100 writers: perf samples
#                              (scripts/profile-leader.sh)
#   scripts/bench.sh snapshot  snapshot build and install at 100,000 volumes and 1,000,000 audit
#                              records, this tree against the in-memory base revision (about
#                              10 minutes; not part of `all`)
#   scripts/bench.sh reference Volume.Create cost growth up to 2,000 volumes, upstream's own SDK
#                              server (`osd`, fake driver; OSD_BIN, built elsewhere) against a
#                              3-member custos cluster (scripts/bench-reference.sh; not in `all`)
#   scripts/bench.sh backup    backup and restore peak memory against the backup's size, at
#                              10,000 and 100,000 volumes (10x as many audit records; not in `all`)
#   scripts/bench.sh contention  issue #20: linearizable read p50/p99 on a 3-member release
#                              cluster, quiet and under 100 concurrent writers, for this tree's
#                              binary (BENCH_B; BENCH_A optional) and etcd in the same run
#                              (scripts/bench-contention.sh; not in `all`)
#   scripts/bench.sh ab        two custos binaries (BENCH_A, BENCH_B) on the read shapes of
#                              `cluster`, fresh clusters alternating pair by pair
#                              (scripts/bench-ab.sh; not in `all`)
#   scripts/bench.sh overload  issue #20: `custos bench overload` against a 3-member release
#                              cluster, BENCH_OVERLOAD_SECS (600) long with BENCH_OVERLOAD_WRITERS
#                              (3000) writers (BENCH_OVERLOAD_AUDIT_MAX_RECORDS: a smaller audit
#                              retention bound): each member's RSS after the first minute, its
#                              proposal queue, health answers, and every acknowledged write read
#                              back (scripts/bench_overload_report.py; not in `all`)
#   scripts/bench.sh stages    issue #23: where a write's time goes, stage by stage (custos' own
#                              and openraft's per-entry stages, `/debug/write-stages`), for
#                              sequential writes sent to the leader and to a follower
#                              (scripts/bench-stages.sh; not in `all`)
#   scripts/bench.sh client    issue #23: the official Python client (grpcio; the OpenStorage
#                              `openstorage` package for custos, stubs compiled from
#                              proto/etcd for etcd) driving 3-member custos (release, auth on)
#                              and etcd (auth on) clusters alike, clients connected to any member
#                              as SDK users connect: sequential, 10 and 100 writers, 100 writers on
#                              the leader only, linearizable and serializable readers
#                              (scripts/bench_client.py, scripts/bench_client_report.py; not in
#                              `all`)
#   scripts/bench.sh [all]     all of the above but snapshot, reference, backup, contention, ab,
#                              overload, stages and client
#
# The cluster part installs etcd (Debian's etcd-server/etcd-client) when missing and matplotlib
# into target/bench-venv. Knobs (environment): BENCH_RUNS (3; cluster and flood), BENCH_SEQ_OPS (2000),
# BENCH_W10_OPS (5000), BENCH_W100_OPS (20000), BENCH_READ_OPS (serializable, 60000),
# BENCH_LIN_OPS (linearizable, 10000), BENCH_KEYS (10000),
# BENCH_IDLE_PCT (idle gate, 25), BENCH_IDLE_WAIT (its longest wait, 60 s), BENCH_CARGO (cargo
# command, e.g. "nice -n 15 cargo"), BENCH_BIN (a custos binary to use instead of building one),
# BENCH_MD and BENCH_PLOTS (where the tables and plots go: BENCHMARKS.md, docs/bench);
# flood: BENCH_FLOOD_LOOPS (the flood sizes, concurrent bad-token loops: "2 8"),
# BENCH_FLOOD_BURSTS (quiet + flood pairs per measurement, 10), BENCH_FLOOD_QUIET_MS (2000) and
# BENCH_FLOOD_MS (2000); client: BENCH_RUNS, BENCH_KEYS, BENCH_CLIENT_SEQ_OPS (2000),
# BENCH_CLIENT_W_OPS (writes per concurrent-writer shape, 8000), BENCH_CLIENT_READ_OPS (reads per
# read shape, 20000), BENCH_CLIENT_READERS (100), BENCH_CLIENT_PROCS (worker processes, 4).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
WHAT="${1:-all}"

auth_bench() {
  log "authorization cost (criterion)"
  $CARGO_CMD bench --locked -p custos-auth --bench authorize -- --warm-up-time 2 --measurement-time 5

  python3 - "$TARGET_DIR" <<'PY'
import json, pathlib, re, sys
root = pathlib.Path(sys.argv[1]) / "criterion"
def median_ns(group, name):
    est = json.loads((root / group / name / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]
rows = ["| algorithm | signature only | token verification | same token again (cached) | role + ownership checks | full authorization | checks / verification |",
        "|---|---|---|---|---|---|---|"]
fmt = lambda ns: f"{ns / 1000:.2f} µs"
for alg in ["HS256", "RS256", "ES256", "EdDSA"]:
    sig, ver, cached, checks, full = (median_ns(alg, n) for n in ("signature_only", "token_verification", "cached_verification", "role_and_ownership", "full_authorization"))
    rows.append(f"| {alg} | {fmt(sig)} | {fmt(ver)} | {fmt(cached)} | {checks:.0f} ns | {fmt(full)} | {100 * checks / ver:.2f}% |")
table = "\n".join(rows)
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
new = re.sub(r"(<!-- auth-bench:begin -->\n).*?(<!-- auth-bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
path.write_text(new)
print(table)
PY
}

audit_bench() {
  log "audit List at 1,000,000 records (criterion)"
  $CARGO_CMD bench --locked -p custos-store --bench audit_list -- --warm-up-time 1 --measurement-time 3

  python3 - "$TARGET_DIR" <<'PY'
import json, pathlib, re, sys
root = pathlib.Path(sys.argv[1]) / "criterion"
def median_ns(group, name):
    est = json.loads((root / group / name / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]
def fmt_t(ns):
    return f"{ns / 1e6:.2f} ms" if ns < 1e9 else f"{ns / 1e9:.2f} s"
indexed = median_ns("audit_list_1m", "first_page_by_user")
rows = ["| query (1,000,000 records, page of 100) | median | vs. the indexed query | target |", "|---|---|---|---|"]
for name, label, target in [
    ("first_page_by_user", "first page by user (username index)", "< 100 ms"),
    ("first_page_by_user_newest_first", "first page by user, newest first", "< 100 ms"),
    ("first_page_by_method_scan", "first page by method (scan; 1 in 10 match)", ""),
    ("first_page_by_user_scan", "peer: the same user's first 100 found by scanning", ""),
]:
    ns = median_ns("audit_list_1m", name)
    rows.append(f"| {label} | {fmt_t(ns)} | {ns / indexed:.2f}x | {target} |")
table = "\n".join(rows)
path = pathlib.Path("BENCHMARKS.md")
new = re.sub(r"(<!-- audit-bench:begin -->\n).*?(<!-- audit-bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), path.read_text(), flags=re.S)
path.write_text(new)
print(table)
PY

  log "audit Verify after retention at 10,000 and 1,000,000 records (criterion; builds both trails first, with a 1,000,000-denial flood, several minutes)"
  $CARGO_CMD bench --locked -p custos-store --bench audit_verify -- --warm-up-time 1 --measurement-time 3 2>&1 | tee "$TARGET_DIR/audit-verify-bench.log"

  python3 - "$TARGET_DIR" <<'PY'
import json, pathlib, re, sys
root = pathlib.Path(sys.argv[1]) / "criterion" / "audit_verify"
def median_ns(name, size):
    est = json.loads((root / name / size / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]
def fmt_t(ns):
    return f"{ns / 1e3:.1f} µs" if ns < 1e6 else (f"{ns / 1e6:.2f} ms" if ns < 1e9 else f"{ns / 1e9:.2f} s")
rows = ["| check (after retention) | 10,000 kept | 1,000,000 kept | 1,000,000 / 10,000 | target |", "|---|---|---|---|---|"]
for name, label, target in [
    ("new_1000", "`verify`, 1,000 records new since the checkpoint", "same cost (1.0x, within noise)"),
    ("nothing_new", "`verify`, nothing new", "same cost"),
    ("full", "peer: `verify_full` (every kept record)", ""),
]:
    small, large = median_ns(name, "10k"), median_ns(name, "1m")
    rows.append(f"| {label} | {fmt_t(small)} | {fmt_t(large)} | {large / small:.2f}x | {target} |")
table = "\n".join(rows)
path = pathlib.Path("BENCHMARKS.md")
new = re.sub(r"(<!-- audit-verify-bench:begin -->\n).*?(<!-- audit-verify-bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), path.read_text(), flags=re.S)
path.write_text(new)
print(table)
PY
}

# ---------------------------------------------------------------------------------------------
# Cluster benchmarks: custos vs etcd.

RUNS="${BENCH_RUNS:-3}"
SEQ_OPS="${BENCH_SEQ_OPS:-2000}"
W10_OPS="${BENCH_W10_OPS:-5000}"
W100_OPS="${BENCH_W100_OPS:-20000}"
READ_OPS="${BENCH_READ_OPS:-60000}"
# Fewer linearizable reads: custos serves them at a few hundred per second today (see
# BENCHMARKS.md), and the run must fit its deadline. Both systems get the same count.
LIN_OPS="${BENCH_LIN_OPS:-10000}"
KEYS="${BENCH_KEYS:-10000}"
IDLE_PCT="${BENCH_IDLE_PCT:-25}"
IDLE_WAIT="${BENCH_IDLE_WAIT:-60}"
ETCD_PASSWORD="bench-$RANDOM$RANDOM"

# name workload clients connections ops
SHAPES=(
  "seq-write write 1 1 $SEQ_OPS"
  "write-10 write 10 10 $W10_OPS"
  "write-100 write 100 10 $W100_OPS"
  "read-lin-100 read-linearizable 100 10 $LIN_OPS"
  "read-ser-100 read-serializable 100 10 $READ_OPS"
)


ensure_plot_venv() {
  local venv="$TARGET_DIR/bench-venv"
  if ! "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
    log "matplotlib into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q matplotlib==3.10.7 >&2
  fi
  PLOT_PY="$venv/bin/python"
}

trap cleanup EXIT


# Runs every shape once against one system: bench_shapes SYSTEM LABEL RUN PIDS ARGS...
bench_shapes() {
  local system="$1" label="$2" run="$3" pids="$4"; shift 4
  local shape name workload clients conns ops
  for shape in "${SHAPES[@]}"; do
    read -r name workload clients conns ops <<<"$shape"
    log "$label run $run: $name ($clients clients over $conns connections, $ops ops)"
    "$BIN" bench "$system" "$@" -o json --workload "$workload" --clients "$clients" \
      --connections "$conns" --ops "$ops" --keys "$KEYS" --pids "$pids" --deadline-secs 180 \
      --idle-below-pct "$IDLE_PCT" --idle-max-wait-secs "$IDLE_WAIT" --label "$label" \
      --latencies "$OUT/lat/$label.$name.$run.txt" \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); r["shape"]=sys.argv[1]; r["run"]=int(sys.argv[2]); print(json.dumps(r))' "$name" "$run" \
      | tee -a "$OUT/results.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print("   %d ok, %d errors, %.0f ops/s, p50 %.2f ms, p99 %.2f ms, server CPU %.3f ms/op, foreign CPU %.1f s" % (r["ops_ok"], r["errors"], r["ops_per_s"], l["p50"], l["p99"], r["server_cpu_ms_per_op"], r["foreign_cpu_s"]))' >&2
  done
}

# Starts a fresh 3-member custos cluster (`custos dev`) and sets ENDPOINTS, PIDS and TOKEN (the
# user token): start_custos LABEL RUN [custos dev flags]. `cleanup` stops it.
start_custos() {
  local label="$1" run="$2"; shift 2
  local base
  base="$(free_base_port)"
  mkdir -p "$OUT"
  log "custos ($label): 3 nodes from base port $base"
  start_dev "$OUT/$label-$run" "$base" "$@"
  ENDPOINTS="$(field '",".join(d["endpoints"])')"
  PIDS="$(field '",".join(str(n["pid"]) for n in d["nodes"])')"
  TOKEN="$(field 'd["tokens"]["user"]')"
}

# A fresh custos cluster for one run of every shape: custos_system LABEL RUN [custos dev flags].
custos_system() {
  local label="$1" run="$2"; shift 2
  start_custos "$label" "$run" "$@"
  local endpoints="$ENDPOINTS" pids="$PIDS"
  local auth=(--token "$TOKEN")
  if [ "$label" = custos-noauth ]; then auth=(); fi
  log "custos ($label): preloading $KEYS volumes"
  "$BIN" bench custos --endpoint "$endpoints" "${auth[@]}" -o json --workload preload \
    --clients 100 --connections 10 --ops "$KEYS" --deadline-secs 300 >/dev/null
  bench_shapes custos "$label" "$run" "$pids" --endpoint "$endpoints" "${auth[@]}"
  cleanup
}

# A fresh etcd cluster (auth on) for one run of every shape: etcd_system LABEL RUN.
etcd_system() {
  local label="$1" run="$2" base endpoints pids
  base="$(free_base_port)"
  start_etcd "$OUT/$label-$run" "$base" "$ETCD_PASSWORD"
  endpoints="$ETCD_ENDPOINTS"
  pids="$ETCD_PIDS"
  local auth=(--etcd-endpoint "$endpoints" --user bench --password "$ETCD_PASSWORD")
  log "etcd ($label): preloading $KEYS keys"
  "$BIN" bench etcd "${auth[@]}" -o json --workload preload --clients 100 --connections 10 \
    --ops "$KEYS" --deadline-secs 300 >/dev/null
  bench_shapes etcd "$label" "$run" "$pids" "${auth[@]}"
  cleanup
}

cluster_bench() {
  ensure_etcd
  ensure_plot_venv
  release_bin
  OUT="$TARGET_DIR/bench/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$OUT/lat"
  log "results in $OUT"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "etcd=$(etcd --version | head -1)"
    echo "cpus=$(nproc)"
    echo "runs=$RUNS"
    echo "idle_gate=below ${IDLE_PCT}% busy, waiting at most ${IDLE_WAIT} s"
  } >"$OUT/meta.txt"
  # One system at a time, so no cluster competes with the one measured; the systems take turns
  # run by run, so a disturbance of the machine (other tenants) spreads over all of them. Each
  # run starts from a fresh cluster with the read key space preloaded.
  local run
  for run in $(seq "$RUNS"); do
    custos_system custos-auth "$run"
    custos_system custos-noauth "$run" --no-auth
    etcd_system etcd-auth "$run"
  done
  "$PLOT_PY" scripts/bench_report.py "$OUT" "${BENCH_MD:-BENCHMARKS.md}" "${BENCH_PLOTS:-docs/bench}"
}

# ---------------------------------------------------------------------------------------------
# Denial flood (issue #5): a legitimate writer's latency, quiet against flooded, in one run.

FLOOD_LOOPS="${BENCH_FLOOD_LOOPS:-2 8}"
FLOOD_BURSTS="${BENCH_FLOOD_BURSTS:-10}"
FLOOD_QUIET_MS="${BENCH_FLOOD_QUIET_MS:-2000}"
FLOOD_MS="${BENCH_FLOOD_MS:-2000}"

flood_bench() {
  release_bin
  OUT="$TARGET_DIR/bench-flood/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$OUT"
  log "results in $OUT"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "cpus=$(nproc)"
    echo "runs=$RUNS"
    echo "loops=$FLOOD_LOOPS"
    echo "bursts=$FLOOD_BURSTS"
    echo "quiet_ms=$FLOOD_QUIET_MS"
    echo "flood_ms=$FLOOD_MS"
    echo "idle_gate=below ${IDLE_PCT}% busy, waiting at most ${IDLE_WAIT} s"
  } >"$OUT/meta.txt"
  # One fresh cluster per run, every flood size measured on it; the sizes take turns in
  # alternating order, so a drift over the run weighs on them alike.
  local run k order
  for run in $(seq "$RUNS"); do
    start_custos custos-flood "$run"
    order="$FLOOD_LOOPS"
    if [ $((run % 2)) = 0 ]; then order="$(printf '%s\n' $FLOOD_LOOPS | tac | tr '\n' ' ')"; fi
    for k in $order; do
      log "flood run $run: $k flood loops, $FLOOD_BURSTS x (${FLOOD_QUIET_MS} ms quiet + ${FLOOD_MS} ms flood)"
      "$BIN" bench flood --endpoint "$ENDPOINTS" --token "$TOKEN" -o json --flood-loops "$k" \
        --bursts "$FLOOD_BURSTS" --quiet-ms "$FLOOD_QUIET_MS" --flood-ms "$FLOOD_MS" \
        --pids "$PIDS" --idle-below-pct "$IDLE_PCT" --idle-max-wait-secs "$IDLE_WAIT" \
        --label "flood-$k" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); r["run"]=int(sys.argv[1]); print(json.dumps(r))' "$run" \
        | tee -a "$OUT/results.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); q,f=r["quiet"],r["flood"]; print("   p99 quiet %.2f ms, flood %.2f ms (%.2fx); p50 %.2fx; %d/%d writes (%d errors); %d refusals (%.0f/s, %d unexpected)" % (q["latency_ms"]["p99"], f["latency_ms"]["p99"], r["p99_ratio"], r["p50_ratio"], q["writes"], f["writes"], q["write_errors"] + f["write_errors"], r["refusals"], r["refusals_per_s"], r["flood_errors"]))' >&2
    done
    cleanup
  done
  python3 scripts/bench_flood_report.py "$OUT" "${BENCH_MD:-BENCHMARKS.md}"
}

# scripts/bench.sh overload: a bounded load generator at several times the write capacity of a
# 3-member release cluster for BENCH_OVERLOAD_SECS, sampling every member (issue #20).
overload_bench() {
  release_bin
  OUT="$TARGET_DIR/bench-overload/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$OUT"
  log "results in $OUT"
  local secs="${BENCH_OVERLOAD_SECS:-600}" writers="${BENCH_OVERLOAD_WRITERS:-3000}"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "cpus=$(nproc)"
    echo "secs=$secs"
    echo "writers=$writers"
    echo "audit_max_records=${BENCH_OVERLOAD_AUDIT_MAX_RECORDS:-default}"
  } >"$OUT/meta.txt"
  # BENCH_OVERLOAD_AUDIT_MAX_RECORDS bounds the replicated trail below its default (1,000,000),
  # so it reaches its bound within the first minute and the RSS that follows is that of a
  # member whose data no longer grows.
  local extra=()
  if [ -n "${BENCH_OVERLOAD_AUDIT_MAX_RECORDS:-}" ]; then
    extra=(--audit-max-records "$BENCH_OVERLOAD_AUDIT_MAX_RECORDS")
  fi
  start_custos custos-overload 1 "${extra[@]}"
  local metrics
  metrics="$(field '",".join(n["metrics"] for n in d["nodes"])')"
  log "overload: $writers writers for $secs s"
  "$BIN" bench overload --endpoint "$ENDPOINTS" --token "$TOKEN" -o json --writers "$writers" \
    --duration-secs "$secs" --pids "$PIDS" --metrics "$metrics" >"$OUT/report.json"
  # What the run left on disk per member (data dir: the store and the local log files).
  local n
  for n in 1 2 3; do
    echo "disk_node_$n=$(du -sb "$DEV_DIR/node-$n" | cut -f1)" >>"$OUT/meta.txt"
  done
  cleanup
  python3 scripts/bench_overload_report.py "$OUT" "${BENCH_MD:-BENCHMARKS.md}"
}

# scripts/bench.sh snapshot: snapshot build and install at 100,000 volumes and 1,000,000 audit
# records (crates/store/benches/snapshot_1m.rs), this tree against a base revision built and run
# in the same invocation. The base defaults to the commit that added the benchmark (the last one
# with in-memory snapshots); BENCH_SNAPSHOT_BASE picks another. Each revision populates its own
# store, then builds and installs in child processes; peak RSS is per phase (VmHWM).
snapshot_bench() {
  local base="${BENCH_SNAPSHOT_BASE:-$(git log --diff-filter=A --format=%H -- crates/store/benches/snapshot_1m.rs | tail -1)}"
  local out="$TARGET_DIR/snapshot-bench"
  local base_tree="$out/base-tree"
  mkdir -p "$out"
  log "snapshot build/install at 1,000,000 audit records: base $(git rev-parse --short "$base") vs this tree"
  # Both trees build into one target dir; cargo would take the other tree's custos-store as
  # fresh (its dep-info names the other tree's files), so its artifacts go first.
  bench_exe() { # dir -> path of the built snapshot_1m bench binary
    (cd "$1" && $CARGO_CMD clean --release -p custos-store >&2 &&
      $CARGO_CMD bench --locked -p custos-store --bench snapshot_1m --no-run 2>&1) |
      sed -n 's/.*Executable .*(\(.*snapshot_1m-[0-9a-f]*\)).*/\1/p' | tail -1 |
      while read -r p; do case "$p" in /*) echo "$p" ;; *) echo "$1/$p" ;; esac; done
  }
  git worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"
  git worktree add --detach "$base_tree" "$base" >/dev/null
  local base_exe new_exe
  base_exe="$(bench_exe "$base_tree")"; cp "$base_exe" "$out/snapshot_1m-base"
  new_exe="$(bench_exe "$ROOT")"; cp "$new_exe" "$out/snapshot_1m-new"
  git worktree remove --force "$base_tree"
  for rev in base new; do
    log "snapshot bench: $rev"
    SNAPSHOT_BENCH_OUT="$out/$rev.json" "$out/snapshot_1m-$rev" --bench
  done

  python3 - "$out" "$(git rev-parse --short "$base")" <<'PY'
import json, pathlib, re, sys
out, base = pathlib.Path(sys.argv[1]), sys.argv[2]
old = json.loads((out / "base.json").read_text())
new = json.loads((out / "new.json").read_text())
mib = lambda kib: f"{kib / 1024:.0f} MiB"
sec = lambda s: f"{s:.2f} s"
rows = [f"| {new['volumes']:,} volumes, {new['audit_records']:,} audit records | in-memory (base {base}) | file-based | file-based / in-memory |",
        "|---|---|---|---|"]
def row(label, key, fmt, f=lambda d, k: d[k]):
    o, n = f(old, key), f(new, key)
    rows.append(f"| {label} | {fmt(o)} | {fmt(n)} | {n / o:.2f}x |")
growth = lambda phase: (lambda d, _k: d[f"{phase}_peak_kib"] - d[f"{phase}_rss_before_kib"])
row("build: time", "build_s", sec)
row("build: peak RSS", "build_peak_kib", mib)
row("build: peak RSS growth over the opened store", "build", mib, growth("build"))
row("install (receive 3 MiB chunks, then install): time", "install_s", sec)
row("install: peak RSS", "install_peak_kib", mib)
row("install: peak RSS growth over the opened store", "install", mib, growth("install"))
row("snapshot size", "snapshot_bytes", lambda b: f"{b / 2**20:.0f} MiB")
assert old["installed_audit_records"] == old["audit_records"] and new["installed_audit_records"] == new["audit_records"]
table = "\n".join(rows)
path = pathlib.Path("BENCHMARKS.md")
new_text = re.sub(r"(<!-- snapshot-bench:begin -->\n).*?(<!-- snapshot-bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), path.read_text(), flags=re.S)
path.write_text(new_text)
print(table)
PY
}

# scripts/bench.sh backup: backup and restore with bounded memory (crates/store/benches/
# backup_1m.rs): a store of BENCH_BACKUP_SMALL volumes ("10000") and ten times as many audit
# records, then one of 100,000 volumes and 1,000,000 records, each backed up to a file and
# restored in child processes; peak RSS growth per phase (VmHWM over the RSS before it) against
# the backup file's size, the data the phase streams. Memory that does not grow with the data
# stays flat from the small run to the large one.
backup_bench() {
  local out="$TARGET_DIR/backup-bench" small="${BENCH_BACKUP_SMALL:-10000}" exe
  mkdir -p "$out"
  log "backup/restore memory at $small and 100,000 volumes"
  exe="$($CARGO_CMD bench --locked -p custos-store --bench backup_1m --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*backup_1m-[0-9a-f]*\)).*/\1/p' | tail -1)"
  BACKUP_BENCH_VOLUMES="$small" BACKUP_BENCH_DENIALS="$((small * 10))" \
    BACKUP_BENCH_OUT="$out/small.json" "$exe" --bench
  BACKUP_BENCH_OUT="$out/large.json" "$exe" --bench

  python3 - "$out" <<'PY'
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
runs = [json.loads((out / f"{n}.json").read_text()) for n in ("small", "large")]
mib = lambda b: f"{b / 2**20:.0f} MiB"
rows = ["| store | backup file | backup: time | backup: peak RSS growth | growth / file | restore (verify + install): time | restore: peak RSS growth | growth / file |",
        "|---|---|---|---|---|---|---|---|"]
for r in runs:
    assert r["restored_audit_records"] == r["audit_records"], r
    size = r["backup_bytes"]
    bg = (r["backup_peak_kib"] - r["backup_rss_before_kib"]) * 1024
    rg = (r["restore_peak_kib"] - r["restore_rss_before_kib"]) * 1024
    rows.append(f"| {r['volumes']:,} volumes, {r['audit_records']:,} audit records | {mib(size)} | {r['backup_s']:.2f} s | {mib(bg)} | {bg / size:.2f} | {r['restore_s']:.2f} s (verify {r['restore_verify_s']:.2f} s) | {mib(rg)} | {rg / size:.2f} |")
table = "\n".join(rows)
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
if "<!-- backup-bench:begin -->" not in text:
    raise SystemExit("BENCHMARKS.md has no backup-bench markers")
path.write_text(re.sub(r"(<!-- backup-bench:begin -->\n).*?(<!-- backup-bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S))
print(table)
PY
}

# ---------------------------------------------------------------------------------------------
# The official Python client (issue #23): custos vs etcd through grpcio, clients on any member.

CLIENT_SEQ_OPS="${BENCH_CLIENT_SEQ_OPS:-2000}"
CLIENT_W_OPS="${BENCH_CLIENT_W_OPS:-8000}"
CLIENT_READ_OPS="${BENCH_CLIENT_READ_OPS:-20000}"
CLIENT_READERS="${BENCH_CLIENT_READERS:-100}"
CLIENT_PROCS="${BENCH_CLIENT_PROCS:-4}"

# name workload clients target ops
CLIENT_SHAPES=(
  "seq-write write 1 all $CLIENT_SEQ_OPS"
  "write-10 write 10 all $CLIENT_W_OPS"
  "write-100 write 100 all $CLIENT_W_OPS"
  "write-100-leader write 100 leader $CLIENT_W_OPS"
  "read-lin read-lin $CLIENT_READERS all $CLIENT_READ_OPS"
  "read-ser read-ser $CLIENT_READERS all $CLIENT_READ_OPS"
)

# The SDK address of the member custos' status names as leader: custos_leader ENDPOINTS TOKEN.
custos_leader() {
  "$BIN" --endpoint "$1" --token "$2" -o json cluster status | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next(m["sdk_addr"] for m in s["members"] if m["id"] == s["leader_id"] != 0))'
}

# The client address of etcd's leader: etcd_leader ENDPOINTS PASSWORD.
etcd_leader() {
  ETCDCTL_API=3 etcdctl --endpoints "$1" --user "bench:$2" --command-timeout 5s \
    endpoint status -w json | python3 -c '
import json, sys
print(next(e["Endpoint"] for e in json.load(sys.stdin) if e["Status"]["header"]["member_id"] == e["Status"]["leader"]))'
}

# Every client shape once against one running system: client_shapes SYSTEM RUN PIDS ENDPOINTS.
# The system's credentials are in BENCH_CLIENT_TOKEN / BENCH_CLIENT_PASSWORD. Clients on any
# member start at member (RUN - 1) mod 3, so over runs a lone writer meets leader and followers
# alike in both systems; the report counts the clients the leader had.
client_shapes() {
  local system="$1" run="$2" pids="$3" endpoints="$4"
  local shape name workload clients target ops known leader
  for shape in "${CLIENT_SHAPES[@]}"; do
    read -r name workload clients target ops <<<"$shape"
    if [ "$system" = custos ]; then
      known="$(custos_leader "$endpoints" "$BENCH_CLIENT_TOKEN")"
    else
      known="$(etcd_leader "$endpoints" "$BENCH_CLIENT_PASSWORD")"
    fi
    leader=()
    if [ "$target" = leader ]; then leader=(--leader "$known"); fi
    log "$system run $run: $name ($clients clients, $ops ops, ${leader[1]:-any member}; leader $known)"
    timeout 600 "$CLIENT_PY" scripts/bench_client.py --system "$system" --endpoints "$endpoints" \
      "${leader[@]}" --known-leader "$known" --first-member "$(((run - 1) % 3))" \
      --workload "$workload" --clients "$clients" --procs "$CLIENT_PROCS" \
      --ops "$ops" --keys "$KEYS" --pids "$pids" --deadline-secs 180 \
      --idle-below-pct "$IDLE_PCT" --idle-max-wait-secs "$IDLE_WAIT" --label "$system" \
      --gen-dir "$TARGET_DIR/bench-client/etcd-py" \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); r["shape"]=sys.argv[1]; r["run"]=int(sys.argv[2]); print(json.dumps(r))' "$name" "$run" \
      | tee -a "$OUT/results.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print("   %d ok, %d errors%s, %.0f ops/s, p50 %.2f ms, p99 %.2f ms, server CPU %.3f ms/op, client CPU %.3f ms/op, foreign CPU %.1f s" % (r["ops_ok"], r["errors"], " (" + r["first_error"] + ")" if r["first_error"] else "", r["ops_per_s"], l["p50"], l["p99"], r["server_cpu_ms_per_op"] or 0, r["client_cpu_ms_per_op"] or 0, r["foreign_cpu_s"]))' >&2
  done
}

# One fresh custos cluster (release, auth on), the read key space preloaded, every client shape.
client_custos() {
  local run="$1"
  start_custos custos "$run"
  log "custos: preloading $KEYS volumes (custos bench)"
  "$BIN" bench custos --endpoint "$ENDPOINTS" --token "$TOKEN" -o json --workload preload \
    --clients 100 --connections 10 --ops "$KEYS" --deadline-secs 300 >/dev/null
  BENCH_CLIENT_TOKEN="$TOKEN" client_shapes custos "$run" "$PIDS" "$ENDPOINTS"
  cleanup
  rm -rf "$OUT/custos-$run"/node-*/data # the logs stay
}

# One fresh etcd cluster (auth on), the read key space preloaded, every client shape.
client_etcd() {
  local run="$1" base
  base="$(free_base_port)"
  start_etcd "$OUT/etcd-$run" "$base" "$ETCD_PASSWORD"
  log "etcd: preloading $KEYS keys (custos bench)"
  "$BIN" bench etcd --etcd-endpoint "$ETCD_ENDPOINTS" --user bench --password "$ETCD_PASSWORD" \
    -o json --workload preload --clients 100 --connections 10 --ops "$KEYS" \
    --deadline-secs 300 >/dev/null
  BENCH_CLIENT_PASSWORD="$ETCD_PASSWORD" client_shapes etcd "$run" "$ETCD_PIDS" "$ETCD_ENDPOINTS"
  cleanup
  rm -rf "$OUT/etcd-$run"/e[0-9] # the logs stay
}

client_bench() {
  ensure_etcd
  release_bin
  CLIENT_PY="$(scripts/python-env.sh)/bin/python"
  OUT="$TARGET_DIR/bench-client/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$OUT"
  log "results in $OUT"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "binary=${BIN#"$ROOT"/} ($("$BIN" --version))"
    echo "etcd=$(etcd --version | head -1)"
    echo "cpus=$(nproc)"
    echo "runs=$RUNS"
    echo "keys=$KEYS"
    echo "procs=$CLIENT_PROCS"
    echo "openraft=$(grep -a -o -m1 'openraft-0\.[0-9]*\.[0-9]*' "$BIN" | head -1)"
    echo "idle_gate=below ${IDLE_PCT}% busy, waiting at most ${IDLE_WAIT} s"
  } >"$OUT/meta.txt"
  # One system at a time on fresh clusters; the systems take turns run by run (custos first in
  # odd runs, etcd first in even ones), so a disturbance of the machine spreads over both.
  local run
  for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then
      client_custos "$run"
      client_etcd "$run"
    else
      client_etcd "$run"
      client_custos "$run"
    fi
  done
  "$CLIENT_PY" scripts/bench_client_report.py "$OUT" "${BENCH_MD:-BENCHMARKS.md}"
}

case "$WHAT" in
  auth) auth_bench ;;
  audit) audit_bench ;;
  cluster) cluster_bench ;;
  scale) bash scripts/bench-scale.sh ;;
  flood) flood_bench ;;
  failover) bash scripts/bench-failover.sh ;;
  profile) bash scripts/profile-leader.sh ;;
  reference) bash scripts/bench-reference.sh ;;
  ab) bash scripts/bench-ab.sh ;;
  snapshot) snapshot_bench ;;
  backup) backup_bench ;;
  contention) release_bin; BENCH_B="${BENCH_B:-$BIN}" bash scripts/bench-contention.sh ;;
  overload) overload_bench ;;
  stages) bash scripts/bench-stages.sh ;;
  client) client_bench ;;
  all) auth_bench; audit_bench; cluster_bench; bash scripts/bench-scale.sh; flood_bench; bash scripts/bench-failover.sh ;;
  *) echo "usage: $0 [auth|audit|cluster|scale|flood|failover|reference|snapshot|backup|contention|ab|overload|stages|client|profile|all]" >&2; exit 2 ;;
esac
