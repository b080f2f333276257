"""ops.catalog: loading, inventory groups, and one test per validation rule.

Each rule test breaks a copy of the real files and asserts the message names the file and key.
"""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

import ops.catalog
from ops.catalog import ConfigError, inventory_groups, load_environment
from ops.catalog.group_data_schema import GROUP_DATA
from ops.catalog.services_schema import SERVICE

SERVICES = ["payments", "taxi", "commerce", "food", "doctors", "stays", "bus", "flights",
            "utilities", "freight", "chat", "agriculture", "carmarket", "carrental", "ai_gateway",
            "livestock", "realestate"]
PROD = "group_data/prod.py"


def error_of(repo, env="prod") -> str:
    with pytest.raises(ConfigError) as info:
        repo.load(env)
    return str(info.value)


@pytest.mark.parametrize("env", ["prod", "staging", "local"])
def test_every_environment_loads_with_all_17_services(env):
    environment = load_environment(env)
    assert list(environment.services) == SERVICES
    assert all(environment.placement[s] for s in SERVICES)


def test_catalog_facts_from_the_spec(environments):
    services = environments["prod"].services
    assert {n for n, s in services.items() if s.has_alembic} == {"payments", "taxi"}
    assert services["payments"].hmac_role == "verifier"
    assert services["payments"].migrate_command == ("alembic", "upgrade", "head")
    assert set(services["payments"].sidecars) == {"worker", "beat"}
    assert services["payments"].sidecars["beat"].singleton
    assert services["taxi"].sidecars["reaper"].secret_env == {"TAXI_ADMIN_TOKEN": "ADMIN_TOKEN"}
    assert services["taxi"].jwt_mode == "jwks"
    full = {n for n, s in services.items() if s.dashboard == "full"}
    assert full == {"payments", "taxi", "commerce", "doctors"}
    assert all(s.port == 8000 and s.health_path == "/health" for s in services.values())


def test_local_environment_matches_the_testbed(environments):
    local = environments["local"]
    assert [(h.name, h.address, h.roles) for h in local.hosts] == [
        ("host1", "10.231.0.11", ("app", "db")),
        ("host2", "10.231.0.12", ("app",)),
        ("host3", "10.231.0.13", ("app", "monitoring", "backup")),
    ]
    assert local.image(local.services["payments"]) == "10.231.0.1:5000/superapp/standin:v1"
    assert local.infra_image("traefik") == "10.231.0.1:5000/superapp/traefik:3.7.15"
    assert local.settings["health_check"]["interval_seconds"] == 30
    assert local.settings["vault"]["auth_method"] == "token"
    assert set(local.settings["relaxations"]) == {
        "standin-image", "vault-token-auth", "vault-plain-http", "registry-plain-http"}
    assert local.settings["registry_api"]["url"] == "http://10.231.0.1:5000"


def test_inventory_groups_by_role_in_rollout_order(environments):
    groups = inventory_groups(environments["prod"])
    assert [name for name, _ in groups["app"]] == ["app-1", "app-2", "app-3", "app-4"]
    assert groups["db"] == [("db-1", {"ssh_hostname": "10.10.1.11"})]
    assert [name for name, _ in groups["monitoring"]] == ["mon-1"]


def test_beat_defaults_to_the_first_app_host_running_payments(environments):
    assert environments["prod"].singleton_hosts == {"payments.beat": "app-1"}


def test_secret_refs_carry_vault_location_and_kind(environments):
    prod = environments["prod"]
    refs = {r.key: r for r in prod.secret_refs(prod.services["taxi"])}
    assert str(refs["TOMTOM_API_KEY"]) == "superapp/prod/taxi#TOMTOM_API_KEY"
    assert refs["TOMTOM_API_KEY"].kind == "api-key"
    assert refs["ADMIN_TOKEN"].kind == "admin-token"
    assert refs["INTERNAL_HMAC_SECRET"].path == "superapp/prod/shared/internal-hmac"
    assert "JWT_SECRET" not in refs  # taxi validates through JWKS
    assert refs["INTERNAL_HMAC_SECRET_PREVIOUS"].optional


# --- the documented schema example stays valid -------------------------------------------


def documented_block(marker: str) -> str:
    doc = ops.catalog.__doc__
    match = re.search(rf"{marker}::\n\n(.*?)(?:\n\S|\Z)", doc, re.S)
    assert match, f"no '{marker}::' block in ops.catalog's docstring"
    return textwrap.dedent(match.group(1))


