"""ops/audit/rendered.py: every invariant broken once, in group_data (a RepoCopy) or, where
group_data cannot express the break, in the rendered text itself."""

from __future__ import annotations

import dataclasses

import pytest

from ops.audit import known_rules, run_audit
from ops.audit.rendered import audit_rendered, image_problem, parse_rule, rule_matches
from ops.catalog import ConfigError, load_environment
from ops.render import PlaceholderSecrets, render_environment

# Accepted by design (ops/audit/rendered.py ROOT_ALLOWED): reported as LOW, never blocking.
ACCEPTED = [("low", "db-1 postgres /opt/superapp/compose/data.yml:5")]
EDGE = "/opt/superapp/compose/edge.yml"
ROOT_USER = 'user: "0:0"'  # the log shipper's (ops/render/logs.py): accepted, on every host


@pytest.fixture(scope="module")
def prod():
    return load_environment("prod")


@pytest.fixture
def rendered(prod):
    return render_environment(prod, PlaceholderSecrets())


def edit(rendered: dict, host: str, path: str, old: str, new: str, count: int = 1) -> None:
    """Replace `old` by `new` in one rendered file (exactly `count` occurrences must exist)."""
    files = rendered[host]
    for i, f in enumerate(files):
        if f.path == path:
            assert f.content.count(old) == count, f"{old!r} x{f.content.count(old)} in {path}"
            files[i] = dataclasses.replace(f, content=f.content.replace(old, new))
            return
    raise AssertionError(f"{path} not rendered on {host}")


def line_of(rendered: dict, host: str, path: str, needle: str) -> int:
    """1-based line of the first line of a rendered file that contains `needle`."""
    text = next(f.content for f in rendered[host] if f.path == path)
    return next(i for i, ln in enumerate(text.splitlines(), start=1) if needle in ln)


def findings(prod, rendered, rule: str) -> list:
    return [f for f in audit_rendered(prod, rendered) if f.rule == rule]


def test_prod_rendered_config_passes_every_rule(prod, rendered):
    """The real prod rendering: nothing but the accepted root postgres and log shippers and,
    informational, the services whose schema comes from the one-off bootstrap job (an
    invariant to keep; the rule tests below break a copy on purpose instead of relying on
    today's findings)."""
    found = audit_rendered(prod, rendered)
    bootstrap = [f for f in found if f.rule == "rendered.schema-bootstrap"]
    assert sorted((f.rule, f.severity, f.where) for f in found if f not in bootstrap) == sorted(
        [("rendered.non-root", *ACCEPTED[0])]
        + [("rendered.non-root", "low",
            f"{h.name} log-shipper {EDGE}:{line_of(rendered, h.name, EDGE, ROOT_USER)}")
           for h in prod.hosts])
    assert all("accepted" in f.message for f in found if f.rule == "rendered.non-root")
    assert sorted(f.key for f in bootstrap) == sorted(
        f"services.{n}" for n, s in prod.services.items() if not s.migrate_command)
    assert {f.severity for f in bootstrap} == {"low"}
    assert "tasks/bootstrap_schema.py --data service=food" in next(
        f.fix for f in bootstrap if f.key == "services.food")


def test_hmac_off_on_payments(prod, rendered):
    edit(rendered, "app-2", "/opt/superapp/compose/payments.yml",
         'INTERNAL_REQUIRE_HMAC: "true"', 'INTERNAL_REQUIRE_HMAC: "false"', count=2)
    [found] = findings(prod, rendered, "rendered.hmac-required")
    path = "/opt/superapp/compose/payments.yml"
    line = line_of(rendered, "app-2", path, "INTERNAL_REQUIRE_HMAC")
    assert found.where == f"app-2 payments {path}:{line} INTERNAL_REQUIRE_HMAC"
    assert "'false'" in found.message and found.severity == "high"


def test_caller_without_signing_secret(prod, rendered):
    env = "/etc/superapp/env/commerce.env"
    text = next(f.content for f in rendered["app-3"] if f.path == env)
    line = next(ln for ln in text.splitlines() if ln.startswith("INTERNAL_HMAC_SECRET="))
    edit(rendered, "app-3", env, line + "\n", "")
    [found] = findings(prod, rendered, "rendered.hmac-secret")
    assert found.where.startswith("app-3 commerce /opt/superapp/compose/commerce.yml:")
    assert "commerce" in found.message and "INTERNAL_HMAC_SECRET" in found.message


