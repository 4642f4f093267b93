#!/usr/bin/env python3
"""The official-client load generator of `scripts/bench.sh client` (issue #23).

Drives a custos cluster through the official OpenStorage Python client
(`libopenstorage-openstorage`: `openstorage.connector.Connector`, which adds
`authorization: bearer <token>` to every call, and the `openstorage.api_pb2_grpc` stubs), or an
etcd cluster through grpcio stubs compiled at run time from proto/etcd/etcdserverpb/rpc.proto
(with grpcio-tools' bundled protoc; etcd's simple-token auth: `Authenticate` once per client,
then the `token` metadata, as etcd's clients do). Both systems alike:

  write      custos: Volume.Create of a new name (1 MiB, ha_level 1), as `custos bench custos`;
             etcd: KV.Put of a new key (256-byte value), as `custos bench etcd`
  read-lin   custos: Volume.Inspect of a preloaded volume (linearizable: the read barrier);
             etcd: KV.Range of a preloaded key, serializable=false
  read-ser   the same with `x-custos-consistency: serializable` / serializable=true

C clients are spread over P worker processes (multiprocessing, spawn) of C/P threads each; every
client has its own channel (grpcio's local subchannel pool: its own TCP connection, as separate
SDK users would have) to a member picked round-robin over all members starting at member
`--first-member` (bench.sh rotates it run by run, so a lone writer is not always on the same
member), or to the `--leader` only; connected before the clock starts. `--known-leader` names the
leader found just before the shape, so the report says how many clients were connected to it. Clients take operation numbers from one shared counter until
`--ops` are issued or `--deadline-secs` passed; every call has a deadline (`--op-timeout`).
Server CPU is the members' utime+stime (/proc/<pid>/stat) over the run; client CPU the worker
processes' own; foreign CPU the rest of the machine's busy time (other tenants). Before the clock
starts, the machine is waited for until it is idle (bounded). Prints one JSON report on stdout.

Tokens come from the environment: BENCH_CLIENT_TOKEN (custos bearer token), BENCH_CLIENT_PASSWORD
(etcd user's password).
"""

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import resource
import sys
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
ETCD_PROTO_DIR = ROOT / "proto" / "etcd"
VOLUME_SIZE = 1 << 20
VALUE = b"v" * 256
TICKS = os.sysconf("SC_CLK_TCK")


def custos_key(n):
    return f"bench-key-{n:07d}"


def etcd_key(n):
    return f"/bench/k{n:07d}"


def etcd_stubs(gen_dir):
    """Compiles etcd's subset (once per gen_dir) and imports it."""
    gen = pathlib.Path(gen_dir)
    proto = ETCD_PROTO_DIR / "etcdserverpb" / "rpc.proto"
    out = gen / "etcdserverpb" / "rpc_pb2_grpc.py"
    if not out.exists() or out.stat().st_mtime < proto.stat().st_mtime:
        from grpc_tools import protoc
        import grpc_tools

        gen.mkdir(parents=True, exist_ok=True)
        include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
        rc = protoc.main(["protoc", f"-I{ETCD_PROTO_DIR}", f"-I{include}", f"--python_out={gen}",
                          f"--grpc_python_out={gen}", str(proto.relative_to(ETCD_PROTO_DIR))])
        if rc != 0:
            raise SystemExit(f"protoc failed on {proto} ({rc})")
    if str(gen) not in sys.path:
        sys.path.insert(0, str(gen))
    from etcdserverpb import rpc_pb2, rpc_pb2_grpc

    return rpc_pb2, rpc_pb2_grpc


CHANNEL_OPTS = [("grpc.use_local_subchannel_pool", 1)]


class CustosClient:
    def __init__(self, addr, token, workload, ids):
        import grpc
        from openstorage import api_pb2, api_pb2_grpc, connector

        self.api = api_pb2
        # What the client's README shows a new user: a Connector, then the stubs on its channel.
        self.channel = connector.Connector(endpoint=addr, token=token).connect(CHANNEL_OPTS)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.volumes = api_pb2_grpc.OpenStorageVolumeStub(self.channel)
        self.workload = workload
        self.ids = ids

    def op(self, n, tag, rnd, timeout):
        if self.workload == "write":
            req = self.api.SdkVolumeCreateRequest(
                name=f"pyb-{tag}-{n}", spec=self.api.VolumeSpec(size=VOLUME_SIZE, ha_level=1))
            self.volumes.Create(req, timeout=timeout)
            return
        req = self.api.SdkVolumeInspectRequest(volume_id=self.ids[rnd.randrange(len(self.ids))])
        # A fresh list per call: the client's TokenAuthentication interceptor appends the
        # authorization header to the caller's list in place (and replaces a tuple outright).
        md = [("x-custos-consistency", "serializable")] if self.workload == "read-ser" else None
        self.volumes.Inspect(req, timeout=timeout, metadata=md)

    def close(self):
        self.channel.close()


