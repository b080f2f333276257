"""Cross-field rules: what a schema cannot see (a route on two services, a host that does not
exist, `*` in prod origins...). Each rule returns `(key path, message)` pairs; the loader adds
the file name. Pure functions of already type-checked data.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from typing import Any

from ops.canary.policy import steps_rise_to_all
from ops.catalog.model import Service

Errors = list[tuple[str, str]]
STRICT_ENVS = ("prod", "staging")  # must hold every production invariant, no relaxations
WILDCARD_NETS = ("0.0.0.0/0", "::/0")


def check_catalog(services: Mapping[str, Service]) -> Errors:
    errors: Errors = []
    route_owner: dict[str, str] = {}
    db_owner: dict[str, str] = {}
    dns_owner: dict[str, str] = {}
    for name, svc in services.items():
        for i, route in enumerate(svc.routes):
            if route in route_owner:
                errors.append((f"services.{name}.routes.{i}",
                               f"route {route!r} is already used by {route_owner[route]}"))
            route_owner.setdefault(route, name)
        if svc.database:
            if svc.database in db_owner:
                errors.append((f"services.{name}.database",
                               f"database {svc.database!r} is already used by "
                               f"{db_owner[svc.database]}"))
            db_owner.setdefault(svc.database, name)
        if svc.dns_name in dns_owner:
            errors.append((f"services.{name}",
                           f"container name clashes with {dns_owner[svc.dns_name]}"))
        dns_owner.setdefault(svc.dns_name, name)
        if svc.has_alembic and not svc.migrate_command:
            errors.append((f"services.{name}.migrate_command",
                           "required when has_alembic is true"))
        known = set(svc.secrets) | ({"DB_PASSWORD"} if svc.database else set())
        known |= {"JWT_SECRET"} if svc.jwt_mode == "secret" else set()
        known |= {"ADMIN_TOKEN"} if svc.admin_token == "sha256" else set()  # noqa: S105
        for sc in svc.sidecars.values():
            for env_var, key in sc.secret_env.items():
                if key not in known:
                    errors.append((f"services.{name}.sidecars.{sc.name}.secret_env.{env_var}",
                                   f"{key!r} is not a secret of {name} "
                                   f"(known: {', '.join(sorted(known))})"))
    if sum(s.hmac_role == "verifier" for s in services.values()) > 1:
        errors.append(("services", "at most one service may be the HMAC verifier"))
    return errors


def check_schema_provisioning(env: str, services: Mapping[str, Service]) -> Errors:
    """Prod and staging run AUTO_CREATE_SCHEMA=false: a service with a database must say what
    creates its schema (migrations, or the one-off bootstrap job), or it would go live on an
    empty database with a green /health."""
    if env not in STRICT_ENVS:
        return []
    return [(f"services.{name}.schema_bootstrap_command",
             f"{name} has a database but neither migrate_command nor schema_bootstrap_command: "
             f"nothing creates its schema in {env} (AUTO_CREATE_SCHEMA=false). Add Alembic and "
             "migrate_command, or schema_bootstrap_command and run tasks/bootstrap_schema.py "
             f"--data service={name} once")
            for name, svc in services.items()
            if svc.database and not svc.migrate_command and not svc.schema_bootstrap_command]


def check_environment(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    """All environment rules; `s` is the schema-checked merged group_data."""
    errors: Errors = []
    for rule in (check_env_name, check_hosts, check_placement, check_internal_calls,
                 check_origins, check_images, check_singletons, check_proxies, check_network,
                 check_vault, check_registry_api, check_relaxations, check_payments_promo,
                 check_jwks, check_schedules, check_settings_refs, check_tls,
                 check_canary, check_testbed_fleet):
        errors += rule(env, services, s)
    return errors


def check_env_name(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    if s["env"] != env:
        return [("env", f"is {s['env']!r} but the file is for {env!r}")]
    return []


def parse_ip(value: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def check_hosts(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    names: dict[str, int] = {}
    addresses: dict[str, str] = {}
    for i, host in enumerate(s["hosts"]):
        if host["name"] in names:
            errors.append((f"hosts.{i}.name", f"duplicate host name {host['name']!r} "
                                              f"(also hosts.{names[host['name']]})"))
        names.setdefault(host["name"], i)
        for key in ("address", "public_address"):
            value = host[key]
            if value is not None and parse_ip(value) is None:
                errors.append((f"hosts.{i}.{key}", f"{value!r} is not an IPv4 address"))
        if host["address"] in addresses:
            errors.append((f"hosts.{i}.address", f"duplicate address {host['address']!r} "
                                                 f"(also host {addresses[host['address']]!r})"))
        addresses.setdefault(host["address"], host["name"])
        if len(set(host["roles"])) != len(host["roles"]):
            errors.append((f"hosts.{i}.roles", "a role is listed twice"))
    # with db_ha, the db hosts are the Patroni members (ops/catalog/loader.py checks which)
    db_hosts = None if s.get("db_ha") else 1
    for role, wanted in (("app", None), ("db", db_hosts), ("monitoring", 1)):
        count = sum(role in h["roles"] for h in s["hosts"])
        if count == 0 or (wanted is not None and count != wanted):
            need = "at least one host" if wanted is None else "exactly one host"
            errors.append(("hosts", f"needs {need} with role {role!r}, found {count}"))
    return errors + check_backup_host(env, s)


def check_backup_host(env: str, s: Mapping[str, Any]) -> Errors:
    """With `pitr`, exactly one `backup` host, and in prod/staging not the db host: losing that
    host would lose the data and its backups together."""
    backup = [(i, h) for i, h in enumerate(s["hosts"]) if "backup" in h["roles"]]
    if not s.get("pitr"):
        return [("hosts", "role 'backup' is set but `pitr` is not")] if backup else []
    if len(backup) != 1:
        return [("hosts", f"`pitr` needs exactly one host with role 'backup', found "
                          f"{len(backup)}")]
    i, host = backup[0]
    if env in ("prod", "staging") and "db" in host["roles"]:
        return [(f"hosts.{i}.roles", "the backup host must not also be the db host: losing it "
                                     "would lose the data and its backups together")]
    return []


def app_hosts(s: Mapping[str, Any]) -> list[str]:
    return [h["name"] for h in s["hosts"] if "app" in h["roles"]]


def check_placement(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    roles = {h["name"]: h["roles"] for h in s["hosts"]}
    for service, hosts in s["placement"].items():
        if service not in services:
            errors.append((f"placement.{service}", unknown_service(service, services)))
        for i, host in enumerate(hosts):
            if host not in roles:
                errors.append((f"placement.{service}.{i}", f"unknown host {host!r}"))
            elif "app" not in roles[host]:
                errors.append((f"placement.{service}.{i}", f"host {host!r} has no 'app' role"))
        if len(set(hosts)) != len(hosts):
            errors.append((f"placement.{service}", "a host is listed twice"))
        if not hosts:
            errors.append((f"placement.{service}", "service is on no host"))
    if not app_hosts(s):
        errors += [(f"placement.{name}", "service is on no host") for name in services]
    return errors


def check_internal_calls(env: str, services: Mapping[str, Service],
                         s: Mapping[str, Any]) -> Errors:
    """The HMAC verifier runs on every host that runs one of its callers: a caller reaches it
    through its own host's Traefik (`http://<verifier>.internal:8081`), never across hosts."""
    placement = resolve_placement(services, s)
    errors: Errors = []
    for verifier in (n for n, svc in services.items() if svc.hmac_role == "verifier"):
        missing: dict[str, list[str]] = {}
        for name, svc in services.items():
            if svc.hmac_role == "caller":
                for host in placement[name]:
                    if host not in placement[verifier]:
                        missing.setdefault(host, []).append(name)
        for host, callers in missing.items():
            errors.append((f"placement.{verifier}",
                           f"host {host!r} runs {', '.join(callers)}, which call {verifier}, "
                           f"but not {verifier}: callers reach it through their own host's "
                           f"Traefik (runs on: {', '.join(placement[verifier]) or 'no host'})"))
    return errors


