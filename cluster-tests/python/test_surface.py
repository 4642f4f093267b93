"""The rest of the served SDK surface through the official client, across members: nodes,
cordon/drain, filters, snapshot schedules and capacity, each answered by a different member."""

import uuid

import grpc
import pytest
from openstorage import api_pb2, api_pb2_grpc


def md(token):
    return [("authorization", "bearer " + token)]


def stubs(cluster, i):
    ch = grpc.insecure_channel(cluster["endpoints"][i])
    return (api_pb2_grpc.OpenStorageNodeStub(ch), api_pb2_grpc.OpenStorageVolumeStub(ch),
            api_pb2_grpc.OpenStorageMountAttachStub(ch))


def test_nodes_are_registered_and_up(cluster):
    tok = cluster["tokens"]["view"]
    node0, _, _ = stubs(cluster, 0)
    ids = list(node0.Enumerate(api_pb2.SdkNodeEnumerateRequest(), metadata=md(tok)).node_ids)
    assert sorted(ids) == ["1", "2", "3"]
    nodes = stubs(cluster, 1)[0].EnumerateWithFilters(api_pb2.SdkNodeEnumerateWithFiltersRequest(), metadata=md(tok)).nodes
    assert {n.id for n in nodes} == {"1", "2", "3"}
    assert all(n.status == api_pb2.STATUS_OK for n in nodes)
    assert all(n.node_labels["topology.kubernetes.io/zone"] for n in nodes)
    assert all(n.pools[0].TotalSize > 0 for n in nodes)
    one = stubs(cluster, 2)[0].Inspect(api_pb2.SdkNodeInspectRequest(node_id="1"), metadata=md(tok)).node
    assert one.id == "1" and one.mgmt_ip == "127.0.0.1"
    current = stubs(cluster, 2)[0].InspectCurrent(api_pb2.SdkNodeInspectCurrentRequest(), metadata=md(tok)).node
    assert current.id == "3"
    with pytest.raises(grpc.RpcError) as e:
        node0.Inspect(api_pb2.SdkNodeInspectRequest(node_id="99"), metadata=md(tok))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        node0.Inspect(api_pb2.SdkNodeInspectRequest(), metadata=md(tok))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "Node id must be provided"


def test_cordon_drain_uncordon(cluster):
    admin, user = cluster["tokens"]["admin"], cluster["tokens"]["user"]
    node2, vol2, ma2 = stubs(cluster, 1)
    vid = vol2.Create(api_pb2.SdkVolumeCreateRequest(name="d-" + uuid.uuid4().hex[:8],
                                                     spec=api_pb2.VolumeSpec(size=1 << 30, ha_level=2)),
                      metadata=md(user)).volume_id
    # Users may not cordon; admins may.
    with pytest.raises(grpc.RpcError) as e:
        node2.CordonAttachments(api_pb2.SdkNodeCordonAttachmentsRequest(node_id="2"), metadata=md(user))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Attach on node 2 (the member taking the call), then drain node 2 from node 1.
    ma2.Attach(api_pb2.SdkVolumeAttachRequest(volume_id=vid), metadata=md(user))
    assert stubs(cluster, 0)[1].Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(user)).volume.attached_on == "2"
    node1 = stubs(cluster, 0)[0]
    node1.CordonAttachments(api_pb2.SdkNodeCordonAttachmentsRequest(node_id="2"), metadata=md(admin))
    job = node1.DrainAttachments(api_pb2.SdkNodeDrainAttachmentsRequest(node_id="2"), metadata=md(admin)).job
    assert job.state == api_pb2.Job.DONE and job.type == api_pb2.Job.DRAIN_ATTACHMENTS
    v = stubs(cluster, 2)[1].Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(user)).volume
    assert v.attached_on == "" and v.state == api_pb2.VOLUME_STATE_DETACHED
    # A cordoned node takes no new attachments; after uncordon it does.
    with pytest.raises(grpc.RpcError) as e:
        ma2.Attach(api_pb2.SdkVolumeAttachRequest(volume_id=vid), metadata=md(user))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stubs(cluster, 2)[0].UncordonAttachments(api_pb2.SdkNodeUncordonAttachmentsRequest(node_id="2"), metadata=md(admin))
    ma2.Attach(api_pb2.SdkVolumeAttachRequest(volume_id=vid), metadata=md(user))
    ma2.Detach(api_pb2.SdkVolumeDetachRequest(volume_id=vid), metadata=md(user))