class EtcdClient:
    def __init__(self, addr, user, password, workload, keys, gen_dir):
        import grpc

        rpc_pb2, rpc_pb2_grpc = etcd_stubs(gen_dir)
        self.pb = rpc_pb2
        self.channel = grpc.insecure_channel(addr, CHANNEL_OPTS)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.md = None
        if user:
            auth = rpc_pb2_grpc.AuthStub(self.channel)
            reply = auth.Authenticate(rpc_pb2.AuthenticateRequest(name=user, password=password),
                                      timeout=30)
            self.md = [("token", reply.token)]
        self.workload = workload
        self.keys = keys

    def op(self, n, tag, rnd, timeout):
        if self.workload == "write":
            self.kv.Put(self.pb.PutRequest(key=f"/bench/pyb-{tag}-{n}".encode(), value=VALUE),
                        timeout=timeout, metadata=self.md)
            return
        key = etcd_key(rnd.randrange(self.keys)).encode()
        reply = self.kv.Range(self.pb.RangeRequest(key=key, serializable=self.workload == "read-ser"),
                              timeout=timeout, metadata=self.md)
        if not reply.kvs:
            raise RuntimeError(f"{key!r} not found: preload first")

    def close(self):
        self.channel.close()


def worker(cfg, clients, counter, ready, start, done, results):
    """One worker process: `clients` (global client numbers) as threads."""
    import random

    try:
        conns = []
        for c in clients:
            addr = cfg["targets"][(c + cfg["first_member"]) % len(cfg["targets"])]
            if cfg["system"] == "custos":
                conns.append(CustosClient(addr, cfg["token"], cfg["workload"], cfg["ids"]))
            else:
                conns.append(EtcdClient(addr, cfg["user"], cfg["password"], cfg["workload"],
                                        cfg["keys"], cfg["gen_dir"]))
        setup_error = None
    except Exception as e:  # every client of this process counts as failed: the run is void
        conns, setup_error = [], f"setup: {e!r}"
    ready.wait(timeout=600)
    start.wait(timeout=600)
    t_start = time.monotonic()
    stop_at = t_start + cfg["deadline_secs"]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    lat, errors, first = [], [len(clients) if setup_error else 0], [setup_error]
    lock = threading.Lock()

    def run(conn, idx):
        rnd = random.Random(idx * 7919 + os.getpid())
        mine = []
        while time.monotonic() < stop_at:
            with counter.get_lock():
                n = counter.value
                if n >= cfg["ops"]:
                    break
                counter.value = n + 1
            t0 = time.perf_counter()
            try:
                conn.op(n, cfg["tag"], rnd, cfg["op_timeout"])
                mine.append(time.perf_counter() - t0)
            except Exception as e:
                with lock:
                    errors[0] += 1
                    if first[0] is None:
                        first[0] = (f"{e.code().name}: {e.details()}" if hasattr(e, "code")
                                    else f"{type(e).__name__}: {e}")
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(conn, i)) for i, conn in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    try:
        done.wait(timeout=cfg["deadline_secs"] + cfg["op_timeout"] + 60)
    except Exception:
        pass
    results.put({"lat": lat, "errors": errors[0], "first_error": first[0], "end": t_end,
                 "cpu_s": cpu, "setup_error": setup_error})
    for conn in conns:
        conn.close()


def proc_cpu(pids):
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICKS, sum(v[:8]) / TICKS


def idle_gate(pct, max_wait):
    """Waits (at most max_wait s) until the machine was below pct busy over half a second."""
    t0 = time.monotonic()
    while True:
        b0, a0 = machine_busy()
        time.sleep(0.5)
        b1, a1 = machine_busy()
        busy = 100.0 * (b1 - b0) / max(a1 - a0, 1e-9)
        waited = time.monotonic() - t0
        if busy < pct or waited >= max_wait:
            return {"below_pct": pct, "waited_s": round(waited, 2), "busy_pct": round(busy, 1),
                    "gave_up": busy >= pct}


def percentile(sorted_v, p):
    if not sorted_v:
        return 0.0
    import math

    rank = math.ceil(p / 100.0 * len(sorted_v))
    return sorted_v[min(max(rank, 1), len(sorted_v)) - 1]


def custos_ids(addr, token, keys):
    """The preloaded volumes' ids (`bench-key-*`), as `custos bench custos` reads them."""
    from openstorage import api_pb2, api_pb2_grpc, connector

    ch = connector.Connector(endpoint=addr, token=token).connect()
    stub = api_pb2_grpc.OpenStorageVolumeStub(ch)
    ids = sorted(stub.Enumerate(api_pb2.SdkVolumeEnumerateRequest(), timeout=60).volume_ids)
    ch.close()
    ids = ids[:keys]
    if not ids:
        raise SystemExit("no volumes to read: preload first")
    return ids


