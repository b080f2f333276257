"""TLS at the edge: Traefik's HTTPS entrypoint, its certificates and the redirect from HTTP.

group_data `tls_certificates` chooses per domain where its certificate comes from: `acme`
(Traefik's own ACME client, HTTP-01 on the `web` entrypoint, account key and certificates in one
0600 file that only Traefik's uid can read) or `vault` (an operator's key and chain, one PEM
bundle per domain in Vault, written 0600 for Traefik's uid). Every public route is served on
`websecure` for the API domains and the certificate names; `web` answers ACME challenges and
redirects the rest to https, except `tls_plain_http_domains` (a balancer that terminates TLS on
a private network; the audit wants a waiver for that in prod and staging).

Pure: environment and secrets in, rendered text out.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from ops.catalog.model import Environment, Host
from ops.render.files import DATA_DIR, TRAEFIK_DIR, TRAEFIK_DYNAMIC_DIR, RenderedFile, cron
from ops.render.secrets import SecretValues
from ops.secrets.tls import split_bundle

RESOLVER = "acme"
TRAEFIK_UID = 65534  # the `user` of the Traefik container (ops/render/compose.py)
CERTS_DIR = f"{TRAEFIK_DIR}/certs"  # Vault certificates, mounted with the rest of TRAEFIK_DIR
IN_CONTAINER_DIR = "/etc/traefik"
# ACME state (account key, certificates): Traefik writes it, so not in the read-only TRAEFIK_DIR.
ACME_DIR = f"{DATA_DIR}/traefik-acme"
ACME_IN_CONTAINER = "/var/lib/traefik-acme"
ACME_STORAGE = f"{ACME_IN_CONTAINER}/acme.json"
ACME_CA_IN_CONTAINER = "/etc/ssl/acme-ca.pem"
DYNAMIC_FILE = f"{TRAEFIK_DYNAMIC_DIR}/_tls.yml"
# Nightly copies of the ACME state on the host (0600 in a 0700 directory, a week of them): a
# truncated or corrupted acme.json (a full disk mid-write) is restored without asking the CA
# again (Let's Encrypt limits duplicate certificates to 5 a week). ops/runbooks/tls.md.
ACME_BACKUP_DIR = "/var/backups/superapp/traefik-acme"
ACME_BACKUP_CRON = "/etc/cron.d/superapp-acme-backup"
ACME_BACKUP_KEEP_DAYS = 7
# TLS 1.2's AEAD suites with forward secrecy (TLS 1.3 suites are not configurable, all good).
CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)
REDIRECT_ROUTER = "to-https"
HSTS_MIDDLEWARE = "hsts"


def enabled(environment: Environment) -> bool:
    return bool(environment.settings["tls_certificates"])


def uses_acme(environment: Environment) -> bool:
    return "acme" in environment.settings["tls_certificates"].values()


def plain_domains(environment: Environment) -> list[str]:
    """Names the public routes answer in plain HTTP on `web`: every API domain without TLS."""
    if not enabled(environment):
        return list(environment.settings["api_domains"])
    return list(environment.settings["tls_plain_http_domains"])


def https_domains(environment: Environment, host: Host) -> list[str]:
    """Names the public routes answer on `websecure`: the API domains and certificate names."""
    if not enabled(environment):
        return []
    names = [*environment.settings["api_domains"], *environment.edge_certificate_domains(host)]
    return list(dict.fromkeys(names))


def acme_domains(environment: Environment, host: Host) -> list[str]:
    return [d for d, source in environment.edge_certificate_domains(host).items()
            if source == "acme"]


def router_tls(environment: Environment, host: Host) -> dict[str, Any]:
    """The `tls` of every public router on `websecure`. Names for ACME are given explicitly:
    Traefik would otherwise ask for every Host() of the rule, API domains included."""
    acme = acme_domains(environment, host)
    return {"certResolver": RESOLVER, "domains": [{"main": d} for d in acme]} if acme else {}


def static_settings(environment: Environment) -> dict[str, Any]:
    """What traefik.yml needs: whether `websecure` exists, and the ACME resolver's settings."""
    acme = environment.settings["tls"]["acme"]
    return {
        "enabled": enabled(environment),
        "acme": {
            "email": acme["email"], "caServer": acme["ca_server"], "storage": ACME_STORAGE,
            "keyType": acme["algorithm"],
            "certificatesDuration": acme["certificates_duration_hours"],
            **({"caCertificates": [ACME_CA_IN_CONTAINER]} if acme["ca_file"] else {}),
            "httpChallenge": {"entryPoint": "web"},
        } if uses_acme(environment) else None,
    }


def container_volumes(environment: Environment) -> list[str]:
    """Traefik's extra mounts: its ACME state (read-write) and the ACME server's CA, if any."""
    if not uses_acme(environment):
        return []
    ca_file = environment.settings["tls"]["acme"]["ca_file"]
    return [f"{ACME_DIR}:{ACME_IN_CONTAINER}",
            *([f"{ca_file}:{ACME_CA_IN_CONTAINER}:ro"] if ca_file else [])]