def test_filters_schedules_capacity_and_replicas(cluster):
    user = cluster["tokens"]["user"]
    _, vol1, _ = stubs(cluster, 0)
    _, vol3, _ = stubs(cluster, 2)
    name = "f-" + uuid.uuid4().hex[:8]
    vid = vol1.Create(api_pb2.SdkVolumeCreateRequest(name=name, spec=api_pb2.VolumeSpec(size=1 << 30, ha_level=2),
                                                     labels={"tier": "gold"}), metadata=md(user)).volume_id
    v = vol3.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(user)).volume
    assert len(v.replica_sets) == 1 and len(set(v.replica_sets[0].nodes)) == 2
    by_label = vol3.EnumerateWithFilters(api_pb2.SdkVolumeEnumerateWithFiltersRequest(labels={"tier": "gold"}),
                                         metadata=md(user)).volume_ids
    assert vid in by_label
    by_owner = vol3.InspectWithFilters(api_pb2.SdkVolumeInspectWithFiltersRequest(
        name=name, ownership=api_pb2.Ownership(owner="user")), metadata=md(user)).volumes
    assert [r.volume.id for r in by_owner] == [vid]
    # SnapshotScheduleUpdate names existing schedule policies only (ABORTED otherwise).
    sched = api_pb2_grpc.OpenStorageSchedulePolicyStub(grpc.insecure_channel(cluster["endpoints"][1]))
    try:
        sched.Create(api_pb2.SdkSchedulePolicyCreateRequest(schedule_policy=api_pb2.SdkSchedulePolicy(
            name="daily", schedules=[api_pb2.SdkSchedulePolicyInterval(
                retain=1, daily=api_pb2.SdkSchedulePolicyIntervalDaily(hour=1))])), metadata=md(user))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e.details()
    vol1.SnapshotScheduleUpdate(api_pb2.SdkVolumeSnapshotScheduleUpdateRequest(
        volume_id=vid, snapshot_schedule_names=["daily"]), metadata=md(user))
    assert "daily" in vol3.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(user)).volume.spec.snapshot_schedule
    snap = vol1.SnapshotCreate(api_pb2.SdkVolumeSnapshotCreateRequest(volume_id=vid, name=name + "-s", labels={"k": "v"}),
                               metadata=md(user)).snapshot_id
    found = vol3.SnapshotEnumerateWithFilters(api_pb2.SdkVolumeSnapshotEnumerateWithFiltersRequest(
        volume_id=vid, labels={"k": "v"}), metadata=md(user)).volume_snapshot_ids
    assert list(found) == [snap]
    usage = vol3.CapacityUsage(api_pb2.SdkVolumeCapacityUsageRequest(volume_id=vid), metadata=md(user))
    assert usage.capacity_usage_info.total_bytes == 0  # not reported by any storage node yet
    clone = vol3.Clone(api_pb2.SdkVolumeCloneRequest(name=name + "-c", parent_id=vid), metadata=md(user)).volume_id
    assert vol1.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=clone), metadata=md(user)).volume.source.parent == vid


def test_volume_usage_by_node(cluster):
    admin = cluster["tokens"]["admin"]
    node3 = stubs(cluster, 2)[0]
    got = node3.VolumeUsageByNode(api_pb2.SdkNodeVolumeUsageByNodeRequest(node_id="1"), metadata=md(admin))
    # No storage node has reported in this cluster: nothing is invented.
    assert list(got.volume_usage_info.volume_usage) == []
    with pytest.raises(grpc.RpcError) as e:
        node3.VolumeUsageByNode(api_pb2.SdkNodeVolumeUsageByNodeRequest(node_id="42"), metadata=md(admin))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        node3.VolumeUsageByNode(api_pb2.SdkNodeVolumeUsageByNodeRequest(node_id="1"), metadata=md(cluster["tokens"]["user"]))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_spec_fields_round_trip_and_the_passphrase_is_never_returned(cluster):
    user = cluster["tokens"]["user"]
    spec = api_pb2.VolumeSpec(
        size=3 << 30, ha_level=2, format=api_pb2.FS_TYPE_EXT4, block_size=4096, cos=api_pb2.HIGH,
        io_profile=api_pb2.IO_PROFILE_DB, sharedv4=True, encrypted=True, passphrase="hunter2",
        sticky=True, journal=True, snapshot_schedule="periodic=60", volume_labels={"app": "pg"},
        replica_set=api_pb2.ReplicaSet(nodes=["1"]),
    )
    name = "rt-" + uuid.uuid4().hex[:8]
    vid = stubs(cluster, 0)[1].Create(api_pb2.SdkVolumeCreateRequest(name=name, spec=spec), metadata=md(user)).volume_id
    got = stubs(cluster, 2)[1].Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=md(user)).volume
    s = got.spec
    assert (s.size, s.ha_level, s.format, s.block_size, s.cos, s.io_profile) == (
        3 << 30, 2, api_pb2.FS_TYPE_EXT4, 4096, api_pb2.HIGH, api_pb2.IO_PROFILE_DB)
    assert (s.sharedv4, s.encrypted, s.sticky, s.journal) == (True, True, True, True)
    assert s.snapshot_schedule == "periodic=60" and dict(s.volume_labels) == {"app": "pg"}
    assert list(s.replica_set.nodes) == ["1"], "the requested placement hint"
    assert "1" in got.replica_sets[0].nodes, "placement honoured the hint"
    assert s.passphrase == ""
