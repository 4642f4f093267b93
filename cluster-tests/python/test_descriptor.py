"""custos' openstorage/api.proto against the descriptor embedded in the official client wheel.

Everything our file defines (messages and enums at any depth, service methods) must match the
OpenStorage SDK 0.101.39 descriptor the Python client was generated from: names, field numbers,
types, type names, labels, oneof membership, map entries, enum values, method signatures and
streaming flags. Our file must not define anything the wheel lacks, and the services custos
serves must carry every method the wheel lists for them.

Our descriptor set comes from $CUSTOS_DESCRIPTOR_SET, or, when that is unset, from
`cargo run -q -p custos-proto --example descriptor_set` at the repository root.
"""

import copy
import os
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from openstorage import api_pb2

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "openstorage.api"
SERVICES = [
    "OpenStorageIdentity",
    "OpenStorageCluster",
    "OpenStorageNode",
    "OpenStorageVolume",
    "OpenStorageMountAttach",
    "OpenStorageRole",
    "OpenStorageSchedulePolicy",
    "OpenStoragePolicy",
    "OpenStorageCredentials",
    "OpenStorageAlerts",
]

FDP = descriptor_pb2.FieldDescriptorProto


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def descriptor_set_path(tmp_path_factory) -> Path:
    env = os.environ.get("CUSTOS_DESCRIPTOR_SET")
    if env:
        return Path(env)
    out = subprocess.run(
        ["cargo", "run", "-q", "-p", "custos-proto", "--example", "descriptor_set"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        check=True,
    ).stdout
    path = tmp_path_factory.mktemp("descriptor") / "custos-descriptor-set.pb"
    path.write_bytes(out)
    return path


@pytest.fixture(scope="session")
def ours(descriptor_set_path) -> descriptor_pb2.FileDescriptorProto:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(descriptor_set_path.read_bytes())
    files = [f for f in fds.file if f.package == PACKAGE]
    assert len(files) == 1, f"expected one {PACKAGE} file in {descriptor_set_path}, got {[f.name for f in files]}"
    return files[0]


@pytest.fixture(scope="session")
def wheel() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(fdp)
    assert fdp.package == PACKAGE
    return fdp


# --------------------------------------------------------------------------------------------
# The comparator
# --------------------------------------------------------------------------------------------


def _messages(fdp):
    """Every message of the file, nested ones included, by fully qualified name (".pkg.A.B")."""
    out = {}

    def walk(msgs, prefix):
        for m in msgs:
            name = f"{prefix}.{m.name}"
            out[name] = m
            walk(m.nested_type, name)

    walk(fdp.message_type, "." + fdp.package)
    return out


def _enums(fdp):
    """Every enum of the file, nested ones included, by fully qualified name."""
    out = {f".{fdp.package}.{e.name}": e for e in fdp.enum_type}
    for name, m in _messages(fdp).items():
        for e in m.enum_type:
            out[f"{name}.{e.name}"] = e
    return out


def _field_shape(field, msg, messages):
    """The wire-relevant facts about one field, as a comparable dict."""
    target = messages.get(field.type_name)
    return {
        "number": field.number,
        "type": FDP.Type.Name(field.type),
        "type_name": field.type_name,
        "label": FDP.Label.Name(field.label),
        "oneof": msg.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None,
        "proto3_optional": field.proto3_optional,
        "map": bool(target is not None and target.options.map_entry),
    }


def _compare_names(kind, where, ours, theirs, problems):
    for name in sorted(set(ours) - set(theirs)):
        problems.append(f"{where}: {kind} {name} is defined by us but absent from the wheel")
    for name in sorted(set(theirs) - set(ours)):
        problems.append(f"{where}: {kind} {name} is in the wheel but missing from ours")


def compare(ours, wheel):
    """Every difference between our openstorage.api file and the wheel's, as readable lines."""
    problems = []
    if ours.package != wheel.package:
        problems.append(f"package {ours.package!r} != wheel {wheel.package!r}")
    if ours.syntax != wheel.syntax:
        problems.append(f"syntax {ours.syntax!r} != wheel {wheel.syntax!r}")

    our_msgs, their_msgs = _messages(ours), _messages(wheel)
    for name, m in our_msgs.items():
        w = their_msgs.get(name)
        if w is None:
            problems.append(f"message {name} is defined by us but absent from the wheel")
            continue
        if m.options.map_entry != w.options.map_entry:
            problems.append(f"message {name}: map_entry {m.options.map_entry} != wheel {w.options.map_entry}")
        _compare_names("nested message", name, [n.name for n in m.nested_type], [n.name for n in w.nested_type], problems)
        _compare_names("nested enum", name, [e.name for e in m.enum_type], [e.name for e in w.enum_type], problems)
        _compare_names("oneof", name, [o.name for o in m.oneof_decl], [o.name for o in w.oneof_decl], problems)
        our_fields = {f.name: f for f in m.field}
        their_fields = {f.name: f for f in w.field}
        _compare_names("field", name, our_fields, their_fields, problems)
        for fname in sorted(set(our_fields) & set(their_fields)):
            a = _field_shape(our_fields[fname], m, our_msgs)
            b = _field_shape(their_fields[fname], w, their_msgs)
            for key in a:
                if a[key] != b[key]:
                    problems.append(f"field {name}.{fname}: {key} {a[key]!r} != wheel {b[key]!r}")

    their_enums = _enums(wheel)
    for name, e in _enums(ours).items():
        w = their_enums.get(name)
        if w is None:
            problems.append(f"enum {name} is defined by us but absent from the wheel")
            continue
        if e.options.allow_alias != w.options.allow_alias:
            problems.append(f"enum {name}: allow_alias {e.options.allow_alias} != wheel {w.options.allow_alias}")
        a = [(v.name, v.number) for v in e.value]
        b = [(v.name, v.number) for v in w.value]
        for extra in sorted(set(a) - set(b)):
            problems.append(f"enum {name}: value {extra[0]} = {extra[1]} is ours but not the wheel's")
        for missing in sorted(set(b) - set(a)):
            problems.append(f"enum {name}: value {missing[0]} = {missing[1]} is the wheel's but not ours")

    their_services = {s.name: s for s in wheel.service}
    for s in ours.service:
        w = their_services.get(s.name)
        if w is None:
            problems.append(f"service {s.name} is defined by us but absent from the wheel")
            continue
        our_methods = {m.name: m for m in s.method}
        their_methods = {m.name: m for m in w.method}
        _compare_names("method", s.name, our_methods, their_methods, problems)
        for mname in sorted(set(our_methods) & set(their_methods)):
            a, b = our_methods[mname], their_methods[mname]
            for key in ("input_type", "output_type", "client_streaming", "server_streaming"):
                if getattr(a, key) != getattr(b, key):
                    problems.append(
                        f"method {s.name}.{mname}: {key} {getattr(a, key)!r} != wheel {getattr(b, key)!r}"
                    )
    return problems


def _report(problems):
    return f"{len(problems)} mismatch(es) against the 0.101.39 wheel:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# The comparison itself
# --------------------------------------------------------------------------------------------


def test_our_openstorage_api_matches_the_wheel(ours, wheel):
    problems = compare(ours, wheel)
    assert not problems, _report(problems)


def test_the_served_services_are_present_with_every_wheel_method(ours, wheel):
    our_services = {s.name: {m.name for m in s.method} for s in ours.service}
    assert sorted(our_services) == sorted(SERVICES), "our file must define exactly these services"
    their_services = {s.name: {m.name for m in s.method} for s in wheel.service}
    for name in SERVICES:
        missing = their_services[name] - our_services[name]
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_our_file_is_self_contained(ours):
    """Every type our file references is defined in it (or is google.protobuf.Timestamp)."""
    defined = set(_messages(ours)) | set(_enums(ours))
    refs = {f.type_name for m in _messages(ours).values() for f in m.field if f.type_name}
    refs |= {t for s in ours.service for m in s.method for t in (m.input_type, m.output_type)}
    assert refs - defined <= {".google.protobuf.Timestamp"}, sorted(refs - defined)
    assert len(_messages(ours)) > 100, "suspiciously few messages: is this the right file?"


# --------------------------------------------------------------------------------------------
# Self-tests: the comparator notices deliberate damage (so the comparison cannot pass vacuously)
# --------------------------------------------------------------------------------------------


def _msg(fdp, *path):
    msgs = fdp.message_type
    m = None
    for name in path:
        m = next(x for x in msgs if x.name == name)
        msgs = m.nested_type
    return m


def _field(fdp, path, name):
    return next(f for f in _msg(fdp, *path).field if f.name == name)


def _enum(fdp, name):
    return next(e for e in fdp.enum_type if e.name == name)


def _method(fdp, service, name):
    return next(m for m in next(s for s in fdp.service if s.name == service).method if m.name == name)


def _renumber_field(f):
    _field(f, ["VolumeSpec"], "size").number = 99


def _rename_enum_value(f):
    next(v for v in _enum(f, "CosType").value if v.name == "HIGH").name = "HIGHEST"


def _retype_field(f):
    _field(f, ["VolumeSpec"], "ha_level").type = FDP.TYPE_INT32


def _relabel_field(f):
    _field(f, ["SdkRole"], "rules").label = FDP.LABEL_OPTIONAL


def _retarget_field(f):
    _field(f, ["Volume"], "spec").type_name = ".openstorage.api.VolumeSpecUpdate"


def _move_out_of_oneof(f):
    _field(f, ["VolumeSpecUpdate"], "size").ClearField("oneof_index")


def _drop_nested_field(f):
    m = _msg(f, "Ownership", "AccessControl")
    m.field.remove(next(x for x in m.field if x.name == "public"))


def _unmap_entry(f):
    _msg(f, "VolumeSpec", "VolumeLabelsEntry").options.map_entry = False


def _stream_method(f):
    _method(f, "OpenStorageVolume", "Enumerate").server_streaming = True


def _change_method_input(f):
    _method(f, "OpenStorageRole", "Create").input_type = ".openstorage.api.SdkRoleUpdateRequest"


def _drop_method(f):
    s = next(s for s in f.service if s.name == "OpenStorageNode")
    s.method.remove(next(m for m in s.method if m.name == "CordonAttachments"))


def _add_extra_message(f):
    f.message_type.add(name="CustosOnlyMessage")


def _add_extra_enum_value(f):
    _msg(f, "Sharedv4ServiceSpec").enum_type[0].value.add(name="HEADLESS", number=5)


def _add_extra_service(f):
    f.service.add(name="OpenStorageCustos")


MUTATIONS = {
    "renumbered field": (_renumber_field, "VolumeSpec.size: number"),
    "renamed enum value": (_rename_enum_value, "HIGHEST"),
    "retyped field": (_retype_field, "VolumeSpec.ha_level: type"),
    "relabelled field": (_relabel_field, "SdkRole.rules: label"),
    "retargeted field": (_retarget_field, "Volume.spec: type_name"),
    "field left its oneof": (_move_out_of_oneof, "VolumeSpecUpdate.size: oneof"),
    "nested field dropped": (_drop_nested_field, "AccessControl: field public"),
    "map entry unmarked": (_unmap_entry, "VolumeLabelsEntry: map_entry"),
    "method made streaming": (_stream_method, "OpenStorageVolume.Enumerate: server_streaming"),
    "method input changed": (_change_method_input, "OpenStorageRole.Create: input_type"),
    "method dropped": (_drop_method, "method CordonAttachments"),
    "extra message": (_add_extra_message, "CustosOnlyMessage is defined by us"),
    "extra enum value": (_add_extra_enum_value, "HEADLESS = 5"),
    "extra service": (_add_extra_service, "OpenStorageCustos is defined by us"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_comparator_reports_a_deliberate_mismatch(ours, wheel, mutation):
    damage, expected = MUTATIONS[mutation]
    broken = copy.deepcopy(ours)
    damage(broken)
    problems = compare(broken, wheel)
    assert any(expected in p for p in problems), f"{mutation}: expected {expected!r} in {problems}"
    # Only the damage is reported: the undamaged file compares clean (see the test above).
    assert len(problems) <= 3, problems