def certificate_problems(environment: Environment, secrets: SecretValues) -> list[str]:
    """What is wrong with each Vault certificate the edge would serve: not a key + chain
    bundle, a key that is not the certificate's, a certificate for another name, or one that
    has expired. One line each, naming the Vault path and key (never a value). The deploy
    refuses on any before a host is changed: Traefik would otherwise serve its own default
    certificate for that name."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    problems = []
    refs = {str(ref): (domain, ref) for host in environment.hosts_with_role("app")
            for domain, ref in environment.edge_certificate_refs(host).items()}
    for where, (domain, ref) in sorted(refs.items()):
        key_pem, cert_pem = split_bundle(secrets.get(ref) or "")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        except ValueError:
            problems.append(f"{where}: not a PEM bundle of a private key and its certificate "
                            "chain (key first)")
            continue
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != \
                cert.public_key().public_bytes(serialization.Encoding.DER, pub):
            problems.append(f"{where}: the private key is not the certificate's")
        try:
            names = cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        if not any(n == domain or (n.startswith("*.") and domain.split(".", 1)[-1] == n[2:])
                   for n in names):
            problems.append(f"{where}: the certificate names {', '.join(names) or 'nothing'}, "
                            f"not {domain}")
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
            problems.append(f"{where}: the certificate expired on "
                            f"{cert.not_valid_after_utc:%Y-%m-%d}")
    return problems


def acme_backup_command() -> str:
    """Copy acme.json (if Traefik has written it) to ACME_BACKUP_DIR/acme-<date>.json, owner
    and mode kept, and drop copies older than a week (the integration test runs exactly this)."""
    src = f"{ACME_DIR}/acme.json"
    return (f"test ! -f {src} || {{ umask 077 && mkdir -p {ACME_BACKUP_DIR} && "
            f"cp -p {src} {ACME_BACKUP_DIR}/acme-$(date +%F).json && "
            f"find {ACME_BACKUP_DIR} -name 'acme-*.json' -mtime +{ACME_BACKUP_KEEP_DAYS - 1} "
            "-delete; }")


def dynamic_config(environment: Environment, host: Host, certificates: dict[str, str]) -> str:
    """TLS options for every HTTPS connection, the Vault certificates, HSTS, the redirect.

    `certificates`: domain -> its certificate PEM. Their digests are written in the file:
    Traefik watches only the dynamic directory, and reads certificate files when a file there
    changes, so a new certificate from Vault changes this file too (no restart)."""
    tls = environment.settings["tls"]
    vault = list(environment.edge_certificate_refs(host))
    config = {
        "tls": {
            # `default`: applies to every TLS connection, whatever the SNI
            "options": {"default": {"minVersion": tls["min_version"],
                                    "cipherSuites": list(CIPHER_SUITES), "sniStrict": False}},
            **({"certificates": [{"certFile": f"{IN_CONTAINER_DIR}/certs/{d}.crt",
                                  "keyFile": f"{IN_CONTAINER_DIR}/certs/{d}.key"}
                                 for d in vault]} if vault else {}),
        },
        "http": {
            "middlewares": {
                HSTS_MIDDLEWARE: {"headers": {"stsSeconds": tls["hsts_seconds"],
                                              "stsIncludeSubdomains": False}},
                REDIRECT_ROUTER: {"redirectScheme": {"scheme": "https", "permanent": True}},
            },
            # Everything on `web` that no plain route takes (ACME challenges come first: Traefik
            # answers them at the highest priority).
            "routers": {REDIRECT_ROUTER: {
                "entryPoints": ["web"], "rule": "PathPrefix(`/`)", "priority": 1,
                "middlewares": [REDIRECT_ROUTER], "service": "noop@internal"}},
        },
    }
    digests = "".join(f"# {domain}: certificate sha256 {hashlib.sha256(pem.encode()).hexdigest()}\n"
                      for domain, pem in certificates.items())
    return (f"# TLS at the edge. Rendered by ops.render for host {host.name} "
            f"({environment.name}).\n" + digests + yaml.safe_dump(config, sort_keys=False))


def render_files(environment: Environment, host: Host,
                 secrets: SecretValues) -> list[RenderedFile]:
    """The dynamic TLS file and each Vault domain's certificate and key (0600, Traefik's uid)."""
    if not enabled(environment):
        return []
    pairs = {domain: split_bundle(secrets.get(ref) or "")
             for domain, ref in environment.edge_certificate_refs(host).items()}
    files = [RenderedFile(DYNAMIC_FILE, dynamic_config(
        environment, host, {domain: cert for domain, (_, cert) in pairs.items()}))]
    if acme_domains(environment, host):
        line = "17 3 * * * root " + acme_backup_command().replace("%", "\\%")
        files.append(RenderedFile(ACME_BACKUP_CRON, cron(
            "a copy of Traefik's ACME state, nightly", [line], source="ops/render/tls.py")))
    for domain, (key, cert) in pairs.items():
        files += [RenderedFile(f"{CERTS_DIR}/{domain}.crt", cert),
                  RenderedFile(f"{CERTS_DIR}/{domain}.key", key, mode=0o600, secret=True,
                               owner=TRAEFIK_UID)]
    return files
