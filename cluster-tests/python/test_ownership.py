"""Ownership end to end with the official client: ACL edits, owner changes, clones, snapshots,
public access and attachments, each through different members of a 3-node cluster."""

import uuid

import grpc
import pytest
from openstorage import api_pb2, api_pb2_grpc

from conftest import token

Access = api_pb2.Ownership


class As:
    """Calls as one caller through member `i`."""

    def __init__(self, cluster, tok, i=0):
        ch = grpc.insecure_channel(cluster["endpoints"][i])
        self.vol = api_pb2_grpc.OpenStorageVolumeStub(ch)
        self.ma = api_pb2_grpc.OpenStorageMountAttachStub(ch)
        self.md = [("authorization", "bearer " + tok)] if tok else []

    def create(self, name=None, acls=None, owner=""):
        spec = api_pb2.VolumeSpec(size=1 << 30, ha_level=1)
        if acls is not None or owner:
            spec.ownership.CopyFrom(api_pb2.Ownership(owner=owner, acls=acls or api_pb2.Ownership.AccessControl()))
        name = name or "o-" + uuid.uuid4().hex[:10]
        return self.vol.Create(api_pb2.SdkVolumeCreateRequest(name=name, spec=spec), metadata=self.md).volume_id

    def inspect(self, vid):
        return self.vol.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=self.md).volume

    def update(self, vid, labels=None, ownership=None, size=None):
        spec = api_pb2.VolumeSpecUpdate()
        if ownership is not None:
            spec.ownership.CopyFrom(ownership)
        if size is not None:
            spec.size = size
        return self.vol.Update(api_pb2.SdkVolumeUpdateRequest(volume_id=vid, labels=labels or {}, spec=spec), metadata=self.md)

    def delete(self, vid):
        return self.vol.Delete(api_pb2.SdkVolumeDeleteRequest(volume_id=vid), metadata=self.md)

    def enumerate(self):
        return list(self.vol.Enumerate(api_pb2.SdkVolumeEnumerateRequest(), metadata=self.md).volume_ids)


def denied(fn, code=grpc.StatusCode.PERMISSION_DENIED, text=None):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    assert e.value.code() == code, e.value.details()
    if text is not None:
        assert text in e.value.details(), e.value.details()
    return e.value


def acl(collaborators=None, groups=None, public=None):
    a = api_pb2.Ownership.AccessControl(collaborators=collaborators or {}, groups=groups or {})
    if public is not None:
        a.public.CopyFrom(api_pb2.Ownership.PublicAccessControl(type=public))
    return a


def test_client_supplied_owner_is_ignored_and_acls_kept(cluster):
    alice = As(cluster, token(cluster, "alice"), 0)
    vid = alice.create(owner="spoofed", acls=acl(collaborators={"bob": Access.Write}))
    v = As(cluster, token(cluster, "alice"), 2).inspect(vid)
    assert v.spec.ownership.owner == "alice"
    assert dict(v.spec.ownership.acls.collaborators) == {"bob": Access.Write}


def test_collaborator_levels(cluster):
    alice = As(cluster, token(cluster, "alice"), 0)
    vid = alice.create(acls=acl(collaborators={"bob": Access.Write, "carol": Access.Admin}))
    bob, carol, dave = (As(cluster, token(cluster, u), i) for u, i in (("bob", 1), ("carol", 2), ("dave", 1)))
    # A stranger sees nothing: Inspect refused (existence revealed, as upstream), Enumerate hides it.
    denied(lambda: dave.inspect(vid), text=f"Access denied to volume {vid}")
    assert vid not in dave.enumerate()
    # Write: update labels, attach, mount; not delete, not ACLs.
    bob.update(vid, labels={"by": "bob"})
    assert bob.inspect(vid).locator.volume_labels["by"] == "bob"
    dev = bob.ma.Attach(api_pb2.SdkVolumeAttachRequest(volume_id=vid), metadata=bob.md).device_path
    assert dev.startswith("/dev/")
    bob.ma.Mount(api_pb2.SdkVolumeMountRequest(volume_id=vid, mount_path="/mnt/a"), metadata=bob.md)
    v = alice.inspect(vid)
    assert v.state == api_pb2.VOLUME_STATE_ATTACHED and list(v.attach_path) == ["/mnt/a"]
    denied(lambda: bob.delete(vid), text=f"Cannot delete volume {vid}")
    denied(lambda: bob.update(vid, ownership=api_pb2.Ownership(acls=acl(collaborators={"bob": Access.Admin}))),
           text="Only owner or those with admin access type can update volume acls")
    # Deleting an attached volume is refused even for its owner.
    denied(lambda: alice.delete(vid), code=grpc.StatusCode.FAILED_PRECONDITION)
    bob.ma.Unmount(api_pb2.SdkVolumeUnmountRequest(volume_id=vid, mount_path="/mnt/a"), metadata=bob.md)
    bob.ma.Detach(api_pb2.SdkVolumeDetachRequest(volume_id=vid), metadata=bob.md)
    # Admin collaborator: may edit ACLs and delete, but not set an owner.
    denied(lambda: carol.update(vid, ownership=api_pb2.Ownership(owner="carol")),
           text="Only the administrator can change the owner of the resource")
    carol.update(vid, ownership=api_pb2.Ownership(acls=acl(collaborators={"carol": Access.Admin})))
    denied(lambda: bob.inspect(vid))  # bob's grant is gone
    carol.delete(vid)


