#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced from the repository root, not run): the cargo
# command and target dir, logging, stopping what a script started, a `custos dev` cluster, the
# custos binary to measure, a free base port for a 3-member cluster on 127.0.0.1, and Debian's
# etcd when it is missing.

ROOT="$PWD"
CARGO_CMD="${BENCH_CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '\n==> %s\n' "$*" >&2; }

# Processes a script started (pids), stopped by `cleanup`: SIGTERM, up to 10 s to exit, then
# SIGKILL. Each script traps `cleanup` on EXIT.
STARTED=()
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  STARTED=()
}

# start_dev DIR BASE [custos dev flags]: a 3-member `custos dev` cluster (BIN) in DIR from base
# port BASE, its output in DIR.log, waited for until DIR/cluster.json is written; sets DEV_DIR,
# which `field EXPR` reads (`d` is cluster.json).
start_dev() {
  local dir="$1" base="$2" devpid
  shift 2
  DEV_DIR="$dir"
  "$BIN" dev --dir "$dir" --nodes 3 --base-port "$base" "$@" >"$dir.log" 2>&1 &
  devpid=$!
  STARTED+=("$devpid")
  for _ in $(seq 900); do
    [ -s "$dir/cluster.json" ] && return
    kill -0 "$devpid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir.log" >&2
  echo "custos dev did not start" >&2
  exit 1
}
field() { python3 -c "import json; d=json.load(open('$DEV_DIR/cluster.json')); print($1)"; }

# Sets BIN: BENCH_BIN, or a release build of this tree.
release_bin() {
  if [ -n "${BENCH_BIN:-}" ]; then
    BIN="$BENCH_BIN"
  else
    log "building custos (release)"
    $CARGO_CMD build --release --locked -p custos-cli
    BIN="$TARGET_DIR/release/custos"
  fi
}

# A base port P such that P..P+3 and P+100.., P+200.., P+300..P+303 are free on 127.0.0.1: the
# SDK, peer, REST and metrics ports of `custos dev` (and etcd's client and peer ports).
free_base_port() {
  python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randint(20000, 40000)
    socks = []
    try:
        for off in (0, 100, 200, 300):
            for i in range(4):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + off + i))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
PY
}

# Installs etcd-server and etcd-client from Debian's packages unless both are on the PATH.
ensure_etcd() {
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then return; fi
  printf '\n==> %s\n' "installing etcd from Debian's packages" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >&2
}

# etcd_enable_auth ENDPOINTS PASSWORD PREFIX: a root user, a user `bench` whose role may read and
# write keys under PREFIX only, both with PASSWORD, then `auth enable`.
etcd_enable_auth() {
  local ctl=(etcdctl --endpoints "$1" --command-timeout 5s)
  ETCDCTL_API=3 "${ctl[@]}" user add "root:$2" --interactive=false >/dev/null
  ETCDCTL_API=3 "${ctl[@]}" user grant-role root root >/dev/null
  ETCDCTL_API=3 "${ctl[@]}" role add benchrole >/dev/null
  ETCDCTL_API=3 "${ctl[@]}" role grant-permission benchrole --prefix=true readwrite "$3" >/dev/null
  ETCDCTL_API=3 "${ctl[@]}" user add "bench:$2" --interactive=false >/dev/null
  ETCDCTL_API=3 "${ctl[@]}" user grant-role bench benchrole >/dev/null
  ETCDCTL_API=3 "${ctl[@]}" auth enable >/dev/null
}

# etcd_member DIR BASE I CLUSTER TOKEN: member eI of a 3-member etcd cluster on 127.0.0.1 (client
# port BASE+I, peer port BASE+100+I, data in DIR/eI, log appended to DIR/eI.log), started in the
# background ($! is its pid).
etcd_member() {
  local dir="$1" base="$2" i="$3" cluster="$4" token="$5"
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-client-urls "http://127.0.0.1:$((base + i))" \
    --advertise-client-urls "http://127.0.0.1:$((base + i))" \
    --listen-peer-urls "http://127.0.0.1:$((base + 100 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((base + 100 + i))" \
    --initial-cluster "$cluster" --initial-cluster-token "$token" \
    --initial-cluster-state new --logger zap >>"$dir/e$i.log" 2>&1 &
}

# start_etcd DIR BASE PASSWORD: a 3-member etcd cluster in DIR (client ports BASE..BASE+2, peer
# ports BASE+100..), waited for (bounded: 30 s), with auth on (etcd_enable_auth: user `bench`,
# readwrite under /bench/, with PASSWORD). Sets ETCD_ENDPOINTS (host:port,...) and ETCD_PIDS.
start_etcd() {
  local dir="$1" base="$2" password="$3" i cluster=""
  ETCD_ENDPOINTS=""
  ETCD_PIDS=""
  mkdir -p "$dir"
  for i in 0 1 2; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 100 + i))"
    ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:$((base + i))"
  done
  log "etcd ($(etcd --version | head -1)): 3 members from base port $base"
  for i in 0 1 2; do
    etcd_member "$dir" "$base" "$i" "$cluster" "bench-$base"
    STARTED+=("$!")
    ETCD_PIDS+="${ETCD_PIDS:+,}$!"
  done
  local ctl=(etcdctl --endpoints "$ETCD_ENDPOINTS" --command-timeout 5s)
  for _ in $(seq 300); do
    ETCDCTL_API=3 "${ctl[@]}" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  ETCDCTL_API=3 "${ctl[@]}" endpoint health >&2
  log "etcd: root user, role benchrole (readwrite /bench/), user bench, auth enable"
  etcd_enable_auth "$ETCD_ENDPOINTS" "$password" /bench/
}
