"""Schedule policies and storage policies with the official client on a real 3-node cluster:
upstream's codes and texts, the storage policies' ownership matrix, the default policy on
Volume.Create, and SnapshotScheduleUpdate naming only existing schedule policies."""

import uuid

import grpc
import pytest
from openstorage import api_pb2, api_pb2_grpc

from conftest import token

Access = api_pb2.Ownership
Op = api_pb2.VolumeSpecPolicy


class As:
    """Calls as one caller through member `i`."""

    def __init__(self, cluster, tok, i=0):
        ch = grpc.insecure_channel(cluster["endpoints"][i])
        self.sched = api_pb2_grpc.OpenStorageSchedulePolicyStub(ch)
        self.pol = api_pb2_grpc.OpenStoragePolicyStub(ch)
        self.vol = api_pb2_grpc.OpenStorageVolumeStub(ch)
        self.md = [("authorization", "bearer " + tok)] if tok else []

    # storage policies
    def create(self, name, policy, acls=None, force=False, owner=""):
        sp = api_pb2.SdkStoragePolicy(name=name, policy=policy, force=force)
        if acls is not None or owner:
            sp.ownership.CopyFrom(api_pb2.Ownership(owner=owner, acls=acls or Access.AccessControl()))
        return self.pol.Create(api_pb2.SdkOpenStoragePolicyCreateRequest(storage_policy=sp), metadata=self.md)

    def inspect(self, name):
        return self.pol.Inspect(api_pb2.SdkOpenStoragePolicyInspectRequest(name=name), metadata=self.md).storage_policy

    def names(self):
        r = self.pol.Enumerate(api_pb2.SdkOpenStoragePolicyEnumerateRequest(), metadata=self.md)
        return {p.name for p in r.storage_policies}

    def update(self, name, policy, ownership=None):
        sp = api_pb2.SdkStoragePolicy(name=name, policy=policy)
        if ownership is not None:
            sp.ownership.CopyFrom(ownership)
        return self.pol.Update(api_pb2.SdkOpenStoragePolicyUpdateRequest(storage_policy=sp), metadata=self.md)

    def delete(self, name):
        return self.pol.Delete(api_pb2.SdkOpenStoragePolicyDeleteRequest(name=name), metadata=self.md)

    def set_default(self, name):
        return self.pol.SetDefault(api_pb2.SdkOpenStoragePolicySetDefaultRequest(name=name), metadata=self.md)

    def default(self):
        return self.pol.DefaultInspect(api_pb2.SdkOpenStoragePolicyDefaultInspectRequest(), metadata=self.md)

    def release(self):
        return self.pol.Release(api_pb2.SdkOpenStoragePolicyReleaseRequest(), metadata=self.md)

    # volumes
    def create_volume(self, size=1 << 20, ha=1, **kw):
        name = "pv-" + uuid.uuid4().hex[:10]
        spec = api_pb2.VolumeSpec(size=size, ha_level=ha, **kw)
        vid = self.vol.Create(api_pb2.SdkVolumeCreateRequest(name=name, spec=spec), metadata=self.md).volume_id
        return self.vol.Inspect(api_pb2.SdkVolumeInspectRequest(volume_id=vid), metadata=self.md).volume


def refused(fn, code, text=None):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    assert e.value.code() == code, (e.value.code(), e.value.details())
    if text is not None:
        assert text in e.value.details(), e.value.details()
    return e.value


def daily(hour=12, minute=30, retain=2):
    return api_pb2.SdkSchedulePolicyInterval(
        retain=retain, daily=api_pb2.SdkSchedulePolicyIntervalDaily(hour=hour, minute=minute))


# ---- schedule policies ----