def test_owner_cannot_transfer_but_an_ownership_admin_can(cluster):
    alice = As(cluster, token(cluster, "alice"), 1)
    vid = alice.create()
    denied(lambda: alice.update(vid, ownership=api_pb2.Ownership(owner="alice")),
           text="Only the administrator can change the owner of the resource")
    admin = As(cluster, token(cluster, "root", roles=("system.admin",), groups=("*",)), 2)
    admin.update(vid, ownership=api_pb2.Ownership(owner="erin"))
    assert As(cluster, token(cluster, "erin"), 0).inspect(vid).spec.ownership.owner == "erin"
    denied(lambda: alice.inspect(vid))


def test_groups_and_public_access(cluster):
    alice = As(cluster, token(cluster, "alice"), 0)
    vid = alice.create(acls=acl(groups={"eng": Access.Read, "ops": Access.Write}, public=Access.Read))
    # Highest grant wins across the caller's groups (deliberate difference: upstream takes the first).
    both = As(cluster, token(cluster, "gus", groups=("eng", "ops")), 1)
    both.update(vid, labels={"g": "1"})
    eng = As(cluster, token(cluster, "hal", groups=("eng",)), 2)
    eng.inspect(vid)
    denied(lambda: eng.update(vid, labels={"g": "2"}), text="Cannot update volume")
    # Public Read: guests and strangers read, never write.
    guest = As(cluster, None, 1)
    guest.inspect(vid)
    denied(lambda: guest.update(vid, labels={"x": "y"}))


def test_clone_and_snapshot_ownership(cluster):
    alice = As(cluster, token(cluster, "alice"), 0)
    vid = alice.create(acls=acl(collaborators={"bob": Access.Read}))
    bob = As(cluster, token(cluster, "bob"), 1)
    clone = bob.vol.Clone(api_pb2.SdkVolumeCloneRequest(name="c-" + uuid.uuid4().hex[:8], parent_id=vid),
                          metadata=bob.md).volume_id
    c = bob.inspect(clone)
    assert c.spec.ownership.owner == "bob" and not c.spec.ownership.acls.collaborators
    assert c.source.parent == vid
    snap = bob.vol.SnapshotCreate(api_pb2.SdkVolumeSnapshotCreateRequest(volume_id=vid, name="s-" + uuid.uuid4().hex[:8]),
                                  metadata=bob.md).snapshot_id
    s = alice.inspect(snap)
    assert s.spec.ownership.owner == "alice" and s.readonly
    listed = As(cluster, token(cluster, "alice"), 2).vol.SnapshotEnumerate(
        api_pb2.SdkVolumeSnapshotEnumerateRequest(volume_id=vid), metadata=alice.md).volume_snapshot_ids
    assert list(listed) == [snap]
    # Restore needs Write on the volume (bob has Read only).
    denied(lambda: bob.vol.SnapshotRestore(api_pb2.SdkVolumeSnapshotRestoreRequest(volume_id=vid, snapshot_id=snap),
                                           metadata=bob.md))
    alice.vol.SnapshotRestore(api_pb2.SdkVolumeSnapshotRestoreRequest(volume_id=vid, snapshot_id=snap), metadata=alice.md)
    # A volume with snapshots cannot be deleted.
    denied(lambda: alice.delete(vid), code=grpc.StatusCode.FAILED_PRECONDITION)


def test_size_only_grows_and_stats_are_not_reported(cluster):
    alice = As(cluster, token(cluster, "alice"), 2)
    vid = alice.create()
    alice.update(vid, size=2 << 30)
    assert alice.inspect(vid).spec.size == 2 << 30
    denied(lambda: alice.update(vid, size=1 << 30), code=grpc.StatusCode.INVALID_ARGUMENT)
    st = alice.vol.Stats(api_pb2.SdkVolumeStatsRequest(volume_id=vid), metadata=alice.md).stats
    assert st.bytes_used == 0 and st.reads == 0
    denied(lambda: As(cluster, token(cluster, "zed"), 0).vol.Stats(api_pb2.SdkVolumeStatsRequest(volume_id=vid),
           metadata=As(cluster, token(cluster, "zed"), 0).md))
