"""JWT authentication end to end, through the official OpenStorage Python client, on every member.

A private 3-node cluster (module scope: the node configs are rewritten here) is reloaded with
SIGHUP to trust four issuers: `custos-dev` (its HMAC secret), `rsa-issuer` (two RSA keys, kids r1
and r2), `ec-issuer` (P-256) and `ed-issuer` (Ed25519). Every case asserts the exact gRPC code and
message on all three members, for a read (Volume.Enumerate) and a write (Volume.Create). Expected
texts are those of crates/auth/tests/data/tokens.golden (upstream OpenStorage wording).

The tests run in file order: accepted tokens (PyJWT and `custos auth token generate`), refused
tokens, oversized tokens and `jku`/`x5u`, the cluster still serving, failed reloads keeping the old
keys, and last the removal of `ed-issuer` (which changes the configuration for good).
"""

import base64
import hashlib
import hmac
import json
import os
import select
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from openstorage import api_pb2, api_pb2_grpc

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
MSG_HEADER = "Invalid or missing authentication token"
MSG_NO_ISSUER = "Unable to obtain token issuer from authorization token"
MSG_DENIED = "Unable to authenticate token"
OK = "OK"

NODES = range(3)
RELOAD_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0


# ---------------------------------------------------------------- token building (no JWT library)

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def signature(alg: str, key, msg: bytes) -> bytes:
    if alg == "none":
        return b""
    if alg == "HS256":
        return hmac.new(key, msg, hashlib.sha256).digest()
    if alg == "RS256":
        return key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA":
        return key.sign(msg)
    raise ValueError(alg)


def make_token(payload, alg: str, key, header=None) -> str:
    """A compact JWS. `header` replaces the default {"alg": alg, "typ": "JWT"}; `alg` says how to sign."""
    h = seg(header if header is not None else {"alg": alg, "typ": "JWT"})
    p = payload if isinstance(payload, str) else seg(payload)
    signing_input = f"{h}.{p}"
    return signing_input + "." + b64(signature(alg, key, signing_input.encode()))


def claims(iss: str, /, **changes) -> dict:
    """A valid claim set for `iss`; a change to None removes the claim."""
    now = int(time.time())
    c = {
        "iss": iss, "sub": "e2e-" + iss, "name": "E2E " + iss, "email": f"e2e@{iss}.test",
        "iat": now - 5, "exp": now + 600, "roles": ["system.user"], "groups": ["e2e"],
    }
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


# ---------------------------------------------------------------- the private cluster