def test_replay_window_out_of_range_in_rendered_text(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/taxi.yml",
         'INTERNAL_HMAC_REPLAY_WINDOW: "120"', 'INTERNAL_HMAC_REPLAY_WINDOW: "900"')
    [found] = findings(prod, rendered, "rendered.hmac-replay-window")
    path = "/opt/superapp/compose/taxi.yml"
    line = line_of(rendered, "app-1", path, "INTERNAL_HMAC_REPLAY_WINDOW")
    assert found.where == f"app-1 taxi {path}:{line} INTERNAL_HMAC_REPLAY_WINDOW"


def test_replay_window_in_group_data_is_refused_by_the_loader(repo_copy):
    repo_copy.append("group_data/prod.py", "hmac_replay_window_seconds = 900")
    with pytest.raises(ConfigError, match=r"group_data/prod.py: hmac_replay_window_seconds: "
                                          r"must be <= 300"):
        repo_copy.load()
    report = run_audit("prod", root=repo_copy.root, repo=False)
    assert [f.where for f in report.blocking] == ["group_data/prod.py"]
    assert "hmac_replay_window_seconds" in report.blocking[0].message


def test_rate_limit_not_on_redis(prod, rendered):
    edit(rendered, "app-4", "/opt/superapp/compose/food.yml",
         'RATE_LIMIT_BACKEND: "redis"', 'RATE_LIMIT_BACKEND: "memory"')
    [found] = findings(prod, rendered, "rendered.rate-limit-redis")
    path = "/opt/superapp/compose/food.yml"
    line = line_of(rendered, "app-4", path, "RATE_LIMIT_BACKEND")
    assert found.where == f"app-4 food {path}:{line} RATE_LIMIT_BACKEND"


def test_missing_redis_url(prod, rendered):
    env = "/etc/superapp/env/bus.env"
    text = next(f.content for f in rendered["app-1"] if f.path == env)
    line = next(ln for ln in text.splitlines() if ln.startswith("REDIS_URL="))
    edit(rendered, "app-1", env, line + "\n", "")
    [found] = findings(prod, rendered, "rendered.redis-url")
    assert found.where.startswith("app-1 bus /opt/superapp/compose/bus.yml:")
    assert "REDIS_URL" in found.message


def test_wildcard_origin_in_rendered_text(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/chat.yml",
         'ALLOWED_ORIGINS: "https://app.superapp.sy,https://admin.superapp.sy"',
         'ALLOWED_ORIGINS: "*"')
    [found] = findings(prod, rendered, "rendered.allowed-origins")
    path = "/opt/superapp/compose/chat.yml"
    line = line_of(rendered, "app-1", path, "ALLOWED_ORIGINS")
    assert found.where == f"app-1 chat {path}:{line} ALLOWED_ORIGINS"


def test_wildcard_origin_in_group_data_is_refused_by_the_loader(repo_copy):
    repo_copy.append("group_data/prod.py", 'allowed_origins = {"payments": ["*"]}')
    with pytest.raises(ConfigError) as exc:
        repo_copy.load()
    assert "group_data/prod.py: allowed_origins.payments: '*' is not allowed" in str(exc.value)
    report = run_audit("prod", root=repo_copy.root, repo=False)
    assert {f.rule for f in report.blocking} == {"config.invalid"}


def test_forwarded_allow_ips_wildcard(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/stays.yml",
         "--forwarded-allow-ips=172.30.0.2", "--forwarded-allow-ips=*")
    [found] = findings(prod, rendered, "rendered.proxy-headers")
    path = "/opt/superapp/compose/stays.yml"
    line = line_of(rendered, "app-1", path, "UVICORN_EXTRA_ARGS")
    assert found.where == f"app-1 stays {path}:{line} UVICORN_EXTRA_ARGS"
    assert "trusts everyone" in found.message


def test_forwarded_allow_ips_not_the_proxy(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/stays.yml",
         "--proxy-headers --forwarded-allow-ips=172.30.0.2", "--forwarded-allow-ips=10.0.0.9")
    [found] = findings(prod, rendered, "rendered.proxy-headers")
    assert "no --proxy-headers" in found.message and "not the proxy address" in found.message


