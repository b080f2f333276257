"""TLS material for internal endpoints: self-signed certificates their clients pin, and a
cluster's own CA for mutual TLS between its members (etcd under Patroni).

The pgBackRest repository's S3 endpoint on the backup host is such an endpoint: the db host
trusts exactly that certificate (pgBackRest's `repo1-storage-ca-file`), so no public CA and no
renewal service is needed, and a stolen CA elsewhere cannot impersonate it. The key and the
certificate travel together as one PEM bundle (one Vault key), so they can never disagree.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

# One PEM block: its label (CERTIFICATE, PRIVATE KEY, ...) and its whole text.
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\n.*?\n-----END \1-----\n?", re.S)
VALID_DAYS = 3650
NO_CERTIFICATE = "# the certificate of a TLS bundle from Vault (not in this render)\n"


def self_signed_bundle(common_name: str, addresses: list[str], dns_names: list[str]) -> str:
    """A new EC P-256 key and a certificate for `addresses`/`dns_names`, as key PEM + cert PEM."""
    return _bundle(common_name, addresses, dns_names, kind="self-signed")


def certificate_authority(common_name: str) -> str:
    """A new CA of its own (key PEM + cert PEM) for one cluster's mutual TLS: it signs that
    cluster's certificates (`issue`) and nothing else, so trusting it trusts no one outside."""
    return _bundle(common_name, [], [], kind="authority")


def issue(ca_bundle: str, common_name: str, addresses: list[str],
          dns_names: list[str] | None = None) -> str:
    """A new key and a certificate signed by `ca_bundle`'s CA, usable at both ends of mutual
    TLS (server and client authentication), as key PEM + cert PEM."""
    return _bundle(common_name, addresses, dns_names or [], kind="leaf", signer=ca_bundle)


def _bundle(common_name: str, addresses: list[str], dns_names: list[str], kind: str,
            signer: str | None = None) -> str:
    """`kind`: self-signed (pinned by its clients, as before), authority (signs leaves:
    key usage and key identifiers, which strict verifiers want), leaf (signed by `signer`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = kind != "leaf"
    issuer_name, signing_key = name, key
    if signer is not None:
        signer_key, signer_cert = split_bundle(signer)
        issuer_name = x509.load_pem_x509_certificate(signer_cert.encode()).subject
        signing_key = serialization.load_pem_private_key(signer_key.encode(), password=None)
    now = dt.datetime.now(dt.UTC)
    alt = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    alt += [x509.DNSName(n) for n in dns_names]
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if kind != "self-signed":
        builder = (builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signing_key.public_key()), critical=False))
    if kind == "leaf":
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem + cert.public_bytes(serialization.Encoding.PEM).decode()


def split_bundle(bundle: str) -> tuple[str, str]:
    """(private key PEM, certificate PEM) of a bundle. A value that is not a bundle (a dry
    run's placeholder) comes back whole as the key (a secret file, masked) and as a comment
    for the certificate, which is public and must not carry a secret's placeholder."""
    blocks = {m[1]: m[0].strip() + "\n" for m in PEM_BLOCK.finditer(bundle)}
    key = next((v for label, v in blocks.items() if label.endswith("KEY")), None)
    cert = blocks.get("CERTIFICATE")
    if key is None or cert is None:
        return bundle, NO_CERTIFICATE
    return key, cert
