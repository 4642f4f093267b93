"""The official OpenStorage Python client (0.101.39) against a real 3-node custos cluster."""

import time
import uuid

import grpc
import jwt
import pytest
from openstorage import api_pb2, api_pb2_grpc, connector


def md(token):
    return [("authorization", "bearer " + token)] if token else []


def channel(cluster, i):
    return grpc.insecure_channel(cluster["endpoints"][i])


def volumes(cluster, i):
    return api_pb2_grpc.OpenStorageVolumeStub(channel(cluster, i))


def spec(size=1 << 30, ha=1, **kw):
    return api_pb2.VolumeSpec(size=size, ha_level=ha, **kw)


def test_version_from_every_member(cluster):
    for i in range(3):
        stub = api_pb2_grpc.OpenStorageIdentityStub(channel(cluster, i))
        r = stub.Version(api_pb2.SdkIdentityVersionRequest(), metadata=md(cluster["tokens"]["user"]))
        assert (r.sdk_version.major, r.sdk_version.minor, r.sdk_version.patch) == (0, 101, 39)
        assert r.sdk_version.version == "0.101.39"
        assert r.version.driver == "custos"


def test_cluster_inspect_current(cluster):
    stub = api_pb2_grpc.OpenStorageClusterStub(channel(cluster, 1))
    r = stub.InspectCurrent(api_pb2.SdkClusterInspectCurrentRequest())
    assert r.cluster.id == cluster["cluster_id"]
    assert r.cluster.status == api_pb2.STATUS_OK


def test_user_create_inspect_enumerate_delete_across_members(cluster):
    tok = cluster["tokens"]["user"]
    name = "py-" + uuid.uuid4().hex[:8]
    created = volumes(cluster, 0).Create(
        api_pb2.SdkVolumeCreateRequest(
            name=name,
            spec=spec(ha=2, volume_labels={"app": "db"}),
            labels={"team": "storage"},
        ),
        metadata=md(tok),
    )
    vid = created.volume_id
    assert vid
    # Read through another member at once (linearizable reads).
    got = volumes(cluster, 2).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(tok))
    assert got.volume.id == vid
    assert got.name == name
    assert got.volume.locator.name == name
    assert got.volume.spec.size == 1 << 30
    assert got.volume.spec.ha_level == 2
    assert dict(got.volume.spec.volume_labels) == {"app": "db"}
    assert dict(got.labels) == {"team": "storage"}
    assert got.volume.spec.ownership.owner == "user"
    listed = volumes(cluster, 1).Enumerate(api_pb2.SdkVolumeEnumerateRequest(), metadata=md(tok))
    assert vid in listed.volume_ids
    volumes(cluster, 1).Delete(api_pb2.SdkVolumeDeleteRequest(volume_id=vid), metadata=md(tok))
    with pytest.raises(grpc.RpcError) as e:
        volumes(cluster, 0).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(tok))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # Delete is idempotent.
    volumes(cluster, 2).Delete(api_pb2.SdkVolumeDeleteRequest(volume_id=vid), metadata=md(tok))


def test_connector_with_token(cluster):
    """The client's own Connector (insecure channel, token interceptor on unary calls)."""
    ch = connector.Connector(endpoint=cluster["endpoints"][1], token=cluster["tokens"]["user"]).connect()
    stub = api_pb2_grpc.OpenStorageVolumeStub(ch)
    vid = stub.Create(api_pb2.SdkVolumeCreateRequest(name="conn-" + uuid.uuid4().hex[:8], spec=spec())).volume_id
    assert stub.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid)).volume.spec.ownership.owner == "user"


def test_view_token_cannot_create(cluster):
    with pytest.raises(grpc.RpcError) as e:
        volumes(cluster, 2).Create(
            api_pb2.SdkVolumeCreateRequest(name="nope", spec=spec()), metadata=md(cluster["tokens"]["view"])
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "Access denied to roles: [system.view]" in e.value.details()


def test_no_token_acts_as_guest(cluster):
    stub = volumes(cluster, 0)
    vid = stub.Create(api_pb2.SdkVolumeCreateRequest(name="guest-" + uuid.uuid4().hex[:8], spec=spec())).volume_id
    v = stub.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid)).volume
    assert not v.spec.HasField("ownership"), "guest volumes have no ownership"
    # Any user can read a guest's (public) volume.
    volumes(cluster, 1).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(cluster["tokens"]["view"]))
    # The guest role does not include Identity.Capabilities.
    with pytest.raises(grpc.RpcError) as e:
        api_pb2_grpc.OpenStorageIdentityStub(channel(cluster, 0)).Capabilities(api_pb2.SdkIdentityCapabilitiesRequest())
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "Access denied without authentication token"