def test_forwarded_allow_ips_without_the_load_balancers(prod, rendered):
    """Traefik appends the balancer's address: a service trusting Traefik only sees the LB."""
    edit(rendered, "app-1", "/opt/superapp/compose/stays.yml",
         "--forwarded-allow-ips=172.30.0.2,10.10.9.10,10.10.9.11",
         "--forwarded-allow-ips=172.30.0.2")
    [found] = findings(prod, rendered, "rendered.proxy-headers")
    assert found.message == (
        "UVICORN_EXTRA_ARGS on stays: --forwarded-allow-ips=172.30.0.2 is not the proxy "
        "addresses (Traefik, then upstream_proxies: 10.10.9.10,10.10.9.11,172.30.0.2)")


def test_auto_create_schema_true(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/doctors.yml",
         'AUTO_CREATE_SCHEMA: "false"', 'AUTO_CREATE_SCHEMA: "true"')
    [found] = findings(prod, rendered, "rendered.auto-create-schema")
    path = "/opt/superapp/compose/doctors.yml"
    line = line_of(rendered, "app-1", path, "AUTO_CREATE_SCHEMA")
    assert found.where == f"app-1 doctors {path}:{line} AUTO_CREATE_SCHEMA"


def test_starting_credit_in_rendered_text(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/payments.yml",
         'STARTING_CREDIT_CENTS: "0"', 'STARTING_CREDIT_CENTS: "500"', count=3)
    found = findings(prod, rendered, "rendered.starting-credit")
    path = "/opt/superapp/compose/payments.yml"
    line = line_of(rendered, "app-1", path, "STARTING_CREDIT_CENTS")
    assert found[0].where == f"app-1 payments {path}:{line} STARTING_CREDIT_CENTS"


def test_starting_credit_in_group_data(repo_copy):
    repo_copy.append("group_data/prod.py", "starting_credit_cents = 500")
    with pytest.raises(ConfigError, match="group_data/prod.py: starting_credit_cents: must be 0"):
        repo_copy.load()
    repo_copy.append("group_data/prod.py", "promo_enabled = True")
    report = run_audit("prod", root=repo_copy.root, repo=False)
    assert not [f for f in report.findings if f.rule == "rendered.starting-credit"]


def test_plaintext_admin_token(prod, rendered):
    env = "/etc/superapp/env/taxi.env"
    text = next(f.content for f in rendered["app-1"] if f.path == env)
    line = next(ln for ln in text.splitlines() if ln.startswith("ADMIN_TOKEN_SHA256="))
    edit(rendered, "app-1", env, line, "ADMIN_TOKEN='plain'")
    found = findings(prod, rendered, "rendered.admin-token-hashed")
    block = line_of(rendered, "app-1", "/opt/superapp/compose/taxi.yml", "environment:")
    assert [f.where for f in found] == [
        f"app-1 taxi {env}:{line_of(rendered, 'app-1', env, 'ADMIN_TOKEN=')} ADMIN_TOKEN",
        f"app-1 taxi /opt/superapp/compose/taxi.yml:{block} ADMIN_TOKEN_SHA256",
    ]


@pytest.mark.parametrize(("tag", "problem"), [
    ("latest", "tag 'latest' floats"), ("3", "floating major/minor"),
    ("stable", "tag 'stable' floats"), (None, "has no tag"),
])
def test_unpinned_image_in_rendered_text(prod, rendered, tag, problem):
    new = "superapp/commerce" + (f":{tag}" if tag else "")
    edit(rendered, "app-2", "/opt/superapp/compose/commerce.yml",
         "superapp/commerce:2025.11.1", new)
    found = [f for f in findings(prod, rendered, "rendered.image-pinned")
             if "commerce" in f.where]
    assert [f.where for f in found] == ["app-2 commerce /opt/superapp/compose/commerce.yml:7"]
    assert problem in found[0].message


def test_floating_tag_in_group_data_is_caught_by_the_audit_not_the_loader(repo_copy):
    repo_copy.append("group_data/prod.py", 'image_tags = {"freight": "3"}')
    repo_copy.load()  # the loader only refuses 'latest'
    report = run_audit("prod", root=repo_copy.root, repo=False)
    freight = [f for f in report.blocking if f.rule == "rendered.image-pinned"
               and "freight" in f.where]
    assert len(freight) == 4  # one per app host
    assert freight[0].where == "app-1 freight /opt/superapp/compose/freight.yml:7"


def test_latest_in_group_data_is_refused_by_the_loader(repo_copy):
    repo_copy.append("group_data/prod.py", 'default_image_tag = "latest"')
    with pytest.raises(ConfigError, match="group_data/prod.py: default_image_tag: 'latest'"):
        repo_copy.load()


