"""ops.secrets.tls's cluster CA: certificates it issues verify against it (by OpenSSL, the
verifier Patroni's Python uses), serve both ends of mutual TLS, and one CA does not vouch
for another's certificates."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ops.secrets.tls import certificate_authority, issue, split_bundle


def write(tmp_path: Path, name: str, pem: str) -> str:
    path = tmp_path / name
    path.write_text(pem)
    return str(path)


def verify(tmp_path: Path, ca_bundle: str, leaf_bundle: str, purpose: str):
    ca = write(tmp_path, "ca.pem", split_bundle(ca_bundle)[1])
    leaf = write(tmp_path, "leaf.pem", split_bundle(leaf_bundle)[1])
    return subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", purpose,
                           "-CAfile", ca, leaf], capture_output=True, text=True, timeout=30)


def test_an_issued_certificate_verifies_as_server_and_as_client(tmp_path: Path) -> None:
    ca = certificate_authority("superapp etcd CA")
    leaf = issue(ca, "etcd1", ["172.31.231.10"], ["etcd1"])
    for purpose in ("sslserver", "sslclient"):
        res = verify(tmp_path, ca, leaf, purpose)
        assert res.returncode == 0 and res.stdout.strip().endswith(": OK"), res.stdout + res.stderr
    cert = x509.load_pem_x509_certificate(split_bundle(leaf)[1].encode())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["172.31.231.10"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_another_cas_certificate_is_not_trusted(tmp_path: Path) -> None:
    ours, theirs = certificate_authority("ours"), certificate_authority("theirs")
    res = verify(tmp_path, ours, issue(theirs, "intruder", ["172.31.231.99"]), "sslclient")
    assert res.returncode != 0 and "unable to get local issuer certificate" in res.stdout + \
        res.stderr


def test_a_leaf_cannot_sign_certificates_of_its_own(tmp_path: Path) -> None:
    ca = certificate_authority("ours")
    leaf = issue(ca, "etcd1", ["172.31.231.10"])
    grandchild = issue(leaf, "forged", ["172.31.231.98"])
    chain = write(tmp_path, "chain.pem", split_bundle(leaf)[1])
    root = write(tmp_path, "ca.pem", split_bundle(ca)[1])
    forged = write(tmp_path, "g.pem", split_bundle(grandchild)[1])
    res = subprocess.run(["openssl", "verify", "-CAfile", root, "-untrusted", chain, forged],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "invalid CA certificate" in res.stdout + res.stderr, \
        res.stdout + res.stderr