def client_versions():
    from importlib.metadata import version

    return ", ".join([f"python {sys.version.split()[0]}"] + [
        f"{p} {version(p)}" for p in ("grpcio", "protobuf", "libopenstorage-openstorage")])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", choices=["custos", "etcd"], required=True)
    ap.add_argument("--endpoints", required=True, help="host:port,... of all members")
    ap.add_argument("--leader", help="connect every client to this member only")
    ap.add_argument("--known-leader", help="the leader's address, to report clients on it")
    ap.add_argument("--first-member", type=int, default=0,
                    help="index in --endpoints of the member client 0 connects to")
    ap.add_argument("--workload", choices=["write", "read-lin", "read-ser"], required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--procs", type=int, default=4, help="worker processes (at most --clients)")
    ap.add_argument("--ops", type=int, required=True)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--user", default="bench", help="etcd user")
    ap.add_argument("--pids", required=True, help="server pids, comma-separated")
    ap.add_argument("--deadline-secs", type=float, default=180)
    ap.add_argument("--op-timeout", type=float, default=10)
    ap.add_argument("--idle-below-pct", type=float, default=25)
    ap.add_argument("--idle-max-wait-secs", type=float, default=60)
    ap.add_argument("--gen-dir", default=str(ROOT / "target" / "bench-client" / "etcd-py"))
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    endpoints = a.endpoints.split(",")
    targets = [a.leader] if a.leader else endpoints
    pids = [int(p) for p in a.pids.split(",")]
    procs = max(1, min(a.procs, a.clients))
    cfg = {"system": a.system, "workload": a.workload, "targets": targets, "ops": a.ops,
           "keys": a.keys, "deadline_secs": a.deadline_secs, "op_timeout": a.op_timeout,
           "tag": uuid.uuid4().hex[:8], "gen_dir": a.gen_dir, "ids": None,
           "first_member": a.first_member,
           "token": os.environ.get("BENCH_CLIENT_TOKEN", ""), "user": a.user,
           "password": os.environ.get("BENCH_CLIENT_PASSWORD", "")}
    if a.system == "etcd":
        etcd_stubs(a.gen_dir)  # compiled once, before the workers import it
        if not cfg["password"]:
            cfg["user"] = ""
    elif a.workload != "write":
        cfg["ids"] = custos_ids(endpoints[0], cfg["token"], a.keys)

    ctx = mp.get_context("spawn")  # grpcio does not survive fork() after it started
    counter = ctx.Value("q", 0)
    ready, start, done = ctx.Barrier(procs + 1), ctx.Event(), ctx.Barrier(procs + 1)
    results = ctx.Queue()
    # Client c goes to process c % procs, so each process holds every member's share.
    workers = [ctx.Process(target=worker, daemon=True,
                           args=(cfg, list(range(p, a.clients, procs)), counter, ready, start,
                                 done, results)) for p in range(procs)]
    for w in workers:
        w.start()
    ready.wait(timeout=600)  # every client connected (and authenticated)
    gate = idle_gate(a.idle_below_pct, a.idle_max_wait_secs)
    cpu0, (busy0, _) = proc_cpu(pids), machine_busy()
    t0 = time.monotonic()
    start.set()
    done.wait(timeout=a.deadline_secs + a.op_timeout + 120)
    cpu1, (busy1, _) = proc_cpu(pids), machine_busy()
    outs = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)

    lat = sorted(x for o in outs for x in o["lat"])
    ok = len(lat)
    errors = sum(o["errors"] for o in outs)
    first = next((o["first_error"] for o in outs if o["first_error"]), None)
    elapsed = max(o["end"] for o in outs) - t0
    server_cpu = cpu1 - cpu0
    client_cpu = sum(o["cpu_s"] for o in outs)
    busy = busy1 - busy0
    ms = lambda s: round(s * 1000.0, 3)
    report = {
        "system": a.system, "label": a.label, "workload": a.workload,
        "target": "leader" if a.leader else "all", "endpoints": targets,
        "clients": a.clients, "procs": procs,
        "clients_on_leader": (sum(1 for c in range(a.clients)
                                  if targets[(c + a.first_member) % len(targets)] == a.known_leader)
                              if a.known_leader else None),
        "threads_per_proc": [len(range(p, a.clients, procs)) for p in range(procs)],
        "connections": a.clients, "ops_requested": a.ops, "ops_ok": ok, "errors": errors,
        "first_error": first, "deadline_hit": ok + errors < a.ops,
        "elapsed_s": round(elapsed, 3), "ops_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0,
        "latency_ms": {"p50": ms(percentile(lat, 50)), "p90": ms(percentile(lat, 90)),
                       "p99": ms(percentile(lat, 99)), "max": ms(lat[-1] if lat else 0),
                       "mean": ms(sum(lat) / ok if ok else 0)},
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_ms_per_op": round(1000.0 * server_cpu / ok, 4) if ok else None,
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_ms_per_op": round(1000.0 * client_cpu / ok, 4) if ok else None,
        "machine_busy_s": round(busy, 3),
        "foreign_cpu_s": round(max(busy - server_cpu - client_cpu, 0.0), 3),
        "idle_gate": gate,
        "client": client_versions(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