def test_schedule_policy_lifecycle_as_upstreams_sanity_suite(cluster):
    admin = As(cluster, cluster["tokens"]["admin"], 0)
    other = As(cluster, cluster["tokens"]["admin"], 2)
    name = "create-test-policy-" + uuid.uuid4().hex[:6]
    before = len(admin.sched.Enumerate(api_pb2.SdkSchedulePolicyEnumerateRequest(), metadata=admin.md).policies)
    admin.sched.Create(api_pb2.SdkSchedulePolicyCreateRequest(
        schedule_policy=api_pb2.SdkSchedulePolicy(name=name, schedules=[daily()])), metadata=admin.md)
    after = other.sched.Enumerate(api_pb2.SdkSchedulePolicyEnumerateRequest(), metadata=other.md).policies
    assert len(after) == before + 1
    got = other.sched.Inspect(api_pb2.SdkSchedulePolicyInspectRequest(name=name), metadata=other.md).policy
    assert got.name == name and got.schedules[0].daily.hour == 12 and got.schedules[0].retain == 2

    weekly = api_pb2.SdkSchedulePolicyInterval(retain=1, weekly=api_pb2.SdkSchedulePolicyIntervalWeekly(
        day=api_pb2.SdkTimeWeekdaySunday, hour=1, minute=2))
    admin.sched.Update(api_pb2.SdkSchedulePolicyUpdateRequest(
        schedule_policy=api_pb2.SdkSchedulePolicy(name=name, schedules=[weekly])), metadata=admin.md)
    got = other.sched.Inspect(api_pb2.SdkSchedulePolicyInspectRequest(name=name), metadata=other.md).policy
    assert got.schedules[0].WhichOneof("period_type") == "weekly"

    # upstream's codes and texts
    C = grpc.StatusCode
    create = lambda p: admin.sched.Create(api_pb2.SdkSchedulePolicyCreateRequest(schedule_policy=p), metadata=admin.md)
    refused(lambda: admin.sched.Create(api_pb2.SdkSchedulePolicyCreateRequest(), metadata=admin.md),
            C.INVALID_ARGUMENT, "SchedulePolicy object cannot be nil")
    refused(lambda: create(api_pb2.SdkSchedulePolicy(name="", schedules=[daily()])), C.INVALID_ARGUMENT, "Must supply Schedule name")
    refused(lambda: create(api_pb2.SdkSchedulePolicy(name="x")), C.INVALID_ARGUMENT, "Must a supply Schedule")
    refused(lambda: create(api_pb2.SdkSchedulePolicy(name="x", schedules=[daily(retain=0)])), C.INVALID_ARGUMENT, "Must retain more than 0")
    refused(lambda: create(api_pb2.SdkSchedulePolicy(name=name, schedules=[daily()])), C.ALREADY_EXISTS)
    refused(lambda: admin.sched.Update(api_pb2.SdkSchedulePolicyUpdateRequest(
        schedule_policy=api_pb2.SdkSchedulePolicy(name="policy-name-changed", schedules=[daily()])), metadata=admin.md),
        C.NOT_FOUND, "Schedule policy policy-name-changed not found")
    refused(lambda: admin.sched.Inspect(api_pb2.SdkSchedulePolicyInspectRequest(name=""), metadata=admin.md),
            C.INVALID_ARGUMENT, "Must supply Schedule name")
    refused(lambda: admin.sched.Delete(api_pb2.SdkSchedulePolicyDeleteRequest(name=""), metadata=admin.md),
            C.INVALID_ARGUMENT, "Must supply Schedule name")
    # the view role reads, cannot write; a guest cannot even read
    view = As(cluster, cluster["tokens"]["view"], 1)
    view.sched.Inspect(api_pb2.SdkSchedulePolicyInspectRequest(name=name), metadata=view.md)
    refused(lambda: view.sched.Delete(api_pb2.SdkSchedulePolicyDeleteRequest(name=name), metadata=view.md), C.PERMISSION_DENIED)
    guest = As(cluster, None, 1)
    refused(lambda: guest.sched.Enumerate(api_pb2.SdkSchedulePolicyEnumerateRequest(), metadata=guest.md), C.PERMISSION_DENIED)

    admin.sched.Delete(api_pb2.SdkSchedulePolicyDeleteRequest(name=name), metadata=admin.md)
    admin.sched.Delete(api_pb2.SdkSchedulePolicyDeleteRequest(name=name), metadata=admin.md)  # idempotent
    refused(lambda: other.sched.Inspect(api_pb2.SdkSchedulePolicyInspectRequest(name=name), metadata=other.md), C.NOT_FOUND)