def unknown_service(name: str, services: Mapping[str, Service]) -> str:
    close = difflib.get_close_matches(name, list(services), n=1)
    return f"unknown service {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_origins(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    lists = {"default_allowed_origins": s["default_allowed_origins"]}
    for service, origins in s["allowed_origins"].items():
        if service not in services:
            errors.append((f"allowed_origins.{service}", unknown_service(service, services)))
        lists[f"allowed_origins.{service}"] = origins
    for path, origins in lists.items():
        for i, origin in enumerate(origins):
            if "*" in origin:
                errors.append((f"{path}.{i}" if len(origins) > 1 else path,
                               f"{origin!r} is not allowed in {env}: list explicit origins"))
    return errors


def check_images(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    if s["default_image_tag"] == "latest":
        errors.append(("default_image_tag", "'latest' is not a pinned tag"))
    for service, tag in s["image_tags"].items():
        if service not in services:
            errors.append((f"image_tags.{service}", unknown_service(service, services)))
        if tag == "latest":
            errors.append((f"image_tags.{service}", "'latest' is not a pinned tag"))
    for name, ref in s["infra_images"].items():
        if ref.rsplit(":", 1)[-1] == "latest":
            errors.append((f"infra_images.{name}", "'latest' is not a pinned tag"))
    return errors


def check_singletons(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    placement = resolve_placement(services, s)
    for key, host in s["singleton_hosts"].items():
        service, _, sidecar = key.partition(".")
        svc = services.get(service)
        if svc is None or sidecar not in svc.sidecars or not svc.sidecars[sidecar].singleton:
            errors.append((f"singleton_hosts.{key}", "must name a singleton sidecar as "
                                                     "'service.sidecar' (e.g. payments.beat)"))
        elif host not in placement[service]:
            errors.append((f"singleton_hosts.{key}",
                           f"host {host!r} does not run {service} "
                           f"(runs on: {', '.join(placement[service]) or 'no host'})"))
    return errors


def check_proxies(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    for i, proxy in enumerate(s["upstream_proxies"]):
        try:
            net = ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            errors.append((f"upstream_proxies.{i}", f"{proxy!r} is not an IP address or CIDR"))
            continue
        if str(net) in WILDCARD_NETS or net.prefixlen < 8:
            errors.append((f"upstream_proxies.{i}",
                           f"{proxy!r} trusts far too many addresses: list the proxies"))
    return errors


def check_tls(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    """ACME only for a name one app host answers: with several behind a balancer, the ACME
    server's HTTP-01 request reaches any of them, and only the one that asked knows the token.
    Plain HTTP only for names Traefik does not also hold a certificate for."""
    errors: Errors = []
    certificates, apps = s["tls_certificates"], app_hosts(s)
    for domain, source in certificates.items():
        if source == "acme" and "{host}" not in domain and len(apps) > 1:
            errors.append((f"tls_certificates.{domain}",
                           f"ACME for {domain!r}, a name all {len(apps)} app hosts share: the "
                           "HTTP-01 challenge would reach any of them through the balancer; "
                           "use a per-host name ('{host}.<domain>'), a 'vault' certificate, "
                           "or TLS at the balancer"))
    for i, domain in enumerate(s["tls_plain_http_domains"]):
        if domain in certificates:
            errors.append((f"tls_plain_http_domains.{i}",
                           f"{domain!r} has a certificate in tls_certificates: serve it over "
                           "HTTPS only, or drop its certificate"))
        elif domain not in s["api_domains"]:
            errors.append((f"tls_plain_http_domains.{i}",
                           f"{domain!r} is not one of api_domains"))
    return errors


def check_canary(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    """Steps rise and end with all the traffic on the new slot; prod and staging judge every
    release on real traffic before the rest of the fleet gets it."""
    steps = s["canary"]["steps"]
    if not steps:
        return [("canary.steps", f"{env} must run a canary: give steps ending at 100, like "
                                 "[5, 25, 50, 100]")] if env in ("prod", "staging") else []
    if not steps_rise_to_all(steps):
        return [("canary.steps", f"must rise and end at 100, got {steps}")]
    return []


def check_testbed_fleet(env: str, services: Mapping[str, Service],
                        s: Mapping[str, Any]) -> Errors:
    """Only the testbed's environment takes hosts from a file on the controller: prod and
    staging list every host they deploy to."""
    fleet = s["testbed_fleet"]
    if not fleet:
        return []
    if env in STRICT_ENVS:
        return [("testbed_fleet", f"{env} lists every host it deploys to in `hosts`: remove "
                                  "testbed_fleet (the local testbed's extra hosts)")]
    errors = [(f"testbed_fleet.services.{i}", unknown_service(name, services))
              for i, name in enumerate(fleet["services"]) if name not in services]
    if parse_ip(fleet["address_base"]) is None:
        errors.append(("testbed_fleet.address_base",
                       f"{fleet['address_base']!r} is not an IPv4 address"))
    return errors


def check_network(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    net = s["docker_network"]
    try:
        subnet = ipaddress.IPv4Network(net["subnet"])
    except ValueError:
        return [("docker_network.subnet", f"{net['subnet']!r} is not an IPv4 CIDR")]
    address = parse_ip(net["traefik_address"])
    if address is None or address not in subnet or address in (
            subnet.network_address, subnet.broadcast_address, subnet.network_address + 1):
        return [("docker_network.traefik_address",
                 f"{net['traefik_address']!r} must be a usable address of {subnet} "
                 "(not the network, gateway or broadcast address)")]
    return []


def check_vault(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    vault, relaxed = s["vault"], s["relaxations"]
    if vault["path_prefix"] != f"superapp/{env}":
        errors.append(("vault.path_prefix", f"must be 'superapp/{env}', got "
                                            f"{vault['path_prefix']!r}"))
    if vault["auth_method"] == "token" and "vault-token-auth" not in relaxed:
        errors.append(("vault.auth_method", "'token' needs the 'vault-token-auth' relaxation; "
                                            "use 'approle'"))
    if vault["addr"].startswith("http://") and "vault-plain-http" not in relaxed:
        errors.append(("vault.addr", "plain http needs the 'vault-plain-http' relaxation"))
    if vault["addr"].startswith("https://") and not vault["ca_path"]:
        errors.append(("vault.ca_path", "required with an https Vault address"))
    return errors


def check_registry_api(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    """The controller must ask the registry the hosts pull from, over TLS unless relaxed."""
    url = s["registry_api"]["url"]
    if not url:
        return []
    errors: Errors = []
    scheme, _, where = url.partition("://")
    if where.rstrip("/") != s["registry"]:
        errors.append(("registry_api.url", f"must name the registry the hosts pull from "
                                           f"({s['registry']}), got {url!r}"))
    if scheme == "http" and "registry-plain-http" not in s["relaxations"]:
        errors.append(("registry_api.url", "plain http needs the 'registry-plain-http' "
                                           "relaxation; use https"))
    return errors


def check_relaxations(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    if env in STRICT_ENVS and s["relaxations"]:
        errors.append(("relaxations", f"{env} must hold every production invariant; "
                                      f"remove {', '.join(s['relaxations'])}"))
    if s["standin_image"] and "standin-image" not in s["relaxations"]:
        errors.append(("standin_image", "needs the 'standin-image' relaxation"))
    return errors


def check_payments_promo(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    if env in STRICT_ENVS and s["starting_credit_cents"] and not s["promo_enabled"]:
        return [("starting_credit_cents",
                 f"must be 0 in {env} unless promo_enabled is True (a launched promo)")]
    return []


def check_settings_refs(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    return [
        (f"{key}", f"services.{name}.env_from_settings.{var} needs a scalar, got "
                   f"{type(s.get(key)).__name__}")
        for name, svc in services.items()
        for var, key in svc.env_from_settings.items()
        if not isinstance(s.get(key), str | int | float | bool)
    ]


def check_jwks(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    users = [n for n, svc in services.items() if svc.jwt_mode == "jwks"]
    if users and not s["jwt_jwks_url"]:
        return [("jwt_jwks_url", f"required: {', '.join(users)} validate JWTs through JWKS")]
    return []


def check_schedules(env: str, services: Mapping[str, Service], s: Mapping[str, Any]) -> Errors:
    errors: Errors = []
    fields = s["backups"]["schedule"].split()
    if len(fields) != 5:
        errors.append(("backups.schedule", "must be a 5-field cron expression"))
    elif not (fields[0].isdigit() and int(fields[0]) < 60
              and (fields[1] == "*" or (fields[1].isdigit() and int(fields[1]) < 24))):
        # ops/render/backup.py staggers the databases from this minute
        errors.append(("backups.schedule", "minute and hour must be numbers (hour may be `*`): "
                                           "each database runs a few minutes after the last"))
    hc = s["health_check"]
    if hc["timeout_seconds"] >= hc["interval_seconds"]:
        errors.append(("health_check.timeout_seconds", "must be shorter than interval_seconds"))
    return errors


def resolve_placement(services: Mapping[str, Service], s: Mapping[str, Any]) -> dict[str, tuple]:
    """service -> host names in rollout order (default: every app host)."""
    order = [h["name"] for h in s["hosts"]]
    default = app_hosts(s)
    out = {}
    for name in services:
        chosen = s["placement"].get(name, default)
        out[name] = tuple(h for h in order if h in chosen)
    return out


def resolve_singletons(services: Mapping[str, Service], s: Mapping[str, Any]) -> dict[str, str]:
    """'service.sidecar' -> the one host running it (default: first host running the service)."""
    placement = resolve_placement(services, s)
    return {
        f"{name}.{sc.name}": s["singleton_hosts"].get(f"{name}.{sc.name}", placement[name][0])
        for name, svc in services.items()
        for sc in svc.sidecars.values()
        if sc.singleton and placement[name]
    }