def test_documented_service_example_validates():
    example = yaml.safe_load(documented_block("Example service entry"))
    (name, entry), = example["services"].items()
    errors: list = []
    SERVICE.check(entry, f"services.{name}", errors)
    assert errors == []


def test_documented_group_data_example_validates():
    namespace: dict = {}
    exec(documented_block("Example group_data"), namespace)  # noqa: S102 - our own docstring
    data = {k: v for k, v in namespace.items() if not k.startswith("__")}
    errors: list = []
    GROUP_DATA.check(data, "", errors)
    assert errors == []


# --- one test per validation rule ----------------------------------------------------------


def test_unknown_key_names_file_and_suggests(repo_copy):
    repo_copy.append(PROD, 'alowed_origins = {"payments": ["https://x.superapp.sy"]}')
    assert ("group_data/prod.py: unknown key 'alowed_origins' (did you mean 'allowed_origins'?)"
            in error_of(repo_copy))


def test_unknown_nested_key(repo_copy):
    repo_copy.replace(PROD, r'"address": "10.10.0.12"', '"adress": "10.10.0.12"')
    message = error_of(repo_copy)
    assert "group_data/prod.py: hosts.1: unknown key 'adress' (did you mean 'address'?)" in message
    assert "group_data/prod.py: hosts.1.address: missing required key" in message


def test_missing_required_key(repo_copy):
    repo_copy.replace(PROD, r'^registry = .*$', "")
    assert "group_data/prod.py: registry: missing required key" in error_of(repo_copy)


def test_wrong_type(repo_copy):
    repo_copy.append(PROD, 'hmac_replay_window_seconds = "120"')
    assert ("group_data/prod.py: hmac_replay_window_seconds: must be an integer, got str"
            in error_of(repo_copy))


def test_value_out_of_range_replay_window(repo_copy):
    repo_copy.append(PROD, "hmac_replay_window_seconds = 900")
    assert ("group_data/prod.py: hmac_replay_window_seconds: must be <= 300"
            in error_of(repo_copy))


def test_wildcard_origin_rejected_in_prod(repo_copy):
    repo_copy.append(PROD, 'allowed_origins = {"payments": ["*"]}')
    assert ("group_data/prod.py: allowed_origins.payments: '*' is not allowed in prod"
            in error_of(repo_copy))


def test_wildcard_default_origin_blamed_on_the_file_that_set_it(repo_copy):
    repo_copy.replace("group_data/all.py", r'^default_allowed_origins = .*$',
                      'default_allowed_origins = ["*"]')
    assert ("group_data/all.py: default_allowed_origins: '*' is not allowed in prod"
            in error_of(repo_copy))


def test_allowed_origins_for_unknown_service(repo_copy):
    repo_copy.append(PROD, 'allowed_origins = {"paymnets": ["https://a.superapp.sy"]}')
    assert ("group_data/prod.py: allowed_origins.paymnets: unknown service 'paymnets' "
            "(did you mean 'payments'?)" in error_of(repo_copy))


def test_placement_on_unknown_host(repo_copy):
    repo_copy.append(PROD, 'placement = {"chat": ["app-9"]}')
    assert "group_data/prod.py: placement.chat.0: unknown host 'app-9'" in error_of(repo_copy)


def test_placement_on_a_host_without_app_role(repo_copy):
    repo_copy.append(PROD, 'placement = {"chat": ["db-1"]}')
    assert ("group_data/prod.py: placement.chat.0: host 'db-1' has no 'app' role"
            in error_of(repo_copy))


def test_service_on_no_host(repo_copy):
    repo_copy.append(PROD, 'placement = {"chat": []}')
    assert "group_data/prod.py: placement.chat: service is on no host" in error_of(repo_copy)


def test_route_on_two_services(repo_copy):
    repo_copy.replace("ops/catalog/services.yml", r"routes: \[/food\]", "routes: [/payments]")
    assert ("ops/catalog/services.yml: services.food.routes.0: route '/payments' is already "
            "used by payments" in error_of(repo_copy))


def test_unknown_catalog_key(repo_copy):
    repo_copy.replace("ops/catalog/services.yml", r"    database: chat",
                      "    database: chat\n    databse: chat")
    assert ("ops/catalog/services.yml: services.chat: unknown key 'databse' "
            "(did you mean 'database'?)" in error_of(repo_copy))


