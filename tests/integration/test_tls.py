"""TLS at the edge on the testbed, with a real ACME flow: Traefik on each app host asks the
testbed's Pebble (Let's Encrypt's test CA) for a certificate of its own name over HTTP-01, serves
HTTPS with it, renews it before it expires (Pebble's certificates last 21 minutes), redirects
plain HTTP, refuses TLS 1.1, and serves a domain's certificate from Vault.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
from cryptography import x509

from bench.load import Load, SNIConnection, Target
from bench.tls import pebble_root as acme_root
from ops.catalog import load_environment
from ops.render import tls
from ops.render.compose import TRAEFIK_PORTS
from ops.secrets.tls import self_signed_bundle, split_bundle

from .conftest import REPO, Testbed, q

pytestmark = pytest.mark.integration

ENV = load_environment("local")
PAYMENTS = ENV.services["payments"]
HEALTH = f"{PAYMENTS.routes[0]}{PAYMENTS.health_path}"
VAULT_DOMAIN = next(d for d, s in ENV.settings["tls_certificates"].items() if s == "vault")
CERT_WAIT_SECONDS = 180



def app_hosts(testbed: Testbed) -> list:
    return [h for h in testbed.hosts if "app" in h.roles]


def name_of(host) -> str:
    """The host's own ACME name (`{host}.superapp.test`), which Pebble's test DNS resolves to
    it (testbed/testbed.py)."""
    [name] = tls.acme_domains(ENV, ENV.host(host.name))
    return name


@pytest.fixture(scope="module")
def pebble_root(testbed: Testbed) -> str:
    """The root that signs Pebble's certificates (new at every Pebble start)."""
    return acme_root(testbed.status)


def client(cadata: str, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=cadata)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def https_get(address: str, sni: str, path: str, ctx: ssl.SSLContext,
              host_header: str | None = None) -> tuple[int, dict, bytes, bytes]:
    """(status, headers, body, the server's certificate as DER)."""
    conn = SNIConnection(address, sni, ctx, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host_header or sni})
        resp = conn.getresponse()
        body = resp.read()
        der = conn.sock.getpeercert(binary_form=True)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, der
    finally:
        conn.close()


