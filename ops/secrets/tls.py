"""Self-signed TLS material for an internal endpoint whose certificate its clients pin.

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
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    alt = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    alt += [x509.DNSName(n) for n in dns_names]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
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
