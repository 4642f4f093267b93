"""Credentials and alerts with the official client: the ownership matrix of credentials, secrets
that never show up anywhere (data dirs, logs, a backup, any answer), and an alert for a stopped member."""

import base64
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import pytest
from openstorage import api_pb2, api_pb2_grpc

from conftest import _custos_bin
from test_ownership import Access, acl, denied, token


class Creds:
    """Credentials calls as one caller through member `i`."""

    def __init__(self, cluster, tok, i=0):
        ch = grpc.insecure_channel(cluster["endpoints"][i])
        self.stub = api_pb2_grpc.OpenStorageCredentialsStub(ch)
        self.md = [("authorization", "bearer " + tok)] if tok else []

    def create_s3(self, secret="s3cr3t", ownership=None, name=None, encryption_key=""):
        req = api_pb2.SdkCredentialCreateRequest(
            name=name or "c-" + uuid.uuid4().hex[:10], bucket="bkt", encryption_key=encryption_key,
            aws_credential=api_pb2.SdkAwsCredentialRequest(
                access_key="AKIAEXAMPLE", secret_key=secret, endpoint="s3.example.com", region="us-east-1"))
        if ownership is not None:
            req.ownership.CopyFrom(ownership)
        return self.stub.Create(req, metadata=self.md).credential_id

    def inspect(self, cid):
        return self.stub.Inspect(api_pb2.SdkCredentialInspectRequest(credential_id=cid), metadata=self.md)

    def enumerate(self):
        return list(self.stub.Enumerate(api_pb2.SdkCredentialEnumerateRequest(), metadata=self.md).credential_ids)

    def update_region(self, cid, region):
        return self.stub.Update(api_pb2.SdkCredentialUpdateRequest(
            credential_id=cid, update_req=api_pb2.SdkCredentialCreateRequest(
                aws_credential=api_pb2.SdkAwsCredentialRequest(region=region))), metadata=self.md)

    def delete(self, cid):
        return self.stub.Delete(api_pb2.SdkCredentialDeleteRequest(credential_id=cid), metadata=self.md)

    def validate(self, cid):
        return self.stub.Validate(api_pb2.SdkCredentialValidateRequest(credential_id=cid), metadata=self.md)


def test_ownership_matrix(cluster):
    alice = Creds(cluster, token(cluster, "alice"), 0)
    cid = alice.create_s3(ownership=api_pb2.Ownership(owner="spoofed", acls=acl(
        groups={"ops": Access.Read}, collaborators={"carol": Access.Admin}, public=None)))
    pub = alice.create_s3(ownership=api_pb2.Ownership(acls=acl(public=Access.Read)))
    owner = Creds(cluster, token(cluster, "alice"), 2)
    group = Creds(cluster, token(cluster, "gus", groups=("ops",)), 1)
    collab = Creds(cluster, token(cluster, "carol"), 2)
    other = Creds(cluster, token(cluster, "zed"), 1)
    admin = Creds(cluster, token(cluster, "root", roles=("system.admin",), groups=("*",)), 0)
    guest = Creds(cluster, None, 1)

    # Owner: the caller, never the request's; everything allowed.
    assert owner.inspect(cid).ownership.owner == "alice"
    assert cid in owner.enumerate()
    # Group member (Read): reads, cannot update or delete.
    assert group.inspect(cid).name
    assert cid in group.enumerate()
    denied(lambda: group.update_region(cid, "eu"), text=f"Only admin access type to credential is allowed to update {cid}")
    denied(lambda: group.delete(cid), text=f"Only admin access type to credential is allowed to delete {cid}")
    # Collaborator with Admin: updates.
    collab.update_region(cid, "eu-west-1")
    assert owner.inspect(cid).aws_credential.region == "eu-west-1"
    # Another user: neither sees nor touches it; sees the public one only.
    denied(lambda: other.inspect(cid), text=f"Access denied to {cid}")
    listed = other.enumerate()
    assert cid not in listed and pub in listed
    assert other.inspect(pub).name
    denied(lambda: other.delete(pub), text="Only admin access type")
    denied(lambda: other.update_region(cid, "x"), text=f"Access denied to {cid}")
    # Guest: the default roles give guests no credentials access at all.
    denied(lambda: guest.enumerate(), text="Access denied without authentication token")
    denied(lambda: guest.create_s3(), text="Access denied without authentication token")
    # Ownership administrator: sees and deletes anything.
    assert {cid, pub} <= set(admin.enumerate())
    admin.validate(cid)
    admin.delete(pub)
    owner.delete(cid)
    denied(lambda: owner.inspect(cid), code=grpc.StatusCode.NOT_FOUND, text=f"Credential id {cid} not found")