def test_alembic_service_needs_a_migrate_command(repo_copy):
    repo_copy.replace("ops/catalog/services.yml", r"    database: chat",
                      "    database: chat\n    has_alembic: true")
    assert ("ops/catalog/services.yml: services.chat.migrate_command: required when has_alembic"
            in error_of(repo_copy))


def test_duplicate_host_address(repo_copy):
    repo_copy.replace(PROD, r'"address": "10.10.0.12"', '"address": "10.10.0.11"')
    assert ("group_data/prod.py: hosts.1.address: duplicate address '10.10.0.11' "
            "(also host 'app-1')" in error_of(repo_copy))


def test_duplicate_host_name(repo_copy):
    repo_copy.replace(PROD, r'"name": "app-2"', '"name": "app-1"')
    assert "group_data/prod.py: hosts.1.name: duplicate host name 'app-1'" in error_of(repo_copy)


def test_exactly_one_db_host(repo_copy):
    repo_copy.replace(PROD, r'"roles": \["monitoring"\]', '"roles": ["monitoring", "db"]')
    assert ("group_data/prod.py: hosts: needs exactly one host with role 'db', found 2"
            in error_of(repo_copy))


def test_unknown_role(repo_copy):
    repo_copy.replace(PROD, r'"roles": \["monitoring"\]', '"roles": ["monitor"]')
    assert ("group_data/prod.py: hosts.5.roles.0: must be one of app, db, monitoring"
            in error_of(repo_copy))


def test_beat_must_run_where_payments_runs(repo_copy):
    repo_copy.append(PROD, 'placement = {"payments": ["app-1", "app-2"]}\n'
                           'singleton_hosts = {"payments.beat": "app-3"}')
    assert ("group_data/prod.py: singleton_hosts.payments.beat: host 'app-3' does not run "
            "payments" in error_of(repo_copy))


def test_singleton_key_must_name_a_singleton_sidecar(repo_copy):
    repo_copy.append(PROD, 'singleton_hosts = {"payments.worker": "app-1"}')
    assert ("group_data/prod.py: singleton_hosts.payments.worker: must name a singleton sidecar"
            in error_of(repo_copy))


def test_latest_tag_rejected(repo_copy):
    repo_copy.append(PROD, 'image_tags = {"taxi": "latest"}')
    assert ("group_data/prod.py: image_tags.taxi: 'latest' is not a pinned tag"
            in error_of(repo_copy))


def test_infra_image_without_tag_rejected(repo_copy):
    repo_copy.replace("group_data/all.py", r'"superapp/redis:7.0.15"', '"superapp/redis"')
    assert ("group_data/all.py: infra_images.redis: must be repository:tag"
            in error_of(repo_copy))


def test_trusting_every_proxy_rejected(repo_copy):
    repo_copy.append(PROD, 'upstream_proxies = ["0.0.0.0/0"]')
    assert ("group_data/prod.py: upstream_proxies.0: '0.0.0.0/0' trusts far too many addresses"
            in error_of(repo_copy))


def test_traefik_address_outside_the_docker_subnet(repo_copy):
    repo_copy.append(PROD, 'docker_network = {"name": "superapp", "subnet": "172.30.0.0/24", '
                           '"traefik_address": "172.31.0.2"}')
    assert ("group_data/prod.py: docker_network.traefik_address: '172.31.0.2' must be a usable "
            "address of 172.30.0.0/24" in error_of(repo_copy))


def test_relaxations_forbidden_in_prod(repo_copy):
    repo_copy.append(PROD, 'relaxations = ["vault-token-auth"]')
    assert ("group_data/prod.py: relaxations: prod must hold every production invariant"
            in error_of(repo_copy))


def test_token_auth_needs_a_relaxation(repo_copy):
    repo_copy.replace("group_data/local.py", r'^relaxations = .*$',
                      'relaxations = ["standin-image", "vault-plain-http"]')
    assert ("group_data/local.py: vault.auth_method: 'token' needs the 'vault-token-auth' "
            "relaxation" in error_of(repo_copy, "local"))


def test_unknown_relaxation(repo_copy):
    repo_copy.replace("group_data/local.py", r'^relaxations = \[',
                      'relaxations = ["no-tls", ')
    assert ("group_data/local.py: relaxations.0: must be one of standin-image"
            in error_of(repo_copy, "local"))