def handshake(address: str, sni: str, ctx: ssl.SSLContext) -> bytes:
    """A TLS handshake with Traefik's `websecure`: the certificate it presented, as DER."""
    with socket.create_connection((address, TRAEFIK_PORTS["websecure"]), 5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as s:
        return s.getpeercert(binary_form=True)


def wait_for_certificate(address: str, sni: str, ctx: ssl.SSLContext) -> x509.Certificate:
    """Traefik asks for the certificate once its routers exist: wait for a verified handshake
    (until then it serves its self-signed default, which `ctx` refuses)."""
    deadline, last = time.monotonic() + CERT_WAIT_SECONDS, ""
    while time.monotonic() < deadline:
        try:
            return x509.load_der_x509_certificate(handshake(address, sni, ctx))
        except (OSError, ssl.SSLError) as e:
            last = repr(e)
            time.sleep(2)
    raise AssertionError(f"{sni} ({address}): no certificate from the ACME server within "
                         f"{CERT_WAIT_SECONDS}s: {last}")


def test_every_app_host_serves_https_with_a_certificate_from_the_acme_server(
        deployed, testbed, pebble_root):
    ctx = client(pebble_root)
    for h in app_hosts(testbed):
        cert = wait_for_certificate(h.address, name_of(h), ctx)
        assert "Pebble" in cert.issuer.rfc4514_string(), (h.name, cert.issuer)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert names.value.get_values_for_type(x509.DNSName) == [name_of(h)], h.name
        status, headers, body, _ = https_get(h.address, name_of(h), HEALTH, ctx)
        assert status == 200 and json.loads(body)["service"] == "payments", (h.name, body)
        assert headers["strict-transport-security"] == \
            f"max-age={ENV.settings['tls']['hsts_seconds']}", (h.name, headers)
        assert headers["x-content-type-options"] == "nosniff", headers
        assert headers["x-frame-options"] == "DENY", headers
        assert headers["referrer-policy"] == "no-referrer", headers
        # the deny routers hold on HTTPS too
        status, _, _, _ = https_get(h.address, name_of(h), "/payments/internal/x", ctx)
        assert status == 404, h.name


def test_plain_http_redirects_to_https_except_the_balancers_plain_name(deployed, testbed):
    for h in app_hosts(testbed):
        conn = http.client.HTTPConnection(h.address, TRAEFIK_PORTS["web"], timeout=10)
        conn.request("GET", HEALTH, headers={"Host": name_of(h)})
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (301, 308), (h.name, resp.status)
        assert resp.getheader("Location") == f"https://{name_of(h)}{HEALTH}", h.name
        conn.close()
        # tls_plain_http_domains: the testbed balancer's plain hop still answers
        conn = http.client.HTTPConnection(h.address, TRAEFIK_PORTS["web"], timeout=10)
        conn.request("GET", HEALTH, headers={"Host": ENV.settings["api_domains"][0]})
        assert conn.getresponse().status == 200, h.name
        conn.close()


def handshake_error(address: str, sni: str, ctx: ssl.SSLContext) -> str | None:
    try:
        handshake(address, sni, ctx)
        return None
    except ssl.SSLError as e:
        return e.reason or str(e)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused_by_the_server_and_tls_1_2_accepted(deployed, testbed, pebble_root):
    h = app_hosts(testbed)[0]
    wait_for_certificate(h.address, name_of(h), client(pebble_root))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so this client offers TLS 1.1 at all
    # the server's alert, not a client-side refusal
    assert handshake_error(h.address, name_of(h), old) == "TLSV1_ALERT_PROTOCOL_VERSION"
    assert handshake_error(h.address, name_of(h),
                           client(pebble_root, ssl.TLSVersion.TLSv1_2)) is None


def vault_tls(testbed: Testbed, data: dict | None = None) -> dict:
    """The KV v2 data at the edge certificates' path (replaced by `data` when given)."""
    ref = ENV.edge_certificate_refs(ENV.host(app_hosts(testbed)[0].name))[VAULT_DOMAIN]
    url = f"{testbed.status['vault_addr']}/v1/{ENV.settings['vault']['mount']}/data/{ref.path}"
    req = urllib.request.Request(
        url, headers={"X-Vault-Token": testbed.status["vault_token"]},
        data=None if data is None else json.dumps({"data": data}).encode(),
        method="GET" if data is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["data"].get("data", {})


def vault_certificate(testbed: Testbed) -> str:
    return split_bundle(vault_tls(testbed)[VAULT_DOMAIN])[1]


def test_a_domain_with_a_vault_certificate_is_served_with_exactly_that_certificate(
        deployed, testbed):
    cert = vault_certificate(testbed)
    ctx = client(cert)
    for h in app_hosts(testbed):
        status, headers, _, der = https_get(h.address, VAULT_DOMAIN, HEALTH, ctx)
        assert status == 200, h.name
        assert der == ssl.PEM_cert_to_DER_cert(cert), h.name
        key = testbed.ssh(h, q("stat", "-c", "%a %u", f"{tls.CERTS_DIR}/{VAULT_DOMAIN}.key"))
        assert key.stdout.split() == ["600", str(tls.TRAEFIK_UID)], h.name


def test_a_new_vault_certificate_is_served_after_a_deploy_without_restarting_traefik(
        deployed, testbed):
    """The operator puts a new bundle in Vault and deploys: the edge unit writes the files,
    and Traefik (watching its dynamic directory, whose TLS file names the certificate's
    digest) serves the new certificate. Traefik is not restarted."""
    hosts = app_hosts(testbed)
    started = {h.name: testbed.ssh(h, q("docker", "inspect", "-f", "{{.State.StartedAt}}",
                                        "traefik")).stdout for h in hosts}
    data = vault_tls(testbed)
    data[VAULT_DOMAIN] = self_signed_bundle(VAULT_DOMAIN, [], [VAULT_DOMAIN])
    vault_tls(testbed, data)
    new = vault_certificate(testbed)
    res = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
                          "deploy.py"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    for h in hosts:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:  # verified against the new certificate only: the old one fails the handshake
                status, _, _, der = https_get(h.address, VAULT_DOMAIN, HEALTH, client(new))
                break
            except ssl.SSLCertVerificationError:
                time.sleep(1)
        else:
            raise AssertionError(f"{h.name} still serves the old {VAULT_DOMAIN} certificate")
        assert status == 200 and der == ssl.PEM_cert_to_DER_cert(new), h.name
        assert testbed.ssh(h, q("docker", "inspect", "-f", "{{.State.StartedAt}}",
                                "traefik")).stdout == started[h.name], h.name


def test_a_vault_certificate_for_another_name_is_refused_before_any_host_changes(
        deployed, testbed):
    h = app_hosts(testbed)[0]
    served = https_get(h.address, VAULT_DOMAIN, HEALTH, client(vault_certificate(testbed)))[3]
    original = vault_tls(testbed)
    vault_tls(testbed, {**original,
                        VAULT_DOMAIN: self_signed_bundle("x.example", [], ["x.example"])})
    try:
        res = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/local.py",
                              "deploy.py"], cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    finally:
        vault_tls(testbed, original)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    ref = ENV.edge_certificate_refs(ENV.host(h.name))[VAULT_DOMAIN]
    assert f"{ref}: the certificate names x.example, not {VAULT_DOMAIN}" in out, out[-3000:]
    assert "PRIVATE KEY" not in out
    assert https_get(h.address, VAULT_DOMAIN, HEALTH,
                     client(vault_certificate(testbed)))[3] == served


def test_the_acme_state_is_private_and_its_nightly_copy_works(deployed, testbed, pebble_root):
    h = app_hosts(testbed)[0]
    wait_for_certificate(h.address, name_of(h), client(pebble_root))
    modes = testbed.ssh(h, q("stat", "-c", "%a %u", tls.ACME_DIR, f"{tls.ACME_DIR}/acme.json"))
    assert modes.stdout.split() == ["700", str(tls.TRAEFIK_UID), "600", str(tls.TRAEFIK_UID)]
    cron = testbed.ssh(h, q("cat", tls.ACME_BACKUP_CRON)).stdout
    assert tls.acme_backup_command().replace("%", "\\%") in cron
    testbed.ssh(h, q("bash", "-c", tls.acme_backup_command()))  # what cron runs, unescaped
    copies = testbed.ssh(h, q("bash", "-c", f"stat -c '%a %s' {tls.ACME_BACKUP_DIR}/acme-*.json"
                                            f" && stat -c %a {tls.ACME_BACKUP_DIR}")).stdout
    mode, size, dir_mode = copies.split()[-3:]
    assert (mode, dir_mode) == ("600", "700") and int(size) > 100, copies
    account = testbed.ssh(h, q("bash", "-c", f"cat {tls.ACME_BACKUP_DIR}/acme-*.json | head -c "
                                             "100000")).stdout
    assert json.loads(account)[tls.RESOLVER]["Account"]["PrivateKey"], "no account key copied"


def test_traefik_renews_its_certificate_before_expiry_without_failing_a_request(
        deployed, testbed, pebble_root):
    """Pebble's 21-minute certificates are renewed by Traefik (measured: 4-5 minutes after
    issue), long before they expire. Under HTTPS load (new connections pick up the new one)."""
    ctx = client(pebble_root)
    h = app_hosts(testbed)[0]
    first = wait_for_certificate(h.address, name_of(h), ctx)
    target = Target(h.address, name_of(h), (HEALTH,), tls=ctx)
    # before expiry by definition; seven minutes bound the test (renewals come every ~5)
    left = first.not_valid_after_utc.timestamp() - time.time()
    deadline, renewed = time.monotonic() + min(left, 420), None
    with Load([target], rate=10, workers=2) as load:
        while time.monotonic() < deadline:
            cert = wait_for_certificate(h.address, name_of(h), ctx)
            if cert.serial_number != first.serial_number:
                renewed = cert
                break
            time.sleep(5)
        time.sleep(3)
    report = load.report
    print(f"renewal: {report.total} HTTPS requests, {len(report.failed)} failed")
    assert renewed is not None, f"{name_of(h)}: not renewed before {first.not_valid_after_utc}"
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert report.total > 50 and not report.failed, report.failures_by_kind()