def test_upstream_argument_errors(cluster):
    alice = Creds(cluster, token(cluster, "alice"), 1)
    denied(lambda: alice.stub.Create(api_pb2.SdkCredentialCreateRequest(), metadata=alice.md),
           code=grpc.StatusCode.INVALID_ARGUMENT, text="Must supply a name")
    denied(lambda: alice.stub.Create(api_pb2.SdkCredentialCreateRequest(name="x"), metadata=alice.md),
           code=grpc.StatusCode.INVALID_ARGUMENT, text="Unknown credential type")
    denied(lambda: alice.create_s3(secret=""), code=grpc.StatusCode.INVALID_ARGUMENT, text="Must supply Secret Key")
    denied(lambda: alice.delete(""), code=grpc.StatusCode.INVALID_ARGUMENT, text="Must provide credentials uuid")
    denied(lambda: alice.inspect("nope"), code=grpc.StatusCode.NOT_FOUND, text="Credential id nope not found")


def _files(root):
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.is_file():
                yield p


def test_secret_never_visible(cluster, tmp_path):
    planted = "PLANTED-" + uuid.uuid4().hex
    passphrase = "PASS-" + uuid.uuid4().hex
    alice = Creds(cluster, token(cluster, "alice"), 1)
    cid = alice.create_s3(secret=planted, encryption_key=passphrase)
    az = alice.stub.Create(api_pb2.SdkCredentialCreateRequest(
        name="az-" + uuid.uuid4().hex[:8],
        azure_credential=api_pb2.SdkAzureCredentialRequest(account_name="acct", account_key=planted + "-az")),
        metadata=alice.md).credential_id
    # Answers never carry it, on any member.
    for i in range(3):
        c = Creds(cluster, token(cluster, "alice"), i)
        for r in (c.inspect(cid), c.inspect(az)):
            wire = r.SerializeToString()
            assert planted.encode() not in wire and passphrase.encode() not in wire
        c.validate(cid)  # the sealed secrets open with every member's key
    # Snapshots too: force them by writing past snapshot_every? A backup holds what a snapshot does.
    backup = tmp_path / "backup.bin"
    admin_tok = cluster["tokens"]["admin"]
    subprocess.run([_custos_bin(), "--endpoint", cluster["endpoints"][0], "--token", admin_tok,
                    "cluster", "backup", "--output", str(backup)], check=True, timeout=60,
                   stdout=subprocess.DEVNULL)
    assert backup.stat().st_size > 0
    time.sleep(2)  # the local log lines are flushed within [audit] log_flush_ms
    needles = []
    for s in (planted, passphrase):
        b = s.encode()
        needles += [b, base64.b64encode(b), base64.b64encode(b).rstrip(b"="), b.hex().encode()]
    roots = [Path(cluster["dir"]), backup]
    scanned = 0
    for root in roots:
        for p in ([root] if root.is_file() else _files(root)):
            data = p.read_bytes()
            scanned += 1
            for n in needles:
                assert n not in data, f"{p} holds the secret ({n[:12]!r}...)"
    assert scanned > 10


def test_alert_for_a_stopped_member(start_dev_cluster):
    with start_dev_cluster(3, prefix="custos-py-alerts-") as c:
        admin_md = [("authorization", "bearer " + c["tokens"]["admin"])]
        stub = api_pb2_grpc.OpenStorageAlertsStub(grpc.insecure_channel(c["endpoints"][0]))
        query = api_pb2.SdkAlertsEnumerateWithFiltersRequest(queries=[api_pb2.SdkAlertsQuery(
            resource_id_query=api_pb2.SdkAlertsResourceIdQuery(
                resource_type=api_pb2.RESOURCE_TYPE_NODE, alert_type=1, resource_id="3"))])

        def alerts():
            return [a for resp in stub.EnumerateWithFilters(query, metadata=admin_md, timeout=10) for a in resp.alerts]

        # Without a query: upstream's InvalidArgument. Without a token: the guest role has no alerts.
        denied(lambda: list(stub.EnumerateWithFilters(api_pb2.SdkAlertsEnumerateWithFiltersRequest(),
                                                      metadata=admin_md)),
               code=grpc.StatusCode.INVALID_ARGUMENT, text="Must provide at least one query")
        denied(lambda: list(stub.EnumerateWithFilters(query)), text="Access denied without authentication token")
        assert alerts() == []
        pid = int((Path(c["dir"]) / "node-3" / "pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 60
            while not (found := alerts()) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert found, "no alert for the stopped member within 60 s"
            a = found[0]
            assert a.severity == api_pb2.SEVERITY_TYPE_ALARM and a.resource == api_pb2.RESOURCE_TYPE_NODE
            assert not a.cleared and "Member 3 is down" in a.message
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while not (alerts()[0].cleared) and time.monotonic() < deadline:
            time.sleep(0.5)
        a = alerts()[0]
        assert a.cleared and "Member 3 is back" in a.message
        # Delete: administrators only (system.view may list, not delete).
        view = token(c, "viewer", roles=("system.view",))
        view_md = [("authorization", "bearer " + view)]
        assert len([x for r in stub.EnumerateWithFilters(query, metadata=view_md) for x in r.alerts]) == 1
        denied(lambda: stub.Delete(api_pb2.SdkAlertsDeleteRequest(queries=query.queries), metadata=view_md))
        stub.Delete(api_pb2.SdkAlertsDeleteRequest(queries=query.queries), metadata=admin_md)
        assert alerts() == []
