"""The official client over TLS: `custos dev --sdk-tls` serves the SDK with certificates from its
own CA, which cluster.json names as `ca_file`; peers use mutual TLS either way."""

import grpc
import pytest
from openstorage import api_pb2, api_pb2_grpc

from conftest import dev_cluster

CALL_TIMEOUT = 10


@pytest.fixture(scope="module")
def tls_cluster():
    with dev_cluster(3, prefix="custos-py-tls-", flags=("--sdk-tls",)) as info:
        yield info


def test_official_client_over_tls_with_the_cluster_ca(tls_cluster):
    assert tls_cluster["ca_file"], "cluster.json names the CA with --sdk-tls"
    assert tls_cluster["peer_tls"] is True
    with open(tls_cluster["ca_file"], "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    md = (("authorization", "bearer " + tls_cluster["tokens"]["user"]),)
    for endpoint in tls_cluster["endpoints"]:
        with grpc.secure_channel(endpoint, creds) as ch:
            r = api_pb2_grpc.OpenStorageIdentityStub(ch).Version(
                api_pb2.SdkIdentityVersionRequest(), metadata=md, timeout=CALL_TIMEOUT)
            assert r.sdk_version.version == "0.101.39"


def test_plaintext_and_untrusted_clients_are_refused(tls_cluster):
    endpoint = tls_cluster["endpoints"][0]
    with grpc.insecure_channel(endpoint) as ch:
        with pytest.raises(grpc.RpcError):
            api_pb2_grpc.OpenStorageIdentityStub(ch).Version(
                api_pb2.SdkIdentityVersionRequest(), timeout=CALL_TIMEOUT)
    # The system roots do not include the dev CA.
    with grpc.secure_channel(endpoint, grpc.ssl_channel_credentials()) as ch:
        with pytest.raises(grpc.RpcError) as e:
            api_pb2_grpc.OpenStorageIdentityStub(ch).Version(
                api_pb2.SdkIdentityVersionRequest(), timeout=CALL_TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_console_routes_over_tls_reach_every_member(tls_cluster):
    """The REST gateway serves the console's routes over TLS too; the serving member reaches the
    others' SDK over TLS (verifying each member's certificate) to verify their chains."""
    import json
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=tls_cluster["ca_file"])
    rest = tls_cluster["nodes"][1]["rest"]
    req = urllib.request.Request(f"https://{rest}/v1/custos/audit/verify/members",
                                 headers={"Authorization": "bearer " + tls_cluster["tokens"]["admin"]})
    with urllib.request.urlopen(req, context=ctx, timeout=CALL_TIMEOUT * 3) as r:
        reply = json.loads(r.read())
    assert reply["ok"] is True, reply
    assert [m["node_id"] for m in reply["members"]] == ["1", "2", "3"], reply
    assert all(m["verify"]["ok"] is True for m in reply["members"]), reply
    with urllib.request.urlopen(f"https://{rest}/", context=ctx, timeout=CALL_TIMEOUT) as r:
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert b"/console/app.js" in r.read()