class Env:
    """The running cluster, its key material and one SDK stub per member."""

    def __init__(self, info):
        self.info = info
        self.dir = Path(info["dir"])
        self.nodes = info["nodes"]
        self.secret = Path(info["shared_secret_file"]).read_bytes().rstrip()
        self.channels = [grpc.insecure_channel(e) for e in info["endpoints"]]
        self.volumes = [api_pb2_grpc.OpenStorageVolumeStub(ch) for ch in self.channels]
        self.rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.keydir = self.dir / "e2e-keys"
        self.keydir.mkdir()
        self.pub = {}
        self.priv = {}
        for name, key in [("rsa1", self.rsa1), ("rsa2", self.rsa2), ("ec", self.ec), ("ed", self.ed)]:
            self.pub[name] = self.keydir / f"{name}.pub.pem"
            self.pub[name].write_bytes(public_pem(key))
            self.priv[name] = self.keydir / f"{name}.key.pem"
            self.priv[name].write_bytes(
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
            os.chmod(self.priv[name], 0o600)

    def issuers(self, with_ed=True):
        out = [
            ("custos-dev", [("hmac", self.info["shared_secret_file"], None)]),
            ("rsa-issuer", [("rsa", self.pub["rsa1"], "r1"), ("rsa", self.pub["rsa2"], "r2")]),
            ("ec-issuer", [("ecdsa", self.pub["ec"], None)]),
        ]
        if with_ed:
            out.append(("ed-issuer", [("ed25519", self.pub["ed"], None)]))
        return out

    def close(self):
        for ch in self.channels:
            ch.close()


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def auth_section(issuers) -> str:
    lines = ["[auth]", 'username_claim = "sub"', ""]
    for name, keys in issuers:
        lines += ["[[auth.issuers]]", f"name = {json.dumps(name)}", ""]
        for kind, file, kid in keys:
            lines += ["[[auth.issuers.keys]]", f'kind = "{kind}"', f"file = {json.dumps(str(file))}"]
            if kid:
                lines.append(f"kid = {json.dumps(kid)}")
            lines.append("")
    return "\n".join(lines)


def rewrite_auth(env: Env, section: str):
    """Replaces the [auth] section (the last one in the file) of every node's config, atomically."""
    for node in env.nodes:
        path = Path(node["config"])
        text = path.read_text()
        at = text.index("\n[auth]\n")
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(text[: at + 1] + section)
        os.replace(tmp, path)


def sighup_all(env: Env):
    for node in env.nodes:
        os.kill(node["pid"], signal.SIGHUP)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def custos_bin() -> str:
    return os.environ.get("CUSTOS_BIN", str(Path(__file__).resolve().parents[2] / "target" / "debug" / "custos"))


def bearer(token: str, scheme: str = "bearer") -> str:
    return f"{scheme} {token}"


def outcome(env: Env, i: int, authorization, write: bool, channel=None):
    """(OK, None) or (grpc code, details) of one call to member i."""
    stub = api_pb2_grpc.OpenStorageVolumeStub(channel) if channel is not None else env.volumes[i]
    md = [("authorization", authorization)] if authorization is not None else []
    try:
        if write:
            r = stub.Create(
                api_pb2.SdkVolumeCreateRequest(name="e2e-" + uuid.uuid4().hex[:10],
                                               spec=api_pb2.VolumeSpec(size=1 << 30, ha_level=1)),
                metadata=md, timeout=CALL_TIMEOUT)
            assert r.volume_id
        else:
            stub.Enumerate(api_pb2.SdkVolumeEnumerateRequest(), metadata=md, timeout=CALL_TIMEOUT)
        return (OK, None)
    except grpc.RpcError as e:
        return (e.code(), e.details())


def expect_everywhere(env: Env, authorization, code, message=None, what=""):
    """Every member answers a read and a write with exactly (code, message)."""
    want = (code, message)
    got = {(i, op): outcome(env, i, authorization, op == "Create")
           for i in NODES for op in ("Enumerate", "Create")}
    bad = {k: v for k, v in got.items() if v != want}
    assert not bad, f"{what}: expected {want} everywhere, got {bad}"


def wait_everywhere(env: Env, authorization, code, message=None, what=""):
    """Polls (bounded) until every member answers a read with (code, message): reload is async."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        got = {i: outcome(env, i, authorization, False) for i in NODES}
        if all(v == (code, message) for v in got.values()):
            return
        dead = [n["id"] for n in env.nodes if not alive(n["pid"])]
        assert not dead, f"nodes {dead} exited after SIGHUP (waiting for {what})"
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not {(code, message)} on every member within {RELOAD_TIMEOUT} s: {got}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def env(start_dev_cluster):
    with start_dev_cluster(3, prefix="custos-py-auth-") as info:
        e = Env(info)
        try:
            rs = make_token(claims("rsa-issuer"), "RS256", e.rsa1, {"alg": "RS256", "kid": "r1"})
            ed = make_token(claims("ed-issuer"), "EdDSA", e.ed, {"alg": "EdDSA"})
            es = make_token(claims("ec-issuer"), "ES256", e.ec, {"alg": "ES256"})
            # Before the reload only custos-dev is trusted.
            expect_everywhere(e, bearer(rs), UNAUTH, "rsa-issuer is not a trusted issuer", "before reload")
            rewrite_auth(e, auth_section(e.issuers()))
            sighup_all(e)
            for tok, what in [(rs, "RS256 r1"), (es, "ES256"), (ed, "EdDSA")]:
                wait_everywhere(e, bearer(tok), OK, None, f"{what} accepted after SIGHUP")
            yield e
        finally:
            e.close()


# ---------------------------------------------------------------- 1. accepted

def pyjwt(e: Env, iss: str, alg: str, key, kid=None) -> str:
    """A token made by PyJWT, an independent JWS implementation."""
    return jwt.encode(claims(iss), key, algorithm=alg, headers={"kid": kid} if kid else None)


# id -> (authorization value, expected owner of the volumes it creates).
ACCEPTED = {
    "HS256 custos-dev": lambda e: (bearer(pyjwt(e, "custos-dev", "HS256", e.secret.decode())), "e2e-custos-dev"),
    "RS256 kid r1": lambda e: (bearer(pyjwt(e, "rsa-issuer", "RS256", e.rsa1, "r1")), "e2e-rsa-issuer"),
    "RS256 kid r2 (rotation: both keys valid)":
        lambda e: (bearer(pyjwt(e, "rsa-issuer", "RS256", e.rsa2, "r2")), "e2e-rsa-issuer"),
    "RS256 no kid, key r1": lambda e: (bearer(pyjwt(e, "rsa-issuer", "RS256", e.rsa1)), "e2e-rsa-issuer"),
    "RS256 no kid, key r2 (every key tried)": lambda e: (bearer(pyjwt(e, "rsa-issuer", "RS256", e.rsa2)), "e2e-rsa-issuer"),
    "ES256": lambda e: (bearer(pyjwt(e, "ec-issuer", "ES256", e.ec)), "e2e-ec-issuer"),
    "EdDSA": lambda e: (bearer(pyjwt(e, "ed-issuer", "EdDSA", e.ed)), "e2e-ed-issuer"),
    "scheme Bearer capitalised": lambda e: (bearer(pyjwt(e, "ec-issuer", "ES256", e.ec), "Bearer"), "e2e-ec-issuer"),
    "scheme BEARER": lambda e: (bearer(pyjwt(e, "custos-dev", "HS256", e.secret.decode()), "BEARER"), "e2e-custos-dev"),
    "dev admin token from cluster.json": lambda e: (bearer(e.info["tokens"]["admin"]), "admin"),
}


def owner_check(env: Env, authorization, owner: str):
    """A volume created with the token is owned by its username, as seen from every member."""
    md = [("authorization", authorization)]
    vid = env.volumes[0].Create(
        api_pb2.SdkVolumeCreateRequest(name="own-" + uuid.uuid4().hex[:10],
                                       spec=api_pb2.VolumeSpec(size=1 << 30, ha_level=1)),
        metadata=md, timeout=CALL_TIMEOUT).volume_id
    for i in NODES:
        got = env.volumes[i].Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md, timeout=CALL_TIMEOUT)
        assert got.volume.spec.ownership.owner == owner, f"node {i + 1}"


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_on_every_member(env, case):
    authorization, owner = ACCEPTED[case](env)
    expect_everywhere(env, authorization, OK, None, case)
    owner_check(env, authorization, owner)


@pytest.mark.parametrize("issuer,flag,key", [
    ("rsa-issuer", "--rsa-private-keyfile", "rsa1"),
    ("rsa-issuer", "--rsa-private-keyfile", "rsa2"),
    ("ec-issuer", "--ecdsa-private-keyfile", "ec"),
    ("ed-issuer", "--ed25519-private-keyfile", "ed"),
    ("custos-dev", "--shared-secret-file", None),
])
def test_cli_generated_token_accepted(env, issuer, flag, key):
    """`custos auth token generate` with each private key type makes a token every member accepts."""
    ident = env.keydir / f"ident-{issuer}.yaml"
    ident.write_text('name: CLI User\nemail: cli@example.com\nsub: cli-user\n'
                     'roles: ["system.user"]\ngroups: ["cli"]\n')
    keyfile = env.priv[key] if key else env.info["shared_secret_file"]
    out = env.keydir / f"token-{issuer}-{key}.txt"
    r = subprocess.run(
        [custos_bin(), "auth", "token", "generate", "--auth-config", str(ident), "--issuer", issuer,
         flag, str(keyfile), "--token-duration", "1h", "--output", str(out)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    token = out.read_text().strip()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == {"rsa1": "RS256", "rsa2": "RS256", "ec": "ES256", "ed": "EdDSA", None: "HS256"}[key]
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["iss"] == issuer and payload["sub"] == "cli-user"
    assert payload["exp"] - payload["iat"] == 3600
    expect_everywhere(env, bearer(token), OK, None, f"CLI {flag} token")


# ---------------------------------------------------------------- 2. refused

def dev_parts(e: Env):
    """header, payload, signature of a valid custos-dev HS256 token."""
    return make_token(claims("custos-dev"), "HS256", e.secret).split(".")


def hs(e: Env, c, header=None) -> str:
    return bearer(make_token(c, "HS256", e.secret, header))


def dup_exp(e: Env) -> str:
    """An expired `exp` followed by a far one: a last-wins JSON parser would accept the token."""
    now = int(time.time())
    raw = ('{"iss":"custos-dev","sub":"a","name":"A","email":"a@x","iat":%d,"exp":%d,"exp":9999999999,'
           '"roles":["system.admin"],"groups":["*"]}' % (now - 3600, now - 1))
    return bearer(make_token(b64(raw.encode()), "HS256", e.secret))


def escalated(e: Env) -> str:
    """A system.view token whose payload was swapped for a system.admin one after signing."""
    h, _, s = make_token(claims("rsa-issuer", roles=["system.view"]), "RS256", e.rsa1).split(".")
    return bearer(f"{h}.{seg(claims('rsa-issuer', roles=['system.admin'], groups=['*']))}.{s}")


def padded(e: Env) -> str:
    """A correctly signed token whose payload carries (correct) base64 `=` padding."""
    for n in range(4):
        c = claims("custos-dev", pad="x" * n)
        p = seg(c)
        if len(p) % 4:
            p_padded = p + "=" * (-len(p) % 4)
            return bearer(make_token(p_padded, "HS256", e.secret, {"alg": "HS256", "typ": "JWT"}))
    raise AssertionError("unreachable")


def now() -> int:
    return int(time.time())


# id -> (authorization value, gRPC code, message), as in crates/auth/tests/data/tokens.golden.
REFUSED = {
    # JOSE header and algorithm.
    "alg none (unsigned)": lambda e: (
        bearer(make_token(claims("custos-dev"), "none", None, {"alg": "none", "typ": "JWT"})), DENIED, MSG_DENIED),
    "alg none against rsa-issuer": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "none", None, {"alg": "none"})), DENIED, MSG_DENIED),
    "HS256 keyed with the RSA public PEM (alg confusion)": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "HS256", public_pem(e.rsa1))), DENIED, MSG_DENIED),
    "HS256 keyed with the RSA public PEM, kid r1": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "HS256", public_pem(e.rsa1), {"alg": "HS256", "kid": "r1"})),
        DENIED, MSG_DENIED),
    "crit header": lambda e: (
        hs(e, claims("custos-dev"), {"alg": "HS256", "crit": ["exp"], "exp": now() + 60}), DENIED, MSG_DENIED),
    "kid not found": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "RS256", e.rsa1, {"alg": "RS256", "kid": "r9"})), DENIED, MSG_DENIED),
    "kid r2 on a token signed by r1": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "RS256", e.rsa1, {"alg": "RS256", "kid": "r2"})), DENIED, MSG_DENIED),
    "EdDSA token for rsa-issuer (no Ed25519 key)": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "EdDSA", e.ed)), DENIED, MSG_DENIED),
    "ES256 header on an Ed25519 signature": lambda e: (
        bearer(make_token(claims("ec-issuer"), "EdDSA", e.ed, {"alg": "ES256"})), DENIED, MSG_DENIED),
    # Wrong keys and tampering.
    "HS256 with another secret": lambda e: (
        bearer(make_token(claims("custos-dev"), "HS256", os.urandom(32).hex().encode())), DENIED, MSG_DENIED),
    "RS256 with an unconfigured RSA key": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "RS256", e.rsa_rogue)), DENIED, MSG_DENIED),
    "RS256 unconfigured key claiming kid r1": lambda e: (
        bearer(make_token(claims("rsa-issuer"), "RS256", e.rsa_rogue, {"alg": "RS256", "kid": "r1"})),
        DENIED, MSG_DENIED),
    "payload changed after signing (roles escalated)": lambda e: (escalated(e), DENIED, MSG_DENIED),
    # Issuer.
    "unknown issuer": lambda e: (hs(e, claims("evil.example")), UNAUTH, "evil.example is not a trusted issuer"),
    "issuer differs only in case": lambda e: (hs(e, claims("Custos-Dev")), UNAUTH, "Custos-Dev is not a trusted issuer"),
    # Time.
    "expired": lambda e: (
        bearer(make_token(claims("ed-issuer", iat=now() - 3600, exp=now() - 10), "EdDSA", e.ed)), DENIED, MSG_DENIED),
    "nbf in the future": lambda e: (
        bearer(make_token(claims("ec-issuer", nbf=now() + 3600), "ES256", e.ec)), DENIED, MSG_DENIED),
    "iat in the future": lambda e: (
        bearer(make_token(claims("rsa-issuer", iat=now() + 3600, exp=now() + 7200), "RS256", e.rsa1)),
        DENIED, MSG_DENIED),
    "exp 0 (no positive exp)": lambda e: (hs(e, claims("custos-dev", exp=0)), DENIED, MSG_DENIED),
    # The six required claims.
    "missing iss": lambda e: (hs(e, claims("custos-dev", iss=None)), UNAUTH, MSG_NO_ISSUER),
    "missing sub": lambda e: (hs(e, claims("custos-dev", sub=None)), DENIED, MSG_DENIED),
    "missing exp": lambda e: (hs(e, claims("custos-dev", exp=None)), DENIED, MSG_DENIED),
    "missing iat": lambda e: (
        bearer(make_token(claims("ed-issuer", iat=None), "EdDSA", e.ed)), DENIED, MSG_DENIED),
    "missing name": lambda e: (bearer(make_token(claims("ec-issuer", name=None), "ES256", e.ec)), DENIED, MSG_DENIED),
    "missing email": lambda e: (
        bearer(make_token(claims("rsa-issuer", email=None), "RS256", e.rsa2)), DENIED, MSG_DENIED),
    # Claim types and values.
    "roles as a string": lambda e: (hs(e, claims("custos-dev", roles="system.admin")), UNAUTH, MSG_NO_ISSUER),
    "empty sub (username)": lambda e: (hs(e, claims("custos-dev", sub="")), DENIED, MSG_DENIED),
    "duplicate exp claim": lambda e: (dup_exp(e), UNAUTH, MSG_NO_ISSUER),
    # Structure.
    "payload not base64url": lambda e: (
        bearer("{0}.!!!not-base64!!!.{2}".format(*dev_parts(e))), UNAUTH, MSG_NO_ISSUER),
    "payload with base64 padding": lambda e: (padded(e), UNAUTH, MSG_NO_ISSUER),
    "header not base64url": lambda e: (bearer("%%%.{1}.{2}".format(*dev_parts(e))), DENIED, MSG_DENIED),
    "payload not JSON": lambda e: (
        bearer(make_token(b64(b'{"iss":"custos-dev",'), "HS256", e.secret)), UNAUTH, MSG_NO_ISSUER),
    "header not JSON": lambda e: (
        bearer(b64(b'{"alg":"HS256"') + ".{1}.{2}".format(*dev_parts(e))), DENIED, MSG_DENIED),
    "two segments": lambda e: (bearer("{0}.{1}".format(*dev_parts(e))), UNAUTH, MSG_NO_ISSUER),
    "four segments": lambda e: (bearer("{0}.{1}.{2}.{2}".format(*dev_parts(e))), UNAUTH, MSG_NO_ISSUER),
    "empty token after the scheme": lambda e: ("Bearer ", UNAUTH, MSG_NO_ISSUER),
    # Scheme.
    "scheme Basic": lambda e: (bearer(".".join(dev_parts(e)), "Basic"), UNAUTH, MSG_HEADER),
    "no scheme": lambda e: (".".join(dev_parts(e)), UNAUTH, MSG_HEADER),
    "scheme glued to the token": lambda e: ("Bearer" + ".".join(dev_parts(e)), UNAUTH, MSG_HEADER),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_on_every_member(env, case):
    authorization, code, message = REFUSED[case](env)
    expect_everywhere(env, authorization, code, message, case)


def clean_size_refusal(code, details) -> bool:
    """How an oversized `authorization` value may be refused without anything breaking: the
    verifier's own answer; the client's metadata limit; HTTP 431 from the server's HTTP/2
    header-list limit (16 KiB, per stream); or the HTTP/2 layer's deliberate GOAWAY
    ENHANCE_YOUR_CALM (code 11) against header floods, which closes that one connection (the
    client may then see the GOAWAY, or a broken pipe / reset if it was still sending). The
    callers check afterwards that the process is alive and serving."""
    closed = ("GOAWAY received; Error code: 11", "Broken pipe", "Connection reset")
    return (
        (code, details) == (UNAUTH, MSG_NO_ISSUER)
        or code == grpc.StatusCode.RESOURCE_EXHAUSTED
        or (code == grpc.StatusCode.UNKNOWN and "status: 431" in details)
        or (code == grpc.StatusCode.UNAVAILABLE and any(c in details for c in closed))
    )


@pytest.mark.parametrize("size", [20 << 10, 1 << 20], ids=["20KiB", "1MiB"])
def test_oversized_token_gets_a_clean_error(env, size):
    """A token over the verifier's 16 KiB cap (20 KiB) and a ~1 MiB one are refused cleanly;
    every member keeps serving and no process dies."""
    h, p, s = make_token(claims("custos-dev"), "HS256", env.secret).split(".")
    huge = bearer(f"{h}.{p}{'A' * size}.{s}")
    admin = bearer(env.info["tokens"]["admin"])
    for i in NODES:
        ch = grpc.insecure_channel(env.info["endpoints"][i])  # its own connection: it may be closed
        try:
            for write in (False, True):
                code, details = outcome(env, i, huge, write, channel=ch)
                assert code != OK, f"node {i + 1} accepted a {size}-byte token"
                assert clean_size_refusal(code, details), f"node {i + 1}: {size}-byte token gave {code} {details!r}"
                if size < 64 << 10:
                    # Under the server's 64 KiB header-list limit the verifier itself answers.
                    assert (code, details) == (UNAUTH, MSG_NO_ISSUER), f"node {i + 1}: {code} {details!r}"
            # A new call on the same channel (reconnecting if the server closed the connection).
            assert outcome(env, i, admin, False, channel=ch) == (OK, None)
        finally:
            ch.close()
    for i, n in zip(NODES, env.nodes):
        assert alive(n["pid"]), f"node {n['id']} died"
        assert outcome(env, i, admin, True) == (OK, None), f"node {n['id']} stopped serving"


def test_jku_and_x5u_are_never_fetched(env):
    """`jku`/`x5u` pointing at a local listener: the token is judged by the configured key only,
    an embedded attacker `jwk` is not trusted, and nothing connects to the listener."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        url = f"http://127.0.0.1:{port}"
        pointers = {"jku": f"{url}/jwks.json", "x5u": f"{url}/key.pem"}
        honest = make_token(claims("rsa-issuer"), "RS256", env.rsa1, {"alg": "RS256", "kid": "r1", **pointers})
        honest_nokid = make_token(claims("rsa-issuer"), "RS256", env.rsa2, {"alg": "RS256", **pointers})
        rogue_pub = env.rsa_rogue.public_key().public_numbers()
        jwk = {"kty": "RSA", "e": b64(rogue_pub.e.to_bytes(3, "big")),
               "n": b64(rogue_pub.n.to_bytes((rogue_pub.n.bit_length() + 7) // 8, "big"))}
        attacker = make_token(claims("rsa-issuer", roles=["system.admin"], groups=["*"]), "RS256", env.rsa_rogue,
                              {"alg": "RS256", "jwk": jwk, **pointers})
        attacker_kid = make_token(claims("rsa-issuer"), "RS256", env.rsa_rogue,
                                  {"alg": "RS256", "kid": "r1", "jwk": jwk, **pointers})
        expect_everywhere(env, bearer(honest), OK, None, "jku/x5u + valid r1 signature")
        expect_everywhere(env, bearer(honest_nokid), OK, None, "jku/x5u + valid signature, no kid")
        expect_everywhere(env, bearer(attacker), DENIED, MSG_DENIED, "embedded attacker jwk")
        expect_everywhere(env, bearer(attacker_kid), DENIED, MSG_DENIED, "embedded attacker jwk with kid r1")
        time.sleep(0.3)  # a fetch would have been made while handling the requests
        readable, _, _ = select.select([listener], [], [], 0.2)
        assert not readable, "a node connected to the jku/x5u listener"
    finally:
        listener.close()


# ---------------------------------------------------------------- 3. still serving

def test_cluster_still_serves_admin_requests(env):
    admin = bearer(env.info["tokens"]["admin"])
    for i, n in zip(NODES, env.nodes):
        assert alive(n["pid"]), f"node {n['id']} is gone"
        assert outcome(env, i, admin, False) == (OK, None), f"node {n['id']} read"
        assert outcome(env, i, admin, True) == (OK, None), f"node {n['id']} write"


def log_count(node, text: str) -> int:
    return Path(node["log"]).read_text(errors="replace").count(text)


@pytest.mark.parametrize("breakage", ["missing key file", "TOML syntax error"])
def test_failed_reload_keeps_the_old_keys(env, breakage):
    """A SIGHUP with a configuration that cannot be loaded leaves every issuer as it was."""
    good = auth_section(env.issuers())
    if breakage == "missing key file":
        bad = good.replace(str(env.pub["ed"]), str(env.keydir / "no-such-key.pem"))
    else:
        bad = good + "\n[[auth.issuers\n"
    assert bad != good
    before = [log_count(n, "keeping the old keys") for n in env.nodes]
    try:
        rewrite_auth(env, bad)
        sighup_all(env)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while any(log_count(n, "keeping the old keys") <= b for n, b in zip(env.nodes, before)):
            assert time.monotonic() < deadline, "not every node logged the failed reload"
            time.sleep(0.1)
        assert all(alive(n["pid"]) for n in env.nodes)
        expect_everywhere(env, bearer(make_token(claims("ed-issuer"), "EdDSA", env.ed)), OK, None,
                          f"EdDSA after a failed reload ({breakage})")
        expect_everywhere(env, bearer(make_token(claims("rsa-issuer"), "RS256", env.rsa2, {"alg": "RS256", "kid": "r2"})),
                          OK, None, f"RS256 r2 after a failed reload ({breakage})")
    finally:
        rewrite_auth(env, good)


# ---------------------------------------------------------------- 4. removing an issuer

def test_removed_issuer_is_refused_after_sighup(env):
    ed = bearer(make_token(claims("ed-issuer"), "EdDSA", env.ed, {"alg": "EdDSA"}))
    rs = bearer(make_token(claims("rsa-issuer"), "RS256", env.rsa2, {"alg": "RS256", "kid": "r2"}))
    expect_everywhere(env, ed, OK, None, "EdDSA before removal")
    rewrite_auth(env, auth_section(env.issuers(with_ed=False)))
    sighup_all(env)
    wait_everywhere(env, ed, UNAUTH, "ed-issuer is not a trusted issuer", "ed-issuer removed")
    # The same still-valid token, on reads and writes; the other issuers are untouched.
    expect_everywhere(env, ed, UNAUTH, "ed-issuer is not a trusted issuer", "EdDSA after removal")
    expect_everywhere(env, rs, OK, None, "RS256 r2 after removal")
    expect_everywhere(env, bearer(env.info["tokens"]["admin"]), OK, None, "dev admin after removal")


def test_repeated_authorization_headers_are_refused(env):
    """Two `authorization` values are ambiguous: refused, whatever their order (never the first wins)."""
    good = bearer(env.info["tokens"]["admin"])
    for i in NODES:
        stub = api_pb2_grpc.OpenStorageVolumeStub(grpc.insecure_channel(env.info["endpoints"][i]))
        for pair in ((good, "Bearer garbage"), ("Bearer garbage", good), ("", good)):
            with pytest.raises(grpc.RpcError) as e:
                stub.Enumerate(api_pb2.SdkVolumeEnumerateRequest(),
                               metadata=[("authorization", pair[0]), ("authorization", pair[1])])
            assert e.value.code() == UNAUTH, pair
            assert e.value.details() == "Invalid or missing authentication token"
