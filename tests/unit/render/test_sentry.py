"""Error tracking from the catalog: SENTRY_DSN (Vault, kind url, optional) in the env file,
SENTRY_ENVIRONMENT and SENTRY_RELEASE in the environment; the audit and the deploy say which
prod services report nowhere."""

from __future__ import annotations

from dataclasses import replace

from ops.audit.rendered import audit_rendered
from ops.render import PlaceholderSecrets, render_environment
from ops.render.compose import service_environment, service_secret_values
from ops.render.secrets import MappingSecrets, untracked_services


def with_service(env, name, **changes):
    services = {**env.services, name: replace(env.services[name], **changes)}
    return replace(env, catalog=replace(env.catalog, services=services))


def test_every_tracked_service_gets_its_environment_and_release(environments):
    prod = environments["prod"]
    env = service_environment(prod, prod.services["payments"])
    tag = prod.settings["image_tags"].get("payments", prod.settings["default_image_tag"])
    assert env["SENTRY_ENVIRONMENT"] == "prod"
    assert env["SENTRY_RELEASE"] == f"payments@{tag}"
    staging = environments["staging"]
    assert service_environment(staging, staging.services["food"])["SENTRY_ENVIRONMENT"] == \
        "staging"


def test_the_dsn_goes_to_the_env_file_only_when_vault_has_one(environments):
    prod = environments["prod"]
    service = prod.services["taxi"]
    ref = prod.sentry_dsn_ref(service)
    assert (ref.kind, ref.optional, str(ref)) == ("url", True, "superapp/prod/taxi#SENTRY_DSN")
    dsn = "https://k3y@o1.ingest.sentry.example/42"
    values = {str(r): "x" for r in prod.secret_refs(service) if not r.optional}
    with_dsn = service_secret_values(prod, service, MappingSecrets({**values, str(ref): dsn}))
    assert with_dsn["SENTRY_DSN"] == dsn
    assert "SENTRY_DSN" not in service_secret_values(prod, service, MappingSecrets(values))
    assert "SENTRY_DSN" not in service_environment(prod, service)  # never in plain sight


def test_a_service_without_error_tracking_has_neither_dsn_nor_sentry_env(environments):
    prod = with_service(environments["prod"], "bus", error_tracking="none")
    bus = prod.services["bus"]
    assert not [r for r in prod.secret_refs(bus) if r.key == "SENTRY_DSN"]
    assert not [k for k in service_environment(prod, bus) if k.startswith("SENTRY_")]


def test_the_audit_warns_about_a_prod_service_that_reports_nowhere(environments):
    prod = with_service(environments["prod"], "bus", error_tracking="none")
    found = [f for f in audit_rendered(prod, render_environment(prod, PlaceholderSecrets()))
             if f.rule == "rendered.error-tracking"]
    assert [(f.severity, f.key) for f in found] == [("medium", "services.bus")]
    assert "superapp/prod/bus#SENTRY_DSN" in found[0].fix
    staging = with_service(environments["staging"], "bus", error_tracking="none")
    assert not [f for f in audit_rendered(staging, render_environment(staging,
                                                                      PlaceholderSecrets()))
                if f.rule == "rendered.error-tracking"]


def test_the_deploy_names_prod_services_whose_dsn_vault_lacks(environments):
    prod = environments["prod"]
    have = {str(prod.sentry_dsn_ref(s)): "https://k@o1.ingest.sentry.example/1"
            for name, s in prod.services.items() if name != "chat"}
    assert untracked_services(prod, MappingSecrets(have)) == ["chat"]
    assert untracked_services(environments["local"], MappingSecrets({})) == []
