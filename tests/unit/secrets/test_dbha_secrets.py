"""The database cluster's secrets in Vault (`Environment.dbha_refs`) and what the bootstrap
makes for them: random logins, a CA of the cluster's own, and each etcd or Patroni host's
certificate signed by it (checked by OpenSSL, as Patroni's and etcd's TLS would)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from ops.catalog import load_environment
from ops.secrets.bootstrap import new_value, policy_documents
from ops.secrets.tls import split_bundle
from ops.secrets.vault import VaultError, refs_by_path
from tests.unit.dbha.cluster_data import add_cluster
from tests.unit.secrets.test_cluster_ca import verify


@pytest.fixture
def clustered(repo_copy):
    add_cluster(repo_copy)
    return repo_copy.load()


def test_the_cluster_has_four_logins_a_ca_and_one_certificate_per_node(clustered) -> None:
    refs = clustered.dbha_refs()
    assert [str(r) for r in refs.values()] == [
        "superapp/prod/shared/dbha#SUPERUSER_PASSWORD",
        "superapp/prod/shared/dbha#REPLICATION_PASSWORD",
        "superapp/prod/shared/dbha#REWIND_PASSWORD",
        "superapp/prod/shared/dbha#REST_API_PASSWORD",
        "superapp/prod/shared/dbha-tls#ETCD_CA",  # first of its path: the others are signed by it
        "superapp/prod/shared/dbha-tls#db-1",
        "superapp/prod/shared/dbha-tls#db-2",
        "superapp/prod/shared/dbha-tls#mon-1"]
    every = {str(r) for r in clustered.all_secret_refs()}
    assert {str(r) for r in refs.values()} <= every
    deploy = next(text for name, text in policy_documents(clustered).items() if "deploy" in name)
    assert 'path "secret/data/superapp/prod/shared/dbha-tls"' in deploy


def test_without_a_cluster_there_is_none() -> None:
    environment = load_environment("prod")
    assert environment.dbha_refs() == {}
    assert not [r for r in environment.all_secret_refs() if "dbha" in r.path]


def fill(environment, path: str) -> dict[str, str]:
    """What the bootstrap writes to one empty path: each missing key in order."""
    data: dict[str, str] = {}
    for ref in refs_by_path(environment.all_secret_refs())[path]:
        data[ref.key] = new_value(environment, ref, data)
    return data


def test_each_nodes_certificate_is_signed_by_the_cluster_ca_for_its_address(
        clustered, tmp_path: Path) -> None:
    data = fill(clustered, "superapp/prod/shared/dbha-tls")
    assert list(data) == ["ETCD_CA", "db-1", "db-2", "mon-1"]
    for node, address in (("db-1", "10.10.1.11"), ("db-2", "10.10.1.12"),
                          ("mon-1", "10.10.2.11")):
        for purpose in ("sslserver", "sslclient"):  # etcd peers, Patroni as etcd's client
            res = verify(tmp_path, data["ETCD_CA"], data[node], purpose)
            assert res.returncode == 0, res.stdout + res.stderr
        cert = x509.load_pem_x509_certificate(split_bundle(data[node])[1].encode())
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == [address]
        assert alt.get_values_for_type(x509.DNSName) == [node]
    other = fill(clustered, "superapp/prod/shared/dbha-tls")  # another bootstrap, another CA
    assert verify(tmp_path, other["ETCD_CA"], data["db-1"], "sslserver").returncode != 0


def test_the_logins_are_random_and_distinct(clustered) -> None:
    data = fill(clustered, "superapp/prod/shared/dbha")
    assert len(set(data.values())) == 4 and all(len(v) == 32 for v in data.values())


def test_a_certificate_without_its_ca_is_an_error_naming_it(clustered) -> None:
    ref = clustered.dbha_refs()["tls:db-2"]
    with pytest.raises(VaultError, match=r"superapp/prod/shared/dbha-tls#db-2: no ETCD_CA "
                                         r"beside it to sign it with"):
        new_value(clustered, ref, {})
