"""ops.render: exact production flags, routing by slot, secrets only in secret files, hashes,
golden files, and the 18th service as one catalog entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from ops.catalog.model import SecretRef
from ops.render import (
    MappingSecrets,
    PlaceholderSecrets,
    render_environment,
    render_host,
    service_content_hash,
)

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
CANARY = "canary-secret-"  # every secret value in these tests starts with this


class CanarySecrets:
    """Recognisable fake values, so a test can prove none leaks into a non-secret file."""

    def get(self, ref: SecretRef) -> str | None:
        if ref.kind == "url":
            return f"https://hooks.example.invalid/{CANARY}{ref.key}"
        if ref.kind == "email":
            return f"{CANARY}{ref.key.lower()}@example.invalid"
        if ref.kind == "hostport":
            return "smtp.example.invalid:587"
        return f"{CANARY}{ref.key}-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def prod(environments):
    return environments["prod"]


@pytest.fixture(scope="module")
def prod_files(prod):
    return render_environment(prod, PlaceholderSecrets())


def by_path(files):
    return {f.path: f for f in files}


def compose_services(files, service):
    return yaml.safe_load(by_path(files)[f"/opt/superapp/compose/{service}.yml"].content)


def test_prod_compose_has_every_spec_flag_for_every_service(prod, prod_files):
    for host in prod.hosts_with_role("app"):
        for service in prod.services.values():
            doc = compose_services(prod_files[host.name], service.name)
            main = doc["services"][service.name]
            env = main["environment"]
            assert env["APP_ENV"] == "prod"
            assert env["RATE_LIMIT_BACKEND"] == "redis"
            assert env["AUTO_CREATE_SCHEMA"] == "false"
            # Traefik, then the load balancers in front of it (upstream_proxies)
            assert env["UVICORN_EXTRA_ARGS"] == (
                "--proxy-headers --forwarded-allow-ips=172.30.0.2,10.10.9.10,10.10.9.11")
            assert env["ALLOWED_ORIGINS"] and "*" not in env["ALLOWED_ORIGINS"]
            if service.hmac_role != "none":
                assert 60 <= int(env["INTERNAL_HMAC_REPLAY_WINDOW"]) <= 300
            assert main["user"] == "10001:10001"
            assert main["restart"] == "unless-stopped"
            assert main["logging"] == {"driver": "json-file", "options": {
                "max-size": "10m", "max-file": "5",
                "labels": "superapp.service,superapp.slot,superapp.container"}}
            assert main["healthcheck"]["test"] == [
                "CMD", "busybox", "wget", "-q", "-O", "/dev/null",
                "http://127.0.0.1:8000/health"]
            assert main["healthcheck"]["interval"] == "10s"
            assert main["mem_limit"] == service.resources.memory
            assert main["security_opt"] == ["no-new-privileges:true"]
            assert main["env_file"] == [f"../../../etc/superapp/env/{service.name}.env"]
            image = main["image"]
            assert image.startswith("registry.superapp.internal:5000/superapp/")
            assert ":" in image.rsplit("/", 1)[1] and not image.endswith(":latest")
            assert "REDIS_URL" not in env and "DATABASE_URL" not in env  # passwords inside


def test_payments_flags(prod_files):
    env = compose_services(prod_files["app-2"], "payments")["services"]["payments"]["environment"]
    assert env["INTERNAL_REQUIRE_HMAC"] == "true"
    assert env["STARTING_CREDIT_CENTS"] == "0"


def test_env_file_holds_the_secret_urls(prod_files):
    content = by_path(prod_files["app-1"])["/etc/superapp/env/payments.env"].content
    keys = {line.split("=", 1)[0] for line in content.splitlines() if not line.startswith("#")}
    assert keys == {"JWT_SECRET", "DATABASE_URL", "INTERNAL_HMAC_SECRET",
                    "INTERNAL_HMAC_SECRET_PREVIOUS", "REDIS_URL", "SENTRY_DSN"}
    assert "<vault:superapp/prod/payments#JWT_SECRET>" in content


def test_no_wildcard_anywhere_in_origins_or_forwarded_ips(prod_files):
    for files in prod_files.values():
        for f in files:
            for line in f.content.splitlines():
                if "ALLOWED_ORIGINS" in line or "forwarded-allow-ips" in line:
                    assert "*" not in line, (f.path, line)


def test_beat_runs_exactly_once_in_the_environment(prod_files):
    beats = [host for host, files in prod_files.items()
             for f in files if f.path == "/opt/superapp/compose/payments.yml"
             and "beat" in yaml.safe_load(f.content)["services"]]
    assert beats == ["app-1"]
    beat = compose_services(prod_files["app-1"], "payments")["services"]["beat"]
    assert beat["profiles"] == ["singleton"]  # never started twice during a slot swap


def test_reaper_gets_the_admin_token_and_taxi_the_hash(prod):
    files = by_path(render_host(prod, "app-3", CanarySecrets()))
    reaper_env = files["/etc/superapp/env/taxi-reaper.env"].content
    taxi_env = files["/etc/superapp/env/taxi.env"].content
    assert f"TAXI_ADMIN_TOKEN='{CANARY}ADMIN_TOKEN-" in reaper_env
    assert "ADMIN_TOKEN_SHA256='" in taxi_env and f"{CANARY}ADMIN_TOKEN" not in taxi_env
    reaper = yaml.safe_load(files["/opt/superapp/compose/taxi.yml"].content)["services"]["reaper"]
    assert reaper["environment"]["TAXI_URL"] == "http://taxi-a:8000"
    assert reaper["env_file"] == ["../../../etc/superapp/env/taxi-reaper.env"]


def test_secret_values_only_in_secret_files(prod):
    for host in prod.hosts:
        for f in render_host(prod, host.name, CanarySecrets()):
            if f.secret:
                assert f.mode == 0o600, f.path
            else:
                assert CANARY not in f.content, f.path
                assert "<vault:" not in f.content, f.path
    assert "<secret>" in repr(next(f for f in render_host(prod, "db-1", CanarySecrets())
                                   if f.secret))


def test_alertmanager_file_is_secret_and_owned_by_its_process(prod_files):
    am = by_path(prod_files["mon-1"])["/opt/superapp/alertmanager/alertmanager.yml"]
    assert (am.secret, am.mode, am.owner) == (True, 0o600, 65534)


def test_slot_selects_containers_and_traefik_server(prod):
    files = by_path(render_host(prod, "app-1", PlaceholderSecrets(), slots={"taxi": "b"}))
    taxi = yaml.safe_load(files["/opt/superapp/compose/taxi.yml"].content)
    assert taxi["name"] == "sa-taxi-b"
    assert taxi["services"]["taxi"]["container_name"] == "taxi-b"
    assert taxi["services"]["reaper"]["container_name"] == "taxi-reaper-b"
    dynamic = yaml.safe_load(files["/opt/superapp/traefik/dynamic/taxi.yml"].content)
    servers = dynamic["http"]["services"]["taxi"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://taxi-b:8000"}]
    payments = yaml.safe_load(files["/opt/superapp/compose/payments.yml"].content)
    assert payments["name"] == "sa-payments-a"  # default slot


def test_traefik_routes_public_internal_and_never_the_api(prod_files):
    files = by_path(prod_files["app-1"])
    static = yaml.safe_load(files["/opt/superapp/traefik/traefik.yml"].content)
    assert "api" not in static
    for entry in ("web", "websecure"):
        assert static["entryPoints"][entry]["forwardedHeaders"]["trustedIPs"] == [
            "10.10.9.10", "10.10.9.11"]
    assert static["entryPoints"]["websecure"]["address"] == ":443"
    assert "certificatesResolvers" not in static  # prod's certificate comes from Vault
    assert static["providers"]["file"] == {"directory": "/etc/traefik/dynamic", "watch": True}
    assert static["accessLog"]["format"] == "json"
    assert static["metrics"]["prometheus"]["entryPoint"] == "traefik"
    routers = yaml.safe_load(files["/opt/superapp/traefik/dynamic/payments.yml"].content)[
        "http"]["routers"]
    assert "payments" not in routers  # no plain-HTTP route: `web` only redirects (_tls.yml)
    assert routers["payments-tls"]["entryPoints"] == ["websecure"]
    assert routers["payments-tls"]["rule"] == (
        "(Host(`api.superapp.sy`)) && (Path(`/payments`) || PathPrefix(`/payments/`))")
    assert routers["payments-tls"]["tls"] == {}  # the certificate store picks by SNI
    assert "hsts@file" in routers["payments-tls"]["middlewares"]
    edge_tls = yaml.safe_load(files["/opt/superapp/traefik/dynamic/_tls.yml"].content)
    assert edge_tls["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    assert edge_tls["tls"]["certificates"] == [
        {"certFile": "/etc/traefik/certs/api.superapp.sy.crt",
         "keyFile": "/etc/traefik/certs/api.superapp.sy.key"}]
    assert edge_tls["http"]["routers"]["to-https"]["rule"] == "PathPrefix(`/`)"
    key = files["/opt/superapp/traefik/certs/api.superapp.sy.key"]
    assert (key.mode, key.owner, key.secret) == (0o600, 65534, True)
    assert routers["payments-internal"]["entryPoints"] == ["internal"]
    assert "/_svc/payments/metrics" in routers["payments-internal"]["rule"]
    # service-to-service calls: every path, unchanged (no strip: the HMAC covers the path)
    assert routers["payments-internal-host"] == {
        "entryPoints": ["internal"], "rule": "Host(`payments.internal`)", "service": "payments"}
    assert all("internal" not in r["entryPoints"] or "_svc" in r["rule"]
               or r["rule"] == "Host(`payments.internal`)" for r in routers.values())


def test_internal_and_admin_apis_answer_404_on_the_public_entrypoint(prod, prod_files):
    for host in prod.hosts_with_role("app"):
        files = by_path(prod_files[host.name])
        for service in prod.services.values():
            http = yaml.safe_load(files[f"/opt/superapp/traefik/dynamic/{service.name}.yml"]
                                  .content)["http"]
            denied = http["routers"][f"{service.name}-private-denied-tls"]
            assert denied["entryPoints"] == ["websecure"]
            assert denied["priority"] == 100000  # above the public router's rule length
            assert denied["service"] == "noop@internal"  # never reaches the service
            for p in service.routes:
                for sub in ("internal", "admin"):
                    assert f"Path(`{p}/{sub}`) || PathPrefix(`{p}/{sub}/`)" in denied["rule"]
            assert "Host(`api.superapp.sy`)" in denied["rule"]
            # noop@internal answers 418: rewritten to a plain 404
            hsts, middleware = denied["middlewares"]  # HSTS on every HTTPS answer
            assert hsts == "hsts@file"
            assert http["middlewares"][middleware] == {"errors": {
                "status": ["418"], "statusRewrites": {"418": 404},
                "service": "noop@internal", "query": "/"}}
            host_router = http["routers"][f"{service.name}-internal-host"]
            assert host_router["rule"] == f"Host(`{service.dns_name}.internal`)"
            assert "middlewares" not in host_router


def test_callers_are_told_the_internal_url_of_the_verifier(prod, prod_files):
    for service in prod.services.values():
        env = compose_services(prod_files["app-1"], service.name)["services"][service.name][
            "environment"]
        if service.hmac_role == "caller":
            assert env["PAYMENTS_INTERNAL_URL"] == "http://payments.internal:8081"
        else:
            assert "PAYMENTS_INTERNAL_URL" not in env
    reaper = compose_services(prod_files["app-1"], "taxi")["services"]["reaper"]
    assert "PAYMENTS_INTERNAL_URL" not in reaper["environment"]  # own env, not taxi's


def test_edge_publishes_web_publicly_and_the_rest_privately(prod, prod_files):
    edge = yaml.safe_load(by_path(prod_files["app-2"])["/opt/superapp/compose/edge.yml"].content)
    traefik = edge["services"]["traefik"]
    assert traefik["ports"] == ["10.10.0.12:80:80", "10.10.0.12:443:443",
                                "10.10.0.12:8081:8081", "10.10.0.12:8082:8082"]
    # `<service>.internal` (port 8081) is this Traefik for every service the host runs
    assert traefik["networks"] == {"superapp": {
        "ipv4_address": "172.30.0.2",
        "aliases": [f"{s.dns_name}.internal" for s in prod.services.values()]}}
    assert "ai-gateway.internal" in traefik["networks"]["superapp"]["aliases"]
    # containers get addresses only from the upper half: Traefik's fixed .2 can't be taken
    assert edge["networks"]["superapp"]["ipam"]["config"] == [
        {"subnet": "172.30.0.0/24", "ip_range": "172.30.0.128/25"}]
    db_edge = yaml.safe_load(by_path(prod_files["db-1"])["/opt/superapp/compose/edge.yml"].content)
    assert list(db_edge["services"]) == ["node-exporter", "log-shipper"]  # no Traefik
    assert "ports" not in db_edge["services"]["log-shipper"]  # it only connects out


def test_prometheus_scrapes_every_service_on_every_host(prod, prod_files):
    config = yaml.safe_load(
        by_path(prod_files["mon-1"])["/opt/superapp/prometheus/prometheus.yml"].content)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service in prod.services:
        job = jobs[f"superapp-{service}"]
        assert job["metrics_path"] == f"/_svc/{service}/metrics"
        targets = [(sc["targets"][0], sc["labels"]["host"]) for sc in job["static_configs"]]
        assert targets == [("10.10.0.11:8081", "app-1"), ("10.10.0.12:8081", "app-2"),
                           ("10.10.0.13:8081", "app-3"), ("10.10.0.14:8081", "app-4")]
    assert len(jobs["node"]["static_configs"]) == 7  # 4 app, db, monitoring, backup
    assert len(jobs["traefik"]["static_configs"]) == 4


def test_grafana_dashboards_from_the_catalog(prod, prod_files):
    files = by_path(prod_files["mon-1"])
    boards = {Path(p).stem: json.loads(f.content) for p, f in files.items()
              if p.startswith("/opt/superapp/grafana/dashboards/")}
    assert set(boards) == {*prod.services, "taxi_wallet", "superapp_overview"}
    titles = [p["title"] for p in boards["bus"]["panels"]]
    assert titles == ["Requests per second", "Error rate (5xx)", "Latency p90 / p99",
                      "Requests per second by version"]
    assert len(boards["payments"]["panels"]) > len(titles)  # full dashboard
    exprs = [t["expr"] for t in boards["bus"]["panels"][2]["targets"]]
    assert any("histogram_quantile(0.90" in e for e in exprs)
    assert any("histogram_quantile(0.99" in e for e in exprs)


def test_rendering_is_deterministic(prod):
    one = render_environment(prod, PlaceholderSecrets())
    two = render_environment(prod, PlaceholderSecrets())
    assert [(f.path, f.content) for f in one["mon-1"]] == [(f.path, f.content)
                                                          for f in two["mon-1"]]


def test_content_hash_ignores_the_slot_and_follows_changes(prod, repo_copy):
    secrets = PlaceholderSecrets()
    digest = service_content_hash(prod, "taxi", "app-1", secrets)
    a = by_path(render_host(prod, "app-1", secrets))["/opt/superapp/compose/taxi.yml"].content
    b = by_path(render_host(prod, "app-1", secrets, slots={"taxi": "b"}))[
        "/opt/superapp/compose/taxi.yml"].content
    assert f"# superapp-config-hash: {digest}" in a and f"# superapp-config-hash: {digest}" in b
    rotated = MappingSecrets({str(r): "rotated-value" for r in prod.all_secret_refs()})
    assert service_content_hash(prod, "taxi", "app-1", rotated) != digest
    repo_copy.append("group_data/prod.py", 'image_tags = {"taxi": "2025.12.0"}')
    assert service_content_hash(repo_copy.load(), "taxi", "app-1", secrets) != digest
    assert (service_content_hash(repo_copy.load(), "chat", "app-1", secrets)
            == service_content_hash(prod, "chat", "app-1", secrets))


def test_missing_required_secret_names_it_without_a_value(prod):
    with pytest.raises(KeyError, match=r"superapp/prod/shared/tls#api\.superapp\.sy'$"):
        render_host(prod, "app-1", MappingSecrets({}))  # the edge certificate, first in order


def test_an_eighteenth_service_is_one_catalog_entry(repo_copy):
    repo_copy.append("ops/catalog/services.yml", """
  pharmacy:
    image: superapp/pharmacy
    database: pharmacy
    schema_bootstrap_command: [python, -m, app.create_schema]
    hmac_role: caller
    routes: [/pharmacy]