def test_token_made_with_pyjwt_is_accepted(cluster):
    """A token signed independently (pyjwt, HS256) with the cluster's shared secret."""
    secret = open(cluster["shared_secret_file"]).read().strip()
    now = int(time.time())
    claims = {"iss": cluster["issuer"], "sub": "alice", "name": "Alice", "email": "alice@example.com",
              "iat": now - 5, "exp": now + 600, "roles": ["system.user"], "groups": ["dev"]}
    tok = jwt.encode(claims, secret, algorithm="HS256")
    vid = volumes(cluster, 2).Create(
        api_pb2.SdkVolumeCreateRequest(name="alice-" + uuid.uuid4().hex[:8], spec=spec()), metadata=md(tok)
    ).volume_id
    got = volumes(cluster, 0).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(tok))
    assert got.volume.spec.ownership.owner == "alice"
    # Another user cannot read alice's volume.
    with pytest.raises(grpc.RpcError) as e:
        volumes(cluster, 1).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(cluster["tokens"]["user"]))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Expired and wrongly signed tokens are refused with the upstream message.
    expired = jwt.encode(dict(claims, iat=now - 100, exp=now - 10), secret, algorithm="HS256")
    wrong = jwt.encode(claims, "not-the-cluster-secret-but-long-enough-for-hs256", algorithm="HS256")
    for bad in (expired, wrong):
        with pytest.raises(grpc.RpcError) as e:
            volumes(cluster, 0).Enumerate(api_pb2.SdkVolumeEnumerateRequest(), metadata=md(bad))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.value.details() == "Unable to authenticate token"
    untrusted = jwt.encode(dict(claims, iss="someone-else"), secret, algorithm="HS256")
    with pytest.raises(grpc.RpcError) as e:
        volumes(cluster, 0).Enumerate(api_pb2.SdkVolumeEnumerateRequest(), metadata=md(untrusted))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.details() == "someone-else is not a trusted issuer"


def test_unserved_methods_say_so(cluster):
    with pytest.raises(grpc.RpcError) as e:
        volumes(cluster, 0).VolumeCatalog(api_pb2.SdkVolumeCatalogRequest(volume_id="x"), metadata=md(cluster["tokens"]["admin"]))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "OpenStorageVolume.VolumeCatalog" in e.value.details()


def test_capabilities_list_the_served_services(cluster):
    stub = api_pb2_grpc.OpenStorageIdentityStub(channel(cluster, 2))
    r = stub.Capabilities(api_pb2.SdkIdentityCapabilitiesRequest(), metadata=md(cluster["tokens"]["view"]))
    kinds = {c.service.type for c in r.capabilities}
    T = api_pb2.SdkServiceCapability.OpenStorageService
    assert kinds == {T.CLUSTER, T.NODE, T.VOLUME, T.MOUNT_ATTACH, T.ROLE, T.SCHEDULE_POLICY, T.STORAGE_POLICY,
                     T.CREDENTIALS, T.ALERTS}


# ---- found by upstream's SDK sanity suite (libopenstorage/sdk-test) ----


def test_volume_source_is_always_sent(cluster):
    """Upstream always sends `Volume.source` (empty for a volume with no parent); its Go test
    helpers dereference it."""
    tok = cluster["tokens"]["user"]
    vid = volumes(cluster, 0).Create(
        api_pb2.SdkVolumeCreateRequest(name="src-" + uuid.uuid4().hex[:8], spec=spec()), metadata=md(tok)).volume_id
    v = volumes(cluster, 1).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(tok)).volume
    assert v.HasField("source")
    assert v.source.parent == ""
    snap = volumes(cluster, 2).SnapshotCreate(
        api_pb2.SdkVolumeSnapshotCreateRequest(volume_id=vid, name="s"), metadata=md(tok)).snapshot_id
    s = volumes(cluster, 0).Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=snap), metadata=md(tok)).volume
    assert s.source.parent == vid


def test_stats_and_capacity_usage_refuse_an_empty_id_as_upstream(cluster):
    tok = cluster["tokens"]["user"]
    for call, req in [(volumes(cluster, 0).Stats, api_pb2.SdkVolumeStatsRequest(volume_id="")),
                      (volumes(cluster, 1).CapacityUsage, api_pb2.SdkVolumeCapacityUsageRequest(volume_id=""))]:
        with pytest.raises(grpc.RpcError) as e:
            call(req, metadata=md(tok))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "Must supply volume id"


def test_snapshot_create_makes_a_snapshot_per_call_names_repeating(cluster):
    """Upstream's Enumerate spec takes three snapshots under one name and expects three."""
    tok = cluster["tokens"]["admin"]
    vid = volumes(cluster, 0).Create(
        api_pb2.SdkVolumeCreateRequest(name="snaps-" + uuid.uuid4().hex[:8], spec=spec()), metadata=md(tok)).volume_id
    name = "snap-of-" + vid
    ids = [volumes(cluster, i).SnapshotCreate(
        api_pb2.SdkVolumeSnapshotCreateRequest(volume_id=vid, name=name, labels={"Name": f"snapshot-{i}"}),
        metadata=md(tok)).snapshot_id for i in range(3)]
    assert len(set(ids)) == 3
    listed = volumes(cluster, 1).SnapshotEnumerate(
        api_pb2.SdkVolumeSnapshotEnumerateRequest(volume_id=vid), metadata=md(tok)).volume_snapshot_ids
    assert sorted(listed) == sorted(ids)
    # A retry with the same request id still applies once.
    rid = [("x-request-id", "snap-retry-" + uuid.uuid4().hex)]
    a = volumes(cluster, 0).SnapshotCreate(
        api_pb2.SdkVolumeSnapshotCreateRequest(volume_id=vid, name=name), metadata=md(tok) + rid).snapshot_id
    b = volumes(cluster, 2).SnapshotCreate(
        api_pb2.SdkVolumeSnapshotCreateRequest(volume_id=vid, name=name), metadata=md(tok) + rid).snapshot_id
    assert a == b
    listed = volumes(cluster, 1).SnapshotEnumerate(
        api_pb2.SdkVolumeSnapshotEnumerateRequest(volume_id=vid), metadata=md(tok)).volume_snapshot_ids
    assert len(listed) == 4