def test_the_registry_api_is_https_to_the_registry_the_hosts_pull_from(repo_copy):
    assert repo_copy.load().settings["registry_api"] == {"url": None, "ca_path": None}
    repo_copy.append(PROD, 'registry_api = {"url": "http://registry.superapp.internal:5000", '
                           '"ca_path": None}')
    assert ("group_data/prod.py: registry_api.url: plain http needs the 'registry-plain-http' "
            "relaxation" in error_of(repo_copy))
    repo_copy.append(PROD, 'registry_api = {"url": "https://mirror.example:5000", '
                           '"ca_path": None}')
    assert ("group_data/prod.py: registry_api.url: must name the registry the hosts pull from "
            "(registry.superapp.internal:5000)" in error_of(repo_copy))


def test_vault_path_prefix_must_match_the_environment(repo_copy):
    repo_copy.replace(PROD, r'"path_prefix": "superapp/prod"', '"path_prefix": "superapp/stg"')
    assert ("group_data/prod.py: vault.path_prefix: must be 'superapp/prod'"
            in error_of(repo_copy))


def test_starting_credit_needs_a_promo_in_prod(repo_copy):
    repo_copy.append(PROD, "starting_credit_cents = 500")
    assert ("group_data/prod.py: starting_credit_cents: must be 0 in prod unless promo_enabled"
            in error_of(repo_copy))
    repo_copy.append(PROD, "promo_enabled = True")
    assert repo_copy.load().settings["starting_credit_cents"] == 500


def test_env_name_must_match_the_file(repo_copy):
    repo_copy.replace(PROD, r'^env = "prod"', 'env = "staging"')
    assert ("group_data/prod.py: env: is 'staging' but the file is for 'prod'"
            in error_of(repo_copy))


def test_group_data_holds_no_logic(repo_copy):
    repo_copy.append(PROD, 'import os\nregistry = os.environ["REGISTRY"]')
    message = error_of(repo_copy)
    assert "group_data/prod.py: line " in message
    assert "only `name = <literal>` assignments are allowed" in message


def test_jwks_service_needs_a_jwks_url(repo_copy):
    repo_copy.append(PROD, "jwt_jwks_url = None")
    assert ("group_data/prod.py: jwt_jwks_url: required: taxi validate JWTs through JWKS"
            in error_of(repo_copy))


def test_unknown_environment():
    with pytest.raises(ConfigError, match=r"group_data/qa.py: file not found"):
        load_environment("qa")


def test_all_errors_are_reported_at_once(repo_copy):
    repo_copy.append(PROD, 'alowed_origins = {}\nhmac_replay_window_seconds = "x"')
    message = error_of(repo_copy)
    assert message.startswith("2 configuration errors:")
    assert "alowed_origins" in message and "hmac_replay_window_seconds" in message


def test_payments_must_run_where_its_callers_run(repo_copy):
    repo_copy.append(PROD, 'placement = {"payments": ["app-1", "app-2", "app-3"]}')
    assert ("group_data/prod.py: placement.payments: host 'app-4' runs taxi, commerce, food, "
            "doctors, stays, bus, flights, utilities, carrental, which call payments, but not "
            "payments" in error_of(repo_copy))
    repo_copy.append(PROD, 'placement = {"payments": ["app-1", "app-2", "app-3"], '
                           '"taxi": ["app-1"], "commerce": ["app-2"], "food": ["app-3"], '
                           '"doctors": ["app-1"], "stays": ["app-1"], "bus": ["app-1"], '
                           '"flights": ["app-1"], "utilities": ["app-1"], '
                           '"carrental": ["app-1"]}')
    repo_copy.load("prod")  # no caller on app-4: payments need not run there


def test_a_database_nothing_creates_the_schema_of_is_refused_in_prod_and_staging(repo_copy):
    repo_copy.replace("ops/catalog/services.yml",
                      r"    database: chat\n    schema_bootstrap_command: .*\n",
                      "    database: chat\n")
    for env in ("prod", "staging"):
        message = error_of(repo_copy, env)
        assert ("ops/catalog/services.yml: services.chat.schema_bootstrap_command: chat has a "
                "database but neither migrate_command nor schema_bootstrap_command" in message)
        assert "tasks/bootstrap_schema.py --data service=chat" in message
    repo_copy.load("local")  # the testbed holds no production invariant: accepted there