""")
    environment = repo_copy.load("prod")
    files = render_environment(environment, PlaceholderSecrets())
    app = by_path(files["app-4"])
    compose = yaml.safe_load(app["/opt/superapp/compose/pharmacy.yml"].content)
    assert compose["services"]["pharmacy"]["image"].endswith("/superapp/pharmacy:2025.11.1")
    assert "INTERNAL_HMAC_SECRET=" in app["/etc/superapp/env/pharmacy.env"].content.replace("'", "")
    assert "http://pharmacy-a:8000" in app["/opt/superapp/traefik/dynamic/pharmacy.yml"].content
    mon = by_path(files["mon-1"])
    assert "/_svc/pharmacy/metrics" in mon["/opt/superapp/prometheus/prometheus.yml"].content
    assert "/opt/superapp/grafana/dashboards/pharmacy.json" in mon
    assert "pharmacy" in mon["/opt/superapp/grafana/dashboards/superapp_overview.json"].content
    db = by_path(files["db-1"])
    assert "SUPERAPP_DB_PASSWORD" not in db["/etc/superapp/env/postgres.env"].content
    provision = db["/etc/superapp/postgres/provision.sql"]
    assert "CREATE DATABASE %I OWNER %I', 'pharmacy', 'pharmacy'" in provision.content
    assert 'ALTER ROLE "pharmacy" WITH LOGIN PASSWORD' in provision.content
    assert any(r.path == "superapp/prod/pharmacy" for r in environment.all_secret_refs())


@pytest.mark.parametrize(("host", "path"), [
    ("host1", "/opt/superapp/compose/payments.yml"),
    ("host1", "/opt/superapp/compose/taxi.yml"),
    ("host1", "/opt/superapp/compose/edge.yml"),
    ("host1", "/opt/superapp/compose/data.yml"),
    ("host2", "/opt/superapp/traefik/traefik.yml"),
    ("host2", "/opt/superapp/traefik/dynamic/taxi.yml"),
    ("host2", "/etc/superapp/env/taxi.env"),
    ("host3", "/opt/superapp/compose/monitoring.yml"),
    ("host3", "/opt/superapp/prometheus/prometheus.yml"),
    ("host3", "/opt/superapp/prometheus/rules/alerts.yml"),
    ("host3", "/opt/superapp/prometheus/rules/watch.yml"),
    ("host1", "/opt/superapp/monitoring/sidecar_metrics.sh"),
    ("host3", "/opt/superapp/alertmanager/alertmanager.yml"),
    ("host3", "/opt/superapp/grafana/dashboards/taxi_wallet.json"),
])
def test_golden_files_for_the_local_environment(environments, host, path):
    """Exact output for the testbed env; `UPDATE_GOLDEN=1 pytest ...` rewrites them."""
    content = by_path(render_host(environments["local"], host, PlaceholderSecrets()))[path].content
    golden = GOLDEN / "local" / host / path.lstrip("/")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(content)
    assert content == golden.read_text()


def test_internal_aliases_follow_placement(repo_copy):
    repo_copy.append("group_data/prod.py", 'placement = {"chat": ["app-1"]}')
    files = render_environment(repo_copy.load("prod"), PlaceholderSecrets())

    def aliases(host):
        edge = yaml.safe_load(by_path(files[host])["/opt/superapp/compose/edge.yml"].content)
        return edge["services"]["traefik"]["networks"]["superapp"]["aliases"]
    assert "chat.internal" in aliases("app-1")
    assert "chat.internal" not in aliases("app-2") and "payments.internal" in aliases("app-2")


def test_a_sidecar_health_command_keeps_its_dollar_for_the_container(environments):
    """Compose would replace `$HOSTNAME` with the deploying shell's value (or nothing): the
    worker's health command must reach the container as `$HOSTNAME`, so the file says `$$`."""
    prod = environments["prod"]
    host = prod.hosts_running("payments")[0].name
    compose = yaml.safe_load(by_path(render_host(prod, host, PlaceholderSecrets()))[
        "/opt/superapp/compose/payments.yml"].content)
    worker = next(c for n, c in compose["services"].items() if n == "worker")
    test = worker["healthcheck"]["test"]
    assert test[:3] == ["CMD", "sh", "-c"]
    assert 'celery@$$HOSTNAME' in test[3] and "$HOSTNAME" not in test[3].replace("$$", "")


def test_a_new_vault_certificate_changes_the_watched_tls_file(prod):
    """Traefik watches only its dynamic directory: a new certificate must change a file there
    (its digest in _tls.yml), or Traefik would keep serving the old one."""
    from ops.render.secrets import MappingSecrets
    from ops.render.tls import DYNAMIC_FILE, render_files
    from ops.secrets.tls import self_signed_bundle

    host = prod.host("app-1")
    [ref] = prod.edge_certificate_refs(host).values()

    def tls_file(bundle: str) -> str:
        files = render_files(prod, host, MappingSecrets({str(ref): bundle}))
        return next(f.content for f in files if f.path == DYNAMIC_FILE)

    old, new = (self_signed_bundle("api.superapp.sy", [], ["api.superapp.sy"]) for _ in "ab")
    assert tls_file(old) == tls_file(old)
    assert tls_file(old) != tls_file(new)
    assert "PRIVATE KEY" not in tls_file(old)