def test_snapshot_schedule_update_needs_existing_policies(cluster):
    user = As(cluster, cluster["tokens"]["user"], 0)
    v = user.create_volume()
    name = "sched_" + uuid.uuid4().hex[:6]
    upd = lambda names: user.vol.SnapshotScheduleUpdate(api_pb2.SdkVolumeSnapshotScheduleUpdateRequest(
        volume_id=v.id, snapshot_schedule_names=names), metadata=user.md)
    refused(lambda: upd([name]), grpc.StatusCode.ABORTED, f"Error accessing schedule policy {name}")
    user.sched.Create(api_pb2.SdkSchedulePolicyCreateRequest(
        schedule_policy=api_pb2.SdkSchedulePolicy(name=name, schedules=[daily()])), metadata=user.md)
    upd([name])
    got = As(cluster, cluster["tokens"]["user"], 2).vol.Inspect(
        api_pb2.SdkVolumeInspectRequest(volume_id=v.id), metadata=user.md).volume
    assert f"policy={name}" in got.spec.snapshot_schedule
    user.sched.Delete(api_pb2.SdkSchedulePolicyDeleteRequest(name=name), metadata=user.md)


# ---- storage policies ----

def test_storage_policy_ownership_matrix(cluster):
    """Owner, group member, collaborator, public, other user, ownership admin and guest, for
    every storage policy method that checks ownership. Writers hold system.admin (system.user
    may only enumerate and inspect policies) without the `*` group, so ownership binds them."""
    admin_role = ("system.admin",)
    owner = As(cluster, token(cluster, "pol-owner", admin_role), 0)
    member = As(cluster, token(cluster, "pol-member", admin_role, groups=("eng",)), 1)
    collab = As(cluster, token(cluster, "pol-collab", admin_role), 2)
    other = As(cluster, token(cluster, "pol-other", admin_role), 1)
    reader = As(cluster, token(cluster, "pol-reader"), 0)  # system.user: reads only
    admin = As(cluster, cluster["tokens"]["admin"], 2)     # group "*"
    guest = As(cluster, None, 0)
    C = grpc.StatusCode
    sfx = uuid.uuid4().hex[:6]
    private, public = "private-" + sfx, "public-" + sfx
    owner.create(private, Op(size=1 << 20), acls=Access.AccessControl(
        groups={"eng": Access.Read}, collaborators={"pol-collab": Access.Write}), owner="spoofed")
    owner.create(public, Op(size=1 << 20), acls=Access.AccessControl(public=Access.PublicAccessControl(type=Access.Read)))

    got = admin.inspect(private)
    assert got.ownership.owner == "pol-owner"  # the request's owner is ignored
    assert dict(got.ownership.acls.collaborators) == {"pol-collab": Access.Write}

    # read (Inspect and Enumerate list only what the caller may read)
    for who, can in [(owner, True), (member, True), (collab, True), (other, False), (admin, True), (reader, False)]:
        assert (private in who.names()) == can
        if can:
            assert who.inspect(private).name == private
        else:
            refused(lambda: who.inspect(private), C.PERMISSION_DENIED, f"Access denied to storage policy {private}")
    for who in [owner, member, collab, other, admin, reader]:
        assert public in who.names()
    # a guest's role (system.guest) has no policy rule at all
    refused(lambda: guest.names(), C.PERMISSION_DENIED)

    # write: owner and Write collaborator; not the Read group member, not the others
    collab.update(private, Op(size=2 << 20))
    assert owner.inspect(private).policy.size == 2 << 20
    assert owner.inspect(private).ownership.owner == "pol-owner"  # kept without an ownership edit
    refused(lambda: member.update(private, Op(size=1)), C.PERMISSION_DENIED, "Cannot update storage policy")
    refused(lambda: other.update(private, Op(size=1)), C.PERMISSION_DENIED, f"Access denied to storage policy {private}")
    refused(lambda: other.update(public, Op(size=1)), C.PERMISSION_DENIED, "Cannot update storage policy")
    refused(lambda: reader.update(public, Op(size=1)), C.PERMISSION_DENIED)  # role: policy.update
    # ownership edits: a Write collaborator cannot edit ACLs, the owner cannot change the owner
    refused(lambda: collab.update(private, Op(size=2 << 20), Access(acls=Access.AccessControl())),
            C.PERMISSION_DENIED, "Only owner or those with admin access type")
    refused(lambda: owner.update(private, Op(size=2 << 20), Access(owner="pol-other")),
            C.PERMISSION_DENIED, "Only the administrator can change the owner")

    # delete needs Admin: collaborator (Write) and group member (Read) cannot; the owner can
    refused(lambda: collab.delete(private), C.PERMISSION_DENIED, f"Cannot delete storage policy {private}")
    refused(lambda: member.delete(private), C.PERMISSION_DENIED, f"Cannot delete storage policy {private}")
    refused(lambda: other.delete(public), C.PERMISSION_DENIED, f"Cannot delete storage policy {public}")
    owner.delete(private)
    owner.delete(private)  # idempotent
    admin.delete(public)   # the ownership admin may delete anyone's
    assert private not in admin.names() and public not in admin.names()

    # a guest cannot create one (no policy rule in system.guest)
    refused(lambda: guest.create("g-" + sfx, Op(size=1)), C.PERMISSION_DENIED)
    # upstream's texts
    refused(lambda: owner.create("", Op(size=1)), C.INVALID_ARGUMENT, "Must supply a Storage Policy Name")
    refused(lambda: owner.pol.Create(api_pb2.SdkOpenStoragePolicyCreateRequest(
        storage_policy=api_pb2.SdkStoragePolicy(name="x")), metadata=owner.md), C.INVALID_ARGUMENT, "Must supply Volume Specs")
    owner.create("dup-" + sfx, Op(size=1))
    refused(lambda: owner.create("dup-" + sfx, Op(size=1)), C.ALREADY_EXISTS, "Storage Policy already exist")
    refused(lambda: owner.inspect("missing-" + sfx), C.NOT_FOUND, f"Policy missing-{sfx} not found")
    # a field custos does not enforce is refused rather than silently ignored
    refused(lambda: owner.create("x-" + sfx, Op(scale=2)), C.INVALID_ARGUMENT, "scale")
    owner.delete("dup-" + sfx)


