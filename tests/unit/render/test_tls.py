"""ops/render/tls.py: which Vault certificates the deploy refuses before a host is changed."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.render.secrets import MappingSecrets
from ops.render.tls import certificate_problems
from ops.secrets.tls import self_signed_bundle, split_bundle

DOMAIN = "api.superapp.sy"


def bundle(names: list[str], days: int = 30) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=60))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
            + cert.public_bytes(serialization.Encoding.PEM).decode())


def problems(prod, value: str) -> list[str]:
    [ref] = {str(r): r for h in prod.hosts_with_role("app")
             for r in prod.edge_certificate_refs(h).values()}.values()
    return certificate_problems(prod, MappingSecrets({str(ref): value}))


@pytest.fixture(scope="module")
def prod(environments):
    return environments["prod"]


def test_a_good_bundle_or_a_wildcard_passes(prod):
    assert problems(prod, self_signed_bundle(DOMAIN, [], [DOMAIN])) == []
    assert problems(prod, bundle(["*.superapp.sy"])) == []


@pytest.mark.parametrize(("value", "expected"), [
    (lambda: "-----BEGIN NOTHING-----", "not a PEM bundle of a private key and its certificate"),
    (lambda: bundle(["www.superapp.sy", "*.api.superapp.sy"]),
     "the certificate names www.superapp.sy, *.api.superapp.sy, not api.superapp.sy"),
    (lambda: split_bundle(bundle([DOMAIN]))[0] + split_bundle(bundle([DOMAIN]))[1],
     "the private key is not the certificate's"),
    (lambda: bundle([DOMAIN], days=-1), "the certificate expired on "),
])
def test_an_unusable_bundle_is_named_by_its_vault_path_never_its_value(prod, value, expected):
    secret = value()
    [found] = problems(prod, secret)
    assert found.startswith("superapp/prod/shared/tls#api.superapp.sy: ") and expected in found
    assert "PRIVATE KEY" not in found and secret not in found