def test_image_problem_accepts_versions_and_digests():
    assert image_problem("r:5000/superapp/x:2025.11.1") is None
    assert image_problem("r/x:3.7.15") is None
    assert image_problem("r/x@sha256:" + "a" * 64) is None
    assert image_problem("r:5000/x:15") is not None


def test_root_container(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/bus.yml", '    user: "10001:10001"\n', "")
    [found] = [f for f in findings(prod, rendered, "rendered.non-root") if f.severity == "high"]
    path = "/opt/superapp/compose/bus.yml"
    assert found.where == f"app-1 bus {path}:{line_of(rendered, 'app-1', path, '  bus:')}"


def test_unbounded_logs(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/compose/bus.yml",
         '"options": {"max-size": "10m", "max-file": "5", "labels": '
         '"superapp.service,superapp.slot,superapp.container"}', '"options": {}')
    [found] = findings(prod, rendered, "rendered.bounded-logs")
    path = "/opt/superapp/compose/bus.yml"
    assert found.where == f"app-1 bus {path}:{line_of(rendered, 'app-1', path, 'logging:')}"


def test_service_not_scraped(prod, rendered):
    edit(rendered, "mon-1", "/opt/superapp/prometheus/prometheus.yml",
         '      - targets: ["10.10.0.13:8081"]\n'
         '        labels: {tier: "service", service: "taxi", host: "app-3"}\n', "")
    [found] = findings(prod, rendered, "rendered.metrics-scraped")
    assert found.where == "app-3 taxi /opt/superapp/prometheus/prometheus.yml"
    assert "taxi on app-3" in found.message


def without_backups(rendered: dict) -> None:
    """Drop the rendered backup unit (ops/render/backup.py) from every host."""
    for host, files in rendered.items():
        rendered[host] = [f for f in files if f.unit != "backup"]


def test_backup_rule_passes_on_the_rendered_backup_unit(prod, rendered):
    assert any(f.path.startswith("/etc/cron.d/superapp-backup-") for f in rendered["db-1"])
    assert findings(prod, rendered, "rendered.backup-coverage") == []


def test_backup_rule_reports_high_without_backup_jobs(prod, rendered):
    without_backups(rendered)
    [found] = findings(prod, rendered, "rendered.backup-coverage")
    assert found.severity == "high" and "17 database(s)" in found.message
    assert found.key == "rendered.backup-coverage:prod"


def test_backup_rule_names_an_uncovered_database(prod, rendered):
    files = rendered["db-1"]
    rendered["db-1"] = [f for f in files if f.path != "/etc/cron.d/superapp-backup-chat"]
    edit(rendered, "db-1", "/opt/superapp/backup/pg_backup.sh", " chat ", " ")
    [found] = findings(prod, rendered, "rendered.backup-coverage")
    assert found.message == "database chat is not covered by any backup job"
    assert found.key == "rendered.backup-coverage:chat"


def test_backup_rule_reports_a_cron_job_whose_script_is_not_rendered(prod, rendered):
    rendered["db-1"] = [f for f in rendered["db-1"]
                        if f.path != "/opt/superapp/backup/pg_backup.sh"]
    found = findings(prod, rendered, "rendered.backup-coverage")
    assert len(found) == 17
    assert all("runs /opt/superapp/backup/pg_backup.sh, which is not rendered on db-1"
               in f.message for f in found)


def test_backup_rule_accepts_the_documented_layout(prod, rendered):
    from ops.render import RenderedFile
    without_backups(rendered)
    dbs = sorted(s.database for s in prod.services.values())
    script = "#!/bin/sh\nfor db in " + " ".join(d for d in dbs if d != "chat") + "; do :; done\n"
    rendered["db-1"] += [
        RenderedFile("/opt/superapp/backup/pg_backup.sh", script, mode=0o755),
        RenderedFile("/etc/cron.d/superapp-backup-all",
                     "# nightly\nSHELL=/bin/sh\n"
                     "15 2 * * * root /opt/superapp/backup/pg_backup.sh\n"),
    ]
    found = findings(prod, rendered, "rendered.backup-coverage")
    assert [(f.message, f.where.split(" ")[0]) for f in found] == [
        ("database chat is not covered by any backup job", "app-1")]


def test_two_celery_beats(prod, rendered):
    edit(rendered, "app-2", "/opt/superapp/compose/payments.yml",
         '"worker", "--loglevel=INFO"', '"beat", "--loglevel=INFO"')
    [found] = findings(prod, rendered, "rendered.celery-beat-singleton")
    assert "2 Celery beat containers" in found.message
    assert "app-1 payments" in found.where and "app-2 payments" in found.where


def test_traefik_dashboard_and_trusted_ips(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/traefik/traefik.yml",
         "ping:\n", "api:\n  dashboard: true\nping:\n")
    edit(rendered, "app-1", "/opt/superapp/traefik/traefik.yml",
         'trustedIPs: ["10.10.9.10", "10.10.9.11"]', 'trustedIPs: ["0.0.0.0/0"]', count=2)
    api = findings(prod, rendered, "rendered.traefik-api")
    ips = findings(prod, rendered, "rendered.traefik-trusted-ips")
    path = "/opt/superapp/traefik/traefik.yml"
    assert [f.where for f in api] == [f"app-1 {path}:{line_of(rendered, 'app-1', path, 'api:')}"]
    text = next(f.content for f in rendered["app-1"] if f.path == path).splitlines()
    lines = [i for i, ln in enumerate(text, start=1) if "forwardedHeaders:" in ln]
    assert [f.where for f in ips] == [f"app-1 {path}:{n}" for n in lines]  # web, websecure
    assert [f.message.split(".")[1] for f in ips] == ["web", "websecure"]


def test_every_public_router_has_the_edge_limits(prod, rendered):
    assert findings(prod, rendered, "rendered.edge-limits") == []
    path = "/opt/superapp/traefik/dynamic/taxi.yml"
    edit(rendered, "app-2", path, '"taxi-rate-limit", "taxi-body-limit", ', "")
    edit(rendered, "app-2", "/opt/superapp/traefik/dynamic/chat.yml",
         "maxRequestBodyBytes: 1048576", "memRequestBodyBytes: 1048576\n        x: 1")
    found = findings(prod, rendered, "rendered.edge-limits")
    assert [(f.where, f.message) for f in found] == [
        ("app-2 /opt/superapp/traefik/dynamic/chat.yml:"
         f"{line_of(rendered, 'app-2', '/opt/superapp/traefik/dynamic/chat.yml', 'chat-tls:')}",
         "public router chat-tls lacks: request body limit"),
        (f"app-2 {path}:{line_of(rendered, 'app-2', path, '    taxi-tls:')}",
         "public router taxi-tls lacks: per-client rate limit, request body limit")]


PAYMENTS_DYNAMIC = "/opt/superapp/traefik/dynamic/payments.yml"
DENY = ('priority: 100000\n      middlewares: ["hsts@file", "payments-not-found"]\n'
        '      service: "noop@internal"')


def test_internal_api_denied_on_web_for_every_service_and_prefix(prod, rendered):
    """Silent on the real rendering: every route prefix of every service, on every app host,
    has its /internal/ and /admin/ taken by a deny router."""
    assert findings(prod, rendered, "rendered.internal-api-public") == []
    assert "rendered.internal-api-public" in known_rules()


def test_internal_api_public_when_the_deny_router_is_missing(prod, rendered):
    edit(rendered, "app-1", PAYMENTS_DYNAMIC,
         'payments-private-denied-tls:\n      entryPoints: ["websecure"]',
         'payments-private-denied-tls:\n      entryPoints: ["internal"]')
    found = findings(prod, rendered, "rendered.internal-api-public")
    public_line = line_of(rendered, "app-1", PAYMENTS_DYNAMIC, "    payments-tls:")
    assert [(f.severity, f.where, f.key) for f in found] == [
        ("high", f"app-1 {PAYMENTS_DYNAMIC}:{public_line}", "app-1:payments:/payments/internal/"),
        ("high", f"app-1 {PAYMENTS_DYNAMIC}:{public_line}", "app-1:payments:/payments/admin/")]
    assert "router payments-tls on entrypoint websecure" in found[0].message
    assert "noop@internal" in found[0].fix


def test_internal_api_public_when_the_deny_router_loses_on_priority(prod, rendered):
    edit(rendered, "app-2", PAYMENTS_DYNAMIC, DENY, DENY.replace("100000", "10"))
    found = findings(prod, rendered, "rendered.internal-api-public")
    assert [f.key for f in found] == ["app-2:payments:/payments/internal/",
                                      "app-2:payments:/payments/admin/"]


def test_internal_api_public_when_one_subpath_is_not_denied(prod, rendered):
    edit(rendered, "app-3", PAYMENTS_DYNAMIC,
         " || Path(`/payments/admin`) || PathPrefix(`/payments/admin/`)", "")
    [found] = findings(prod, rendered, "rendered.internal-api-public")
    assert found.key == "app-3:payments:/payments/admin/"


def test_internal_api_public_when_the_deny_router_forwards_to_the_service(prod, rendered):
    edit(rendered, "app-1", PAYMENTS_DYNAMIC, DENY, DENY.replace('"noop@internal"', '"payments"'))
    found = findings(prod, rendered, "rendered.internal-api-public")
    deny_line = line_of(rendered, "app-1", PAYMENTS_DYNAMIC, "payments-private-denied-tls:")
    assert {f.where for f in found} == {f"app-1 {PAYMENTS_DYNAMIC}:{deny_line}"}
    assert len(found) == 2


def test_internal_api_public_when_the_deny_router_names_a_missing_middleware(prod, rendered):
    """Traefik drops such a router: the public one takes the request."""
    edit(rendered, "app-1", PAYMENTS_DYNAMIC, DENY,
         DENY.replace('"payments-not-found"]', '"payments-not-fuond"]'))
    assert len(findings(prod, rendered, "rendered.internal-api-public")) == 2


def test_internal_api_public_through_a_router_of_another_file(prod, rendered):
    """Traefik merges every dynamic file: a stronger router elsewhere wins, whatever its Host."""
    edit(rendered, "app-2", "/opt/superapp/traefik/dynamic/bus.yml", "  middlewares:\n",
         "    bus-greedy:\n      entryPoints: [\"web\"]\n"
         "      rule: \"PathPrefix(`/payments/internal/`)\"\n      priority: 200000\n"
         "      service: \"bus\"\n  middlewares:\n")
    [found] = findings(prod, rendered, "rendered.internal-api-public")
    assert found.key == "app-2:payments:/payments/internal/"
    assert found.where.startswith("app-2 /opt/superapp/traefik/dynamic/bus.yml:")
    assert "router bus-greedy" in found.message


def test_internal_api_deny_to_a_service_without_servers_is_accepted(prod, rendered):
    edit(rendered, "app-1", PAYMENTS_DYNAMIC, DENY,
         DENY.replace('"noop@internal"', '"payments-nowhere"'))
    edit(rendered, "app-1", PAYMENTS_DYNAMIC, "  services:\n",
         "  services:\n    payments-nowhere:\n      loadBalancer:\n        servers: []\n")
    assert findings(prod, rendered, "rendered.internal-api-public") == []


def test_internal_api_public_through_an_encoded_slash(prod, rendered):
    path = "/opt/superapp/traefik/traefik.yml"
    edit(rendered, "app-4", path, "allowEncodedSlash: false", "allowEncodedSlash: true", count=2)
    web, websecure = findings(prod, rendered, "rendered.internal-api-public")
    assert web.where == f"app-4 {path}:{line_of(rendered, 'app-4', path, '  web:')}"
    assert websecure.where == f"app-4 {path}:{line_of(rendered, 'app-4', path, '  websecure:')}"
    assert "(allowEncodedSlash not false)" in web.message


@pytest.mark.parametrize(("rule", "host", "path", "unknown", "expected"), [
    ("(Host(`a.b`)) && (Path(`/p`) || PathPrefix(`/p/`))", "A.B", "/p/x", False, True),
    ("(Host(`a.b`)) && (Path(`/p`) || PathPrefix(`/p/`))", "c.d", "/p/x", True, False),
    ('PathPrefix("/p/") && !Header(`X-A`, `1`)', "h", "/p/x", True, True),
    ('PathPrefix("/p/") && !Header(`X-A`, `1`)', "h", "/p/x", False, False),
    ("HostRegexp(`^.+\\.b$`) && PathRegexp(`^/p/(internal|admin)/`)", "a.b", "/p/admin/x",
     False, True),
    ("Method(`POST`) && PathPrefix(`/p/`)", "h", "/p/x", True, False),
])
def test_router_rules_are_matched_like_traefik(rule, host, path, unknown, expected):
    assert rule_matches(parse_rule(rule), host, path, unknown) is expected


@pytest.mark.parametrize("rule", ["Host(`a`", "Host(`a`) &&", "(Path(`/a`)", "Path(/a)"])
def test_unreadable_router_rules_are_refused(rule):
    with pytest.raises((ValueError, IndexError)):
        parse_rule(rule)


def test_wide_upstream_proxies_are_refused_by_the_loader(repo_copy):
    repo_copy.append("group_data/prod.py", 'upstream_proxies = ["0.0.0.0/0"]')
    with pytest.raises(ConfigError, match=r"group_data/prod.py: upstream_proxies.0: "):
        repo_copy.load()


def test_secret_file_mode_and_secret_in_plain_file(prod, rendered):
    files = rendered["app-1"]
    for i, f in enumerate(files):
        if f.path == "/etc/superapp/env/food.env":
            files[i] = dataclasses.replace(f, mode=0o644)
    edit(rendered, "app-1", "/opt/superapp/compose/food.yml",
         'PORT: "8000"',
         'PORT: "8000"\n      DB_PASSWORD: "<vault:superapp/prod/food#DB_PASSWORD>"')
    mode = findings(prod, rendered, "rendered.secret-file-mode")
    plain = findings(prod, rendered, "rendered.secret-in-plain-file")
    assert [f.where for f in mode] == ["app-1 /etc/superapp/env/food.env"]
    path = "/opt/superapp/compose/food.yml"
    assert [f.where for f in plain] == [
        f"app-1 {path}:{line_of(rendered, 'app-1', path, 'DB_PASSWORD')}"]
    assert "<vault:" not in plain[0].message


def test_invalid_rendered_yaml(prod, rendered):
    edit(rendered, "app-1", "/opt/superapp/traefik/dynamic/bus.yml", "http:\n", "http: [\n")
    [found] = findings(prod, rendered, "rendered.invalid-yaml")
    assert found.where.startswith("app-1 /opt/superapp/traefik/dynamic/bus.yml:")


def test_local_relaxation_downgrades_only_stand_in_images():
    report = run_audit("local", repo=False)
    relaxed = [f for f in report.findings if f.relaxed_by]
    assert relaxed and {f.rule for f in relaxed} == {"rendered.image-pinned"}
    assert all(f.severity == "low" and "standin" in f.message for f in relaxed)
    assert report.blocking == []


def test_redis_url_of_another_user(prod, rendered):
    env = "/etc/superapp/env/bus.env"
    edit(rendered, "app-1", env, "REDIS_URL='redis://bus:", "REDIS_URL='redis://payments:")
    [found] = findings(prod, rendered, "rendered.redis-url")
    line = line_of(rendered, "app-1", env, "REDIS_URL")
    assert found.where == f"app-1 bus {env}:{line} REDIS_URL"
    assert "does not authenticate as the service's own ACL user (bus)" in found.message


TLS_DYNAMIC = "/opt/superapp/traefik/dynamic/_tls.yml"


def test_edge_tls_silent_on_prod_and_low_for_the_testbeds_plain_hop(prod, rendered):
    assert findings(prod, rendered, "rendered.edge-tls") == []
    local = load_environment("local")
    found = findings(local, render_environment(local, PlaceholderSecrets()), "rendered.edge-tls")
    assert [(f.severity, f.key) for f in found] == [
        ("low", f"rendered.edge-tls:local:{h}:plain-http") for h in ("host1", "host2", "host3")]
    assert "serve api.superapp.test in plain HTTP" in found[0].message


def test_edge_tls_plain_http_in_prod_is_high(repo_copy):
    repo_copy.append("group_data/prod.py", "tls_certificates = {}")
    prod = repo_copy.load("prod")
    found = findings(prod, render_environment(prod, PlaceholderSecrets()), "rendered.edge-tls")
    assert {(f.severity, f.message) for f in found} == {
        ("high", "Traefik has no HTTPS entrypoint: every public request is plaintext")}
    assert len(found) == 4  # every app host


def test_edge_tls_old_protocols_and_missing_hsts(prod, rendered):
    edit(rendered, "app-3", TLS_DYNAMIC, "minVersion: VersionTLS12", "minVersion: VersionTLS10")
    edit(rendered, "app-3", PAYMENTS_DYNAMIC, '["payments-headers", "hsts@file", ',
         '["payments-headers", ')
    found = findings(prod, rendered, "rendered.edge-tls")
    assert [(f.severity, f.key) for f in found] == [
        ("high", "app-3:tls-min-version"), ("medium", "app-3:hsts:payments-tls")]
    assert "allow VersionTLS10" in found[0].message