def test_default_policy_shapes_volume_create_and_only_admins_set_it(cluster):
    admin = As(cluster, cluster["tokens"]["admin"], 0)
    writer = As(cluster, token(cluster, "pol-writer", ("system.admin",)), 1)  # no "*" group
    user = As(cluster, cluster["tokens"]["user"], 2)
    sfx = uuid.uuid4().hex[:6]
    soft, hard = "soft-" + sfx, "hard-" + sfx
    pub = Access.AccessControl(public=Access.PublicAccessControl(type=Access.Read))
    writer.create(soft, Op(size=64 << 20, size_operator=Op.Minimum, ha_level=2, ha_level_operator=Op.Minimum,
                           cos=api_pb2.HIGH), acls=pub)
    writer.create(hard, Op(shared=True), acls=pub, force=True)
    C = grpc.StatusCode

    refused(lambda: writer.set_default(soft), C.PERMISSION_DENIED, "Only the storage system admin can set storage policy as default")
    refused(lambda: writer.release(), C.PERMISSION_DENIED, "Only the storage system admin can remove storage policy restriction")
    refused(lambda: user.set_default(soft), C.PERMISSION_DENIED)  # role: policy.setdefault
    assert not user.default().HasField("storage_policy")
    try:
        admin.set_default(soft)
        assert user.default().storage_policy.name == soft

        # values below the policy's minimum are raised, unset ones filled, the policy recorded
        v = user.create_volume(size=1 << 20, ha=1)
        assert (v.spec.size, v.spec.ha_level, v.spec.cos) == (64 << 20, 2, api_pb2.HIGH)
        assert v.spec.storage_policy == soft
        v = user.create_volume(size=128 << 20, ha=3)
        assert (v.spec.size, v.spec.ha_level) == (128 << 20, 3)

        # a create naming a policy uses it instead; a forced one refuses a spec that differs
        refused(lambda: user.create_volume(storage_policy=hard), C.INVALID_ARGUMENT, "Storage Policy Violation")
        v = user.create_volume(shared=True, storage_policy=hard)
        assert v.spec.shared and v.spec.storage_policy == hard
        refused(lambda: user.create_volume(storage_policy="missing-" + sfx), C.NOT_FOUND)

        # deleting the default releases it
        writer.delete(soft)
        assert not user.default().HasField("storage_policy")
        v = user.create_volume(size=1 << 20, ha=1)
        assert (v.spec.size, v.spec.ha_level, v.spec.storage_policy) == (1 << 20, 1, "")

        admin.set_default(hard)
        refused(lambda: user.create_volume(), C.INVALID_ARGUMENT, "Storage Policy Violation")
        admin.release()
        assert not user.default().HasField("storage_policy")
        user.create_volume()
    finally:
        admin.release()  # never leave a default behind for the other tests of the session
        writer.delete(soft)
        writer.delete(hard)