def test_the_db_host_rolls_first_then_group_data_order(environments):
    """Servers before their clients: a new database, role or Redis user (or a Redis user's
    second password during a rotation) exists before a service on another host uses it."""
    prod = environments["prod"]
    assert [h.name for h in prod.hosts][:5] == ["app-1", "app-2", "app-3", "app-4", "db-1"]
    assert prod.in_rollout_order(h.name for h in prod.hosts)[:5] == \
        ["db-1", "app-1", "app-2", "app-3", "app-4"]
    assert prod.in_rollout_order(["app-2", "app-1"]) == ["app-1", "app-2"]
    assert environments["local"].in_rollout_order(["host3", "host1", "host2"]) == \
        ["host1", "host2", "host3"]


def test_host_keys_are_pinned_everywhere(repo_copy, environments):
    assert {e.settings["ssh_strict_host_key_checking"] for e in environments.values()} == {"yes"}
    repo_copy.replace(PROD, r'^ssh_known_hosts_file = .*$', "")
    assert ("group_data/prod.py: ssh_known_hosts_file: missing required key"
            in error_of(repo_copy))
    repo_copy.append(PROD, 'ssh_known_hosts_file = "/etc/superapp/known_hosts.prod"\n'
                           'ssh_strict_host_key_checking = "accept-new"')
    assert ("group_data/prod.py: ssh_strict_host_key_checking: must be one of yes"
            in error_of(repo_copy))


PROD_TLS = "tls_certificates = {certs}\ntls_plain_http_domains = {plain}"


def test_acme_for_a_name_every_app_host_shares_is_refused(repo_copy):
    repo_copy.append(PROD, PROD_TLS.format(certs='{"api.superapp.sy": "acme"}', plain="[]"))
    assert ("group_data/prod.py: tls_certificates.api.superapp.sy: ACME for 'api.superapp.sy', "
            "a name all 4 app hosts share: the HTTP-01 challenge would reach any of them"
            in error_of(repo_copy))


def test_acme_per_host_names_and_vault_certificates_are_accepted(repo_copy):
    repo_copy.append(PROD, PROD_TLS.format(
        certs='{"{host}.edge.superapp.sy": "acme", "api.superapp.sy": "vault"}', plain="[]"))
    environment = repo_copy.load("prod")
    assert environment.edge_certificate_domains(environment.host("app-2")) == {
        "app-2.edge.superapp.sy": "acme", "api.superapp.sy": "vault"}


@pytest.mark.parametrize(("certs", "plain", "message"), [
    ('{"api.superapp.sy": "vault"}', '["api.superapp.sy"]',
     "tls_plain_http_domains.0: 'api.superapp.sy' has a certificate in tls_certificates"),
    ("{}", '["www.superapp.sy"]',
     "tls_plain_http_domains.0: 'www.superapp.sy' is not one of api_domains"),
    ('{"api.superapp.sy": "letsencrypt"}', "[]",
     "tls_certificates.api.superapp.sy: must be one of"),
])
def test_inconsistent_tls_settings_are_refused(repo_copy, certs, plain, message):
    repo_copy.append(PROD, PROD_TLS.format(certs=certs, plain=plain))
    assert message in error_of(repo_copy)


CANARY = ('canary = {{"steps": {steps}, "interval_seconds": 60, "min_requests": 100, '
          '"max_wait_seconds": 300, "success_min_percent": 99.0, '
          '"success_max_drop_points": 0.5, "p99_max_seconds": 1.0, "p99_max_ratio": 1.5}}\n')


@pytest.mark.parametrize(("steps", "message"), [
    ("[]", "canary.steps: prod must run a canary: give steps ending at 100"),
    ("[5, 50]", "canary.steps: must rise and end at 100, got [5, 50]"),
    ("[50, 5, 100]", "canary.steps: must rise and end at 100, got [50, 5, 100]"),
    ("[0, 100]", "canary.steps.0: must be >= 1"),
])
def test_a_canary_that_cannot_judge_a_release_is_refused(repo_copy, steps, message):
    repo_copy.append(PROD, CANARY.format(steps=steps))
    assert message in error_of(repo_copy)


def test_local_may_run_without_a_canary_and_prod_with_its_own_steps(repo_copy):
    assert repo_copy.load("local").settings["canary"]["steps"] == []
    repo_copy.append(PROD, CANARY.format(steps="[10, 100]"))
    assert repo_copy.load("prod").settings["canary"]["steps"] == [10, 100]
