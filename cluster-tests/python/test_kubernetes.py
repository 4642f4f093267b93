"""deploy/kubernetes against the Kubernetes API schemas, offline (kubernetes-validate's bundled
schemas, strict: unknown fields fail): every object of the manifests and examples, and the
Secrets gen-secrets.sh writes, for the oldest and newest Kubernetes version the README names.
The objects' fit with each other and with custos is cluster-tests/tests/kubernetes.rs."""

import copy
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
VERSIONS = ["1.28.0", "1.37.0"]


def _docs(path: Path):
    return [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    out = tmp_path_factory.mktemp("secrets") / "s"
    subprocess.run(["bash", str(DEPLOY / "gen-secrets.sh"), str(out)], check=True, capture_output=True)
    found = []
    for path in [DEPLOY / "custos.yaml", *sorted((DEPLOY / "examples").glob("*.yaml"))]:
        found += _docs(path)
    found += _docs(out / "custos-tls.yaml") + _docs(out / "custos-auth.yaml")
    kinds = {d["kind"] for _, d in found}
    assert {"StatefulSet", "Service", "ConfigMap", "Secret", "StorageClass"} <= kinds, kinds
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_matches_the_kubernetes_schema(objects, version):
    for name, doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {e}")


def test_the_check_catches_a_misspelled_field(objects):
    sts = copy.deepcopy(next(d for _, d in objects if d["kind"] == "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, VERSIONS[-1], strict=True)
    sts = copy.deepcopy(next(d for _, d in objects if d["kind"] == "StatefulSet"))
    sts["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, VERSIONS[-1], strict=True)
