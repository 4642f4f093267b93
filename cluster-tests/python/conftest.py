"""Fixtures: a real 3-node custos cluster started with `custos dev`, torn down after the session."""

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]


def token(cluster, sub, roles=("system.user",), groups=()):
    """An HS256 token for `sub` signed with the dev cluster's shared secret, valid 10 minutes."""
    secret = open(cluster["shared_secret_file"]).read().strip()
    now = int(time.time())
    claims = {"iss": cluster["issuer"], "sub": sub, "name": sub, "email": f"{sub}@example.com",
              "iat": now - 5, "exp": now + 600, "roles": list(roles), "groups": list(groups)}
    return jwt.encode(claims, secret, algorithm="HS256")


def _custos_bin() -> str:
    path = os.environ.get("CUSTOS_BIN", str(ROOT / "target" / "debug" / "custos"))
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: run `cargo build -p custos-cli` (scripts/test.sh does)")
    return path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _base_port(n: int) -> int:
    for _ in range(200):
        base = random.randint(20000, 50000)
        # SDK, peer, REST gateway and metrics ports (`custos dev` puts them at +0, +100, +200, +300).
        if all(_free(base + i) and _free(base + 100 + i) and _free(base + 200 + i) and _free(base + 300 + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range on 127.0.0.1")


@contextlib.contextmanager
def dev_cluster(nodes: int = 3, prefix: str = "custos-py-", flags: tuple = ()):
    """Runs `custos dev --nodes N [FLAGS...]` in a fresh temp dir and yields its parsed cluster.json (plus
    `dir`); stops it with SIGTERM (kill as a fallback) and removes the dir on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        log = open(Path(d) / "dev.log", "w")
        proc = subprocess.Popen(
            [_custos_bin(), "dev", "--nodes", str(nodes), "--dir", d, "--base-port", str(_base_port(nodes)), *flags],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            info_path = Path(d) / "cluster.json"
            deadline = time.monotonic() + 90
            while not info_path.exists():
                if proc.poll() is not None:
                    pytest.fail("custos dev exited: " + (Path(d) / "dev.log").read_text())
                if time.monotonic() > deadline:
                    pytest.fail("custos dev not ready in 90 s: " + (Path(d) / "dev.log").read_text())
                time.sleep(0.1)
            time.sleep(0.1)
            info = json.loads(info_path.read_text())
            info["dir"] = d
            yield info
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


@pytest.fixture(scope="session")
def start_dev_cluster():
    """The `dev_cluster` context manager, for modules that need a private cluster of their own."""
    return dev_cluster


@pytest.fixture(scope="session")
def cluster():
    """Yields the parsed cluster.json of a running 3-node cluster."""
    with dev_cluster(3) as info:
        yield info
