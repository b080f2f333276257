"""Rules over the RENDERED configuration of every host (the files `make render` writes).

The audit reads what the deploy would write (compose projects, env files, Traefik, Prometheus,
cron), parsed as YAML, and checks the production invariants (docs/invariants.md) on that
text. It does not re-derive values from the catalog: a template bug must show up here. The
catalog is used only for expectations the rendered text cannot state (which services call
payments, which support a hashed admin token, which route prefixes each service has) and
group_data only for `promo_enabled` and the public API domains.

Pure: `audit_rendered(environment, rendered)` takes the output of `render_environment` and never
touches a host, Vault or a subprocess. Findings never quote a secret value.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from ops.audit.findings import Finding
from ops.audit.yamlpos import Located, load_located
from ops.catalog.model import Environment

COMPOSE_DIR = "/opt/superapp/compose"
ENV_DIR = "/etc/superapp/env"
TRAEFIK_STATIC = "/opt/superapp/traefik/traefik.yml"
TRAEFIK_DYNAMIC_DIR = "/opt/superapp/traefik/dynamic"
PROMETHEUS_CONFIG = "/opt/superapp/prometheus/prometheus.yml"
BACKUP_DIR = "/opt/superapp/backup"
BACKUP_CRON_PREFIX = "/etc/cron.d/superapp-backup-"
INFRA_PROJECTS = ("edge", "data", "monitoring")
PAYMENTS = "payments"
REPLAY_WINDOW = (60, 300)
# Markers PlaceholderSecrets writes instead of a value (also URL-encoded inside URLs).
SECRET_MARKERS = ("<vault:", "%3Cvault%3A", "vault-placeholder.invalid")
WILDCARD_NETS = ("*", "0.0.0.0/0", "::/0", "0.0.0.0")  # noqa: S104 - what we refuse
# Containers whose image must start as root (its entrypoint drops privileges itself). Reported
# as low, not high: invariant 10 (docs/invariants.md) says "non-root where the image allows".
ROOT_ALLOWED = {"postgres": "its entrypoint prepares PGDATA as root, then runs the server as "
                            "the postgres user",
                "log-shipper": "it reads Docker's json-file logs, which only root may read; it "
                               "has no capabilities, a read-only root and writes only its spool"}
FLOATING_TAGS = re.compile(r"(latest|stable|lts|edge|main|master|mainline|current|nightly|dev)"
                           r"([-_.].*)?", re.I)
PINNED_VERSION = re.compile(r"v?\d+\.\d+\.\d+([-+._][0-9A-Za-z.+_-]+)?")


@dataclass
class EnvValue:
    value: str
    file: str  # path on the host
    line: int
    secret_file: bool  # came from an env file (0600) rather than `environment:`


@dataclass
class Container:
    host: str
    project_file: str  # compose file path on the host
    service: str | None  # catalog service of a service project, None for infra projects
    name: str  # compose service key
    spec: dict[str, Any]
    doc: Located
    env: dict[str, EnvValue] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.service is not None and self.name == self.service

    def where(self, *path: object) -> str:
        line = self.doc.line("services", self.name, *path)
        label = f"{self.host} {self.service or self.name}"
        return f"{label} {self.project_file}:{line}" if line else f"{label} {self.project_file}"

    def key(self, rule: str, detail: str) -> str:
        return f"{rule}:{self.host}:{self.project_file}:{self.name}:{detail}"

    def env_where(self, var: str) -> str:
        item = self.env.get(var)
        if item is None:  # missing: point at the container's environment block
            return f"{self.where('environment')} {var}"
        return f"{self.host} {self.service or self.name} {item.file}:{item.line} {var}"


@dataclass
class HostView:
    name: str
    address: str
    files: dict[str, Any]  # path -> RenderedFile
    containers: list[Container] = field(default_factory=list)
    yaml_docs: dict[str, Located] = field(default_factory=dict)


def audit_rendered(environment: Environment, rendered: Mapping[str, list]) -> list[Finding]:
    """Every rendered-config rule over `{host: [RenderedFile]}` (render_environment's output)."""
    findings: list[Finding] = []
    hosts = [build_host_view(environment, name, files, findings)
             for name, files in rendered.items()]
    for rule in RULES:
        findings += rule(environment, hosts)
    return findings


# ---------------------------------------------------------------- parsing the rendered files


def build_host_view(environment: Environment, host_name: str, files: list,
                    findings: list[Finding]) -> HostView:
    try:
        address = environment.host(host_name).address
    except KeyError:
        address = ""
    view = HostView(host_name, address, {f.path: f for f in files})
    for path, file in sorted(view.files.items()):
        if not path.endswith(".yml"):
            continue
        try:
            view.yaml_docs[path] = load_located(file.content)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            findings.append(Finding(
                "rendered.invalid-yaml", "high", f"{host_name} {path}{line}",
                f"rendered file is not valid YAML: {getattr(exc, 'problem', exc)}",
                "fix the template that renders this file", key=f"{host_name}:{path}"))
    for path, doc in view.yaml_docs.items():
        if not (path.startswith(COMPOSE_DIR + "/") and isinstance(doc.data, dict)):
            continue
        stem = PurePosixPath(path).stem
        service = None if stem in INFRA_PROJECTS else stem
        for name, spec in (doc.data.get("services") or {}).items():
            container = Container(host_name, path, service, str(name), spec or {}, doc)
            container.env = container_env(view, container, findings)
            view.containers.append(container)
    return view


def parse_env_file(content: str) -> dict[str, tuple[str, int]]:
    """`KEY=value` lines of a compose env file -> {KEY: (value, line)}; quotes removed."""
    out = {}
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = (value, number)
    return out


def resolve_env_path(compose_path: str, ref: str) -> str:
    """An env_file entry (relative to the compose file's directory) as an absolute host path."""
    if ref.startswith("/"):
        return str(PurePosixPath(ref))
    parts: list[str] = list(PurePosixPath(compose_path).parent.parts)
    for part in PurePosixPath(ref).parts:
        if part == "..":
            if len(parts) > 1:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return str(PurePosixPath(*parts))


def container_env(view: HostView, c: Container, findings: list[Finding]) -> dict[str, EnvValue]:
    """Env of a container as compose computes it: env files in order, then `environment:`."""
    env: dict[str, EnvValue] = {}
    refs = c.spec.get("env_file") or []
    for ref in [refs] if isinstance(refs, str) else refs:
        ref = ref.get("path", "") if isinstance(ref, dict) else str(ref)
        path = resolve_env_path(c.project_file, ref)
        file = view.files.get(path)
        if file is None:
            findings.append(Finding(
                "rendered.env-file-missing", "high", c.where("env_file"),
                f"env_file {ref!r} ({path}) is not rendered for this host",
                "render the env file with the compose project (ops/render/compose.py)",
                key=c.key("rendered.env-file-missing", path)))
            continue
        for key, (value, line) in parse_env_file(file.content).items():
            env[key] = EnvValue(value, path, line, secret_file=True)
    block = c.spec.get("environment") or {}
    if isinstance(block, list):
        block = dict(item.split("=", 1) if "=" in item else (item, "") for item in block)
    for key, value in block.items():
        line = c.doc.line("services", c.name, "environment", key)
        env[str(key)] = EnvValue("" if value is None else str(value).lower()
                                 if isinstance(value, bool) else str(value),
                                 c.project_file, line, secret_file=False)
    return env


def service_mains(hosts: list[HostView]) -> Iterator[Container]:
    for view in hosts:
        yield from (c for c in view.containers if c.is_main)


def finding(rule: str, c: Container, var: str, message: str, fix: str,
            severity: str = "high") -> Finding:
    return Finding(rule, severity, c.env_where(var), message, fix, key=c.key(rule, var))


# ---------------------------------------------------------------- service environment rules


def check_hmac(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Payments requires HMAC; payments and every caller hold the signing secret in the env
    file; the replay window of every container that has one is 60-300 s."""
    out = []
    callers = {n for n, s in environment.services.items() if s.hmac_role == "caller"}
    for c in service_mains(hosts):
        env = c.env
        if c.service == PAYMENTS:
            value = env.get("INTERNAL_REQUIRE_HMAC")
            if value is None or value.value.strip().lower() != "true":
                got = "unset" if value is None else repr(value.value)
                out.append(finding("rendered.hmac-required", c, "INTERNAL_REQUIRE_HMAC",
                                   f"INTERNAL_REQUIRE_HMAC is {got} on payments",
                                   "payments must run with INTERNAL_REQUIRE_HMAC=true "
                                   "(ops/render/compose.py service_environment)"))
            if "INTERNAL_HMAC_REPLAY_WINDOW" not in env:
                out.append(finding("rendered.hmac-replay-window", c,
                                   "INTERNAL_HMAC_REPLAY_WINDOW",
                                   "INTERNAL_HMAC_REPLAY_WINDOW is unset on payments (the "
                                   "service default applies)",
                                   "set hmac_replay_window_seconds (60-300) in group_data"))
        if c.service == PAYMENTS or c.service in callers:
            secret = env.get("INTERNAL_HMAC_SECRET")
            if secret is None or not secret.value or not secret.secret_file:
                where = "is missing from its env file" if secret is None or not secret.value \
                    else "is set in `environment:` instead of the 0600 env file"
                out.append(finding("rendered.hmac-secret", c, "INTERNAL_HMAC_SECRET",
                                   f"{c.service} calls payments' internal API but "
                                   f"INTERNAL_HMAC_SECRET {where}",
                                   "every HMAC caller and payments need the shared signing "
                                   "secret from Vault in /etc/superapp/env/<service>.env"))
    for view in hosts:
        for c in view.containers:
            item = c.env.get("INTERNAL_HMAC_REPLAY_WINDOW")
            if item is None:
                continue
            try:
                seconds = int(item.value)
            except ValueError:
                seconds = None
            if seconds is None or not REPLAY_WINDOW[0] <= seconds <= REPLAY_WINDOW[1]:
                out.append(finding("rendered.hmac-replay-window", c,
                                   "INTERNAL_HMAC_REPLAY_WINDOW",
                                   f"INTERNAL_HMAC_REPLAY_WINDOW={item.value!r} is outside "
                                   f"{REPLAY_WINDOW[0]}-{REPLAY_WINDOW[1]} s",
                                   "set hmac_replay_window_seconds between 60 and 300"))
    return out


def check_rate_limit(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """RATE_LIMIT_BACKEND=redis and a redis:// REDIS_URL in the env file of every service."""
    out = []
    for c in service_mains(hosts):
        backend = c.env.get("RATE_LIMIT_BACKEND")
        if backend is None or backend.value != "redis":
            got = "unset" if backend is None else repr(backend.value)
            out.append(finding("rendered.rate-limit-redis", c, "RATE_LIMIT_BACKEND",
                               f"RATE_LIMIT_BACKEND is {got} on {c.service}",
                               "every service must rate-limit through Redis: "
                               "RATE_LIMIT_BACKEND=redis"))
        url = c.env.get("REDIS_URL")
        own_user = f"rediss?://{re.escape(c.service)}:"
        if url is None or not url.secret_file or not re.match(own_user, url.value):
            problem = ("is missing from its env file" if url is None or not url.secret_file
                       else "is not a redis:// URL" if not re.match(r"rediss?://", url.value)
                       else f"does not authenticate as the service's own ACL user "
                            f"({c.service})")
            out.append(finding("rendered.redis-url", c, "REDIS_URL",
                               f"REDIS_URL {problem} ({c.service})",
                               "render REDIS_URL (the service's own Redis user, its password "
                               "from Vault) into the service's 0600 env file"))
    return out


def check_origins(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """ALLOWED_ORIGINS explicit (scheme://host[:port] entries), never `*`."""
    out = []
    origin = re.compile(r"https?://[^\s/,*]+")
    for c in service_mains(hosts):
        item = c.env.get("ALLOWED_ORIGINS")
        entries = [o.strip() for o in item.value.split(",")] if item else []
        bad = [o for o in entries if not origin.fullmatch(o)]
        if not entries or bad or any(not o for o in entries):
            what = "unset" if item is None else f"{item.value!r}"
            detail = f" ({', '.join(repr(b) for b in bad)} not an explicit origin)" if bad else ""
            out.append(finding("rendered.allowed-origins", c, "ALLOWED_ORIGINS",
                               f"ALLOWED_ORIGINS is {what} on {c.service}{detail}",
                               "list explicit origins per service in group_data "
                               "(allowed_origins / default_allowed_origins), never *"))
    return out


def traefik_ips(view: HostView) -> set[str]:
    """Addresses of the Traefik container(s) of a host on the docker network (edge project)."""
    ips = set()
    for c in view.containers:
        if c.service is None and c.name == "traefik":
            for net in (c.spec.get("networks") or {}).values():
                if isinstance(net, dict) and net.get("ipv4_address"):
                    ips.add(str(net["ipv4_address"]))
    return ips


def check_proxy_headers(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """UVICORN_EXTRA_ARGS has --proxy-headers and --forwarded-allow-ips equal to the Traefik
    container address(es) rendered in the host's edge project plus the load balancers Traefik
    trusts (`upstream_proxies`: Traefik appends the balancer's address to X-Forwarded-For, so
    without it every service sees the balancer as the client), never `*`."""
    out = []
    upstream = set(environment.settings["upstream_proxies"])
    for view in hosts:
        proxies = traefik_ips(view) | upstream
        for c in (c for c in view.containers if c.is_main):
            item = c.env.get("UVICORN_EXTRA_ARGS")
            try:
                args = shlex.split(item.value) if item else []
            except ValueError:
                args = []
            allowed: list[str] = []
            for i, arg in enumerate(args):
                if arg.startswith("--forwarded-allow-ips="):
                    allowed += arg.split("=", 1)[1].split(",")
                elif arg == "--forwarded-allow-ips" and i + 1 < len(args):
                    allowed += args[i + 1].split(",")
            allowed = [a.strip() for a in allowed if a.strip()]
            problems = []
            if "--proxy-headers" not in args:
                problems.append("no --proxy-headers")
            if not allowed:
                problems.append("no --forwarded-allow-ips")
            elif any(a in WILDCARD_NETS for a in allowed):
                problems.append(f"--forwarded-allow-ips={','.join(allowed)} trusts everyone")
            elif set(allowed) != proxies:
                problems.append(f"--forwarded-allow-ips={','.join(allowed)} is not the "
                                "proxy addresses (Traefik, then upstream_proxies: "
                                f"{','.join(sorted(proxies)) or 'no Traefik'})")
            if problems:
                out.append(finding("rendered.proxy-headers", c, "UVICORN_EXTRA_ARGS",
                                   f"UVICORN_EXTRA_ARGS on {c.service}: {'; '.join(problems)}",
                                   "UVICORN_EXTRA_ARGS='--proxy-headers "
                                   "--forwarded-allow-ips=<Traefik address on the superapp "
                                   "network>,<upstream_proxies>'"))
    return out


def check_schema(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """AUTO_CREATE_SCHEMA=false on every service (and on any container that sets it)."""
    out = []
    for view in hosts:
        for c in view.containers:
            item = c.env.get("AUTO_CREATE_SCHEMA")
            if (item is None and c.is_main) or (item is not None and
                                                item.value.strip().lower() != "false"):
                got = "unset" if item is None else repr(item.value)
                out.append(finding("rendered.auto-create-schema", c, "AUTO_CREATE_SCHEMA",
                                   f"AUTO_CREATE_SCHEMA is {got} on {c.service or c.name}",
                                   "prod forbids create_all at boot: AUTO_CREATE_SCHEMA=false; "
                                   "apply the schema with the migrate command"))
    return out


def check_schema_bootstrap(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Services whose schema no migration creates: the one-off bootstrap job must have run for
    each (low: the audit cannot read the ledger; the deploy names those still waiting)."""
    return [Finding(
        "rendered.schema-bootstrap", "low", f"ops/catalog/services.yml services.{name}",
        f"{name}: no migrations; its schema is created once by the bootstrap job "
        "(schema_bootstrap_command with AUTO_CREATE_SCHEMA=true on its empty database); every "
        "deploy names the services whose job the ledger does not record",
        f"pyinfra -y inventories/{environment.name}.py tasks/bootstrap_schema.py "
        f"--data service={name} (once per environment); better, give it Alembic migrations",
        key=f"services.{name}")
        for name, s in environment.services.items()
        if s.database and not environment.migrate_command(s)
        and environment.schema_bootstrap_command(s)]


def check_starting_credit(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """STARTING_CREDIT_CENTS=0 on payments unless group_data sets promo_enabled = True."""
    if environment.settings.get("promo_enabled"):
        return []
    out = []
    for view in hosts:
        for c in view.containers:
            item = c.env.get("STARTING_CREDIT_CENTS")
            if (item is None and c.is_main and c.service == PAYMENTS) or (
                    item is not None and item.value.strip() != "0"):
                got = "unset (service default)" if item is None else repr(item.value)
                out.append(finding("rendered.starting-credit", c, "STARTING_CREDIT_CENTS",
                                   f"STARTING_CREDIT_CENTS is {got} without a declared promo",
                                   "set starting_credit_cents = 0, or promo_enabled = True for "
                                   "a promo launched on purpose (group_data)"))
    return out


def check_admin_tokens(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """No plaintext ADMIN_TOKEN in a service's env; ADMIN_TOKEN_SHA256 (64 hex) where the
    catalog says the service supports it (`admin_token: sha256`)."""
    out = []
    hashed = {n for n, s in environment.services.items() if s.admin_token == "sha256"}  # noqa: S105
    for c in service_mains(hosts):
        if "ADMIN_TOKEN" in c.env:
            out.append(finding("rendered.admin-token-hashed", c, "ADMIN_TOKEN",
                               f"{c.service} receives a plaintext ADMIN_TOKEN",
                               "give the service ADMIN_TOKEN_SHA256 only; the plain token "
                               "belongs to its callers"))
        if c.service in hashed:
            item = c.env.get("ADMIN_TOKEN_SHA256")
            if item is None or not re.fullmatch(r"[0-9a-f]{64}", item.value):
                out.append(finding("rendered.admin-token-hashed", c, "ADMIN_TOKEN_SHA256",
                                   f"{c.service} supports a hashed admin token but "
                                   "ADMIN_TOKEN_SHA256 is missing or not a SHA-256 hex digest",
                                   "render ADMIN_TOKEN_SHA256=sha256(token) into its env file"))
    return out


# ---------------------------------------------------------------- container rules


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None (a digest or an x.y.z-style tag)."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means latest)"
    tag = last.rsplit(":", 1)[1]
    if FLOATING_TAGS.fullmatch(tag):
        return f"tag {tag!r} floats"
    if re.fullmatch(r"\d{4}\.\d{1,2}\.\d+([-.].+)?", tag) or PINNED_VERSION.fullmatch(tag):
        return None
    if re.fullmatch(r"v?\d+(\.\d+)?([-_].*)?", tag):
        return f"tag {tag!r} is a floating major/minor version"
    return f"tag {tag!r} is not a version (x.y.z) or a digest"


def check_containers(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Every container of every project: pinned image, non-root user, bounded json-file logs."""
    out = []
    for view in hosts:
        for c in view.containers:
            label = c.service or c.name
            image = str(c.spec.get("image") or "")
            problem = "has no image" if not image else image_problem(image)
            if problem:
                out.append(Finding("rendered.image-pinned", "high", c.where("image"),
                                   f"image {image!r} of {c.name} {problem}",
                                   "pin a version tag (x.y.z) or a digest in group_data "
                                   "(default_image_tag, image_tags, infra_images)",
                                   key=c.key("rendered.image-pinned", image)))
            user = str(c.spec.get("user") or "")
            if user.split(":")[0] in ("", "0", "root"):
                allowed = ROOT_ALLOWED.get(c.name) if c.service is None else None
                out.append(Finding(
                    "rendered.non-root", "low" if allowed else "high", c.where("user"),
                    f"{label}/{c.name} runs as root" + (f" (accepted: {allowed})" if allowed
                                                         else ""),
                    "set `user:` to a non-root uid:gid the image supports",
                    key=c.key("rendered.non-root", c.name)))
            logging = c.spec.get("logging") or {}
            options = logging.get("options") or {}
            driver = logging.get("driver", "json-file")
            bounded = driver == "local" or (driver == "json-file" and options.get("max-size")
                                            and options.get("max-file"))
            if not logging or not bounded:
                out.append(Finding("rendered.bounded-logs", "high", c.where("logging"),
                                   f"{label}/{c.name} logs are unbounded (driver {driver!r}, "
                                   f"options {sorted(options)})",
                                   "json-file with max-size and max-file (container_logs in "
                                   "group_data)", key=c.key("rendered.bounded-logs", c.name)))
    return out


def is_beat(c: Container) -> bool:
    command = c.spec.get("command") or []
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    role = (c.spec.get("labels") or {}).get("superapp.role")
    return role == "beat" or ("beat" in argv and any("celery" in a for a in argv))


def check_beat(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Exactly one Celery beat container in the whole environment."""
    beats = [c for view in hosts for c in view.containers if is_beat(c)]
    if len(beats) == 1:
        return []
    where = "; ".join(c.where() for c in beats) or f"env {environment.name}: no host"
    return [Finding("rendered.celery-beat-singleton", "high", where,
                    f"{len(beats)} Celery beat containers in {environment.name} (must be "
                    "exactly one: two beats schedule every webhook twice, none schedules none)",
                    "keep payments.beat a singleton sidecar (singleton_hosts in group_data)",
                    key=f"rendered.celery-beat-singleton:{environment.name}")]


# ---------------------------------------------------------------- traefik, prometheus, backups


def check_traefik(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """API/dashboard off; forwardedHeaders/proxyProtocol never trust everyone."""
    out = []
    for view in hosts:
        static = view.yaml_docs.get(TRAEFIK_STATIC)
        if static is not None and isinstance(static.data, dict):
            data = static.data
            where = f"{view.name} {TRAEFIK_STATIC}"
            api = data.get("api")
            if "api" in data and api is not False and not (
                    isinstance(api, dict) and api.get("dashboard") is False
                    and not api.get("insecure")):
                out.append(Finding("rendered.traefik-api", "high",
                                   f"{where}:{static.line('api')}",
                                   "Traefik API/dashboard is enabled",
                                   "remove the `api` section of templates/traefik/traefik.yml.j2",
                                   key=f"{view.name}:{TRAEFIK_STATIC}:api"))
            for ep, spec in (data.get("entryPoints") or {}).items():
                for section in ("forwardedHeaders", "proxyProtocol"):
                    block = (spec or {}).get(section) or {}
                    ips = [str(i) for i in block.get("trustedIPs") or []]
                    bad = [i for i in ips if i.strip() in WILDCARD_NETS or wide(i)]
                    if block.get("insecure") or bad:
                        what = "insecure: true" if block.get("insecure") else ", ".join(bad)
                        line = static.line("entryPoints", ep, section)
                        out.append(Finding(
                            "rendered.traefik-trusted-ips", "high", f"{where}:{line}",
                            f"entryPoints.{ep}.{section} trusts everyone ({what})",
                            "trust only the load balancers (upstream_proxies in group_data)",
                            key=f"{view.name}:{TRAEFIK_STATIC}:{ep}.{section}"))
        for path, doc in view.yaml_docs.items():
            if path.startswith(TRAEFIK_DYNAMIC_DIR + "/") and isinstance(doc.data, dict):
                routers = ((doc.data.get("http") or {}).get("routers") or {})
                for name, router in routers.items():
                    if str((router or {}).get("service", "")).startswith(("api@", "dashboard@")):
                        out.append(Finding(
                            "rendered.traefik-api", "high",
                            f"{view.name} {path}:{doc.line('http', 'routers', name)}",
                            f"router {name} exposes Traefik's {router['service']}",
                            "remove the router: the API/dashboard is never exposed",
                            key=f"{view.name}:{path}:{name}"))
    return out


# What every public router of a service must chain (invariant 14): middleware type -> why.
EDGE_MIDDLEWARES = {
    "headers": "security headers",
    "rateLimit": "per-client rate limit",
    "inFlightReq": "per-client in-flight limit",
    "buffering": "request body limit",
}


def check_edge_limits(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Every router of the public entrypoint that reaches a service (not a deny router) chains
    security headers, a rate limit, an in-flight limit and a body limit (maxRequestBodyBytes),
    each defined in the same file (the file provider's own middlewares)."""
    out = []
    for view in hosts:
        for path, doc in view.yaml_docs.items():
            if not (path.startswith(TRAEFIK_DYNAMIC_DIR + "/") and isinstance(doc.data, dict)):
                continue
            http = doc.data.get("http") or {}
            defined = http.get("middlewares") or {}
            for name, router in (http.get("routers") or {}).items():
                router = router or {}
                if not set(PUBLIC_ENTRYPOINTS) & set(router.get("entryPoints") or []) or str(
                        router.get("service", "")).endswith("@internal"):
                    continue
                chained = [defined.get(m) or {} for m in router.get("middlewares") or []]
                if any("ipAllowList" in m for m in chained):
                    continue  # a deny router: nothing reaches the service
                kinds = {kind for m in chained for kind in m}
                if not any((m.get("buffering") or {}).get("maxRequestBodyBytes")
                           for m in chained):
                    kinds.discard("buffering")
                missing = [why for kind, why in EDGE_MIDDLEWARES.items() if kind not in kinds]
                if missing:
                    out.append(Finding(
                        "rendered.edge-limits", "high",
                        f"{view.name} {path}:{doc.line('http', 'routers', name)}",
                        f"public router {name} lacks: {', '.join(missing)}",
                        "keep the edge middlewares of templates/traefik/dynamic.yml.j2 "
                        "(limits: group_data `edge`, the catalog's `edge`)",
                        key=f"{view.name}:{path}:{name}"))
    return out


def wide(value: str) -> bool:
    try:
        return ipaddress.ip_network(value.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


# ---------------------------------------------------------------- internal/admin APIs off `web`

PUBLIC_ENTRYPOINT = "web"
PUBLIC_ENTRYPOINTS = ("web", "websecure")  # plain HTTP and HTTPS (ops/render/tls.py)
PRIVATE_SUBPATHS = ("internal", "admin")
PROBE_HOST = "audit-probe.invalid"  # a Host no router names: the deny must not depend on it
ENCODED_SEPARATORS = ("allowEncodedSlash", "allowEncodedBackSlash")  # Traefik 3.6.7+: default true
NOT_FORWARDING = ("noop@internal",)  # Traefik internal services that never reach a server
RULE_ARG = r'`[^`]*`|"[^"]*"'
# one token of a router rule: an operator, or a matcher call with its quoted arguments
RULE_TOKEN = re.compile(rf"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z]+)\(\s*((?:{RULE_ARG})"
                        rf"(?:\s*,\s*(?:{RULE_ARG}))*)?\s*\))")


@dataclass
class PublicRouter:
    name: str
    file: str  # dynamic file on the host
    rule: str
    priority: int
    forwards: bool  # its service reaches a server (a container)
    doc: Located
    tree: tuple | None = None  # parse_rule(rule); None: unreadable
    entrypoints: tuple[str, ...] = PUBLIC_ENTRYPOINTS  # those of the public ones it listens on

    def where(self, host: str) -> str:
        line = self.doc.line("http", "routers", self.name)
        return f"{host} {self.file}:{line}" if line else f"{host} {self.file}"


def parse_rule(rule: str) -> tuple:
    """A Traefik v3 router rule as a tree: ("or"|"and", a, b), ("not", a), ("m", name, args).
    Raises ValueError on what it cannot read."""
    tokens: list = []
    pos = 0
    while pos < len(rule.rstrip()):
        m = RULE_TOKEN.match(rule, pos)
        if not m:
            raise ValueError(f"cannot read the rule at {rule[pos:pos + 20]!r}")
        tokens.append(m.group(1) or (m.group(2), [a[1:-1] for a in re.findall(
            RULE_ARG, m.group(3) or "")]))
        pos = m.end()

    def expr(i: int, ops: tuple[str, ...] = ("||", "&&")) -> tuple[tuple, int]:
        if not ops:
            return unary(i)
        left, i = expr(i, ops[1:])
        while i < len(tokens) and tokens[i] == ops[0]:
            right, i = expr(i + 1, ops[1:])
            left = ("or" if ops[0] == "||" else "and", left, right)
        return left, i

    def unary(i: int) -> tuple[tuple, int]:
        tok = tokens[i] if i < len(tokens) else None
        if tok == "!":
            node, i = unary(i + 1)
            return ("not", node), i
        if tok == "(":
            node, i = expr(i + 1)
            if i >= len(tokens) or tokens[i] != ")":
                raise ValueError("unbalanced parentheses")
            return node, i + 1
        if isinstance(tok, tuple):
            return ("m", *tok), i + 1
        raise ValueError(f"unexpected {tok!r}")

    tree, end = expr(0)
    if end != len(tokens):
        raise ValueError(f"unexpected {tokens[end]!r}")
    return tree


def rule_matches(tree: tuple, host: str, path: str, unknown: bool) -> bool:
    """Whether a GET of `path` with Host `host` matches; a matcher this cannot decide (Header,
    Query, ClientIP...) counts as `unknown` (negation flips it, so the answer stays on the
    side the caller asked for: True = "could match", False = "surely matches")."""
    kind = tree[0]
    if kind == "or":
        return rule_matches(tree[1], host, path, unknown) or rule_matches(tree[2], host, path,
                                                                          unknown)
    if kind == "and":
        return rule_matches(tree[1], host, path, unknown) and rule_matches(tree[2], host, path,
                                                                           unknown)
    if kind == "not":
        return not rule_matches(tree[1], host, path, not unknown)
    name, args = tree[1], tree[2]
    try:
        if name == "Host":
            return any(host.lower() == a.lower() for a in args)
        if name == "HostRegexp":
            return any(re.search(a, host) for a in args)
        if name == "Path":
            return path in args
        if name == "PathPrefix":
            return any(path.startswith(a) for a in args)
        if name == "PathRegexp":
            return any(re.search(a, path) for a in args)
        if name == "Method":
            return "GET" in (a.upper() for a in args)
    except re.error:
        pass  # a Go regexp Python cannot read: undecided
    return unknown


def public_routers(view: HostView) -> list[PublicRouter]:
    """Every router of the host's dynamic files that listens on `web` or `websecure` (or on
    every entrypoint) and that Traefik would build (its service and middlewares exist);
    `forwards` says whether its service reaches a server."""
    docs = {path: doc for path, doc in sorted(view.yaml_docs.items())
            if path.startswith(TRAEFIK_DYNAMIC_DIR + "/") and isinstance(doc.data, dict)}
    services: dict[str, Any] = {}
    middlewares: set[str] = set()
    for doc in docs.values():
        services.update((doc.data.get("http") or {}).get("services") or {})
        middlewares.update((doc.data.get("http") or {}).get("middlewares") or {})
    out = []
    for path, doc in docs.items():
        for name, router in ((doc.data.get("http") or {}).get("routers") or {}).items():
            router = router or {}
            entrypoints = tuple(e for e in PUBLIC_ENTRYPOINTS
                                if e in (router.get("entryPoints") or PUBLIC_ENTRYPOINTS))
            if not entrypoints:
                continue
            ref = str(router.get("service", ""))
            base, _, provider = ref.partition("@")
            if provider and provider != "file":
                forwards = ref not in NOT_FORWARDING
            elif base in services:
                spec = services[base] or {}
                lb = spec.get("loadBalancer")
                forwards = not isinstance(lb, dict) or bool(lb.get("servers"))
            else:
                continue  # Traefik drops a router whose service does not exist
            if any(m.partition("@")[0] not in middlewares
                   for m in map(str, router.get("middlewares") or [])
                   if m.partition("@")[2] in ("", "file")):
                continue  # ... or one of whose middlewares does not
            rule = str(router.get("rule", ""))
            try:
                priority = int(router.get("priority") or 0) or len(rule)
            except (TypeError, ValueError):
                priority = len(rule)
            try:
                tree: tuple | None = parse_rule(rule)
            except (ValueError, IndexError):
                tree = None
            out.append(PublicRouter(str(name), path, rule, priority, forwards, doc, tree,
                                    entrypoints))
    return out


def reaching_router(routers: list[PublicRouter], host: str, path: str) -> PublicRouter | None:
    """The router that would send this public request to a server, or None when Traefik
    answers it without one (no router matches, or the highest-priority match forwards
    nowhere). Undecidable matchers count against the deny: a forwarding router "could match",
    a deny router must "surely match"; on equal priority a forwarding router wins."""
    matching = []
    for r in routers:
        if r.tree is None:  # unreadable rule: assume the worst of it
            if r.forwards:
                matching.append(r)
        elif rule_matches(r.tree, host, path, unknown=r.forwards):
            matching.append(r)
    if not matching:
        return None
    top = max(r.priority for r in matching)
    return next((r for r in matching if r.priority == top and r.forwards), None)


def check_private_paths(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """On the public entrypoint, `<route>/internal/...` and `<route>/admin/...` of every service
    a host runs never reach a server (invariant 13): for each route prefix of the service (the
    catalog), a GET with each API domain (and with a Host no router names) is matched against
    the host's rendered `web` routers as Traefik would (highest priority, default the rule's
    length); the winner must forward nowhere (a deny router to noop@internal or to a service
    without servers). And `web` refuses an encoded slash or backslash in a path: the services
    decode it after routing (`/payments/internal%2Fcharge` would pass the deny router)."""
    out = []
    domains = [*environment.settings.get("api_domains", []), PROBE_HOST]
    for view in hosts:
        static = view.yaml_docs.get(TRAEFIK_STATIC)
        for entry in PUBLIC_ENTRYPOINTS if static is not None and isinstance(
                static.data, dict) else ():
            spec = (static.data.get("entryPoints") or {}).get(entry)
            if spec is None and entry != PUBLIC_ENTRYPOINT:
                continue  # no HTTPS entrypoint: check_edge_tls says so
            encoded = (((spec or {}).get("http") or {}).get("encodedCharacters") or {})
            allowed = [k for k in ENCODED_SEPARATORS if encoded.get(k) is not False]
            if allowed:
                line = static.line("entryPoints", entry)
                out.append(Finding(
                    "rendered.internal-api-public", "high",
                    f"{view.name} {TRAEFIK_STATIC}:{line}" if line
                    else f"{view.name} {TRAEFIK_STATIC}",
                    f"entryPoints.{entry} accepts encoded path separators "
                    f"({', '.join(allowed)} not false): /<route>/internal%2F... passes the deny "
                    "routers and the service decodes it to /internal/...",
                    f"set entryPoints.{entry}.http.encodedCharacters."
                    "allowEncodedSlash and allowEncodedBackSlash to false "
                    "(templates/traefik/traefik.yml.j2)",
                    key=f"{view.name}:{TRAEFIK_STATIC}:encodedCharacters"
                        + ("" if entry == PUBLIC_ENTRYPOINT else f":{entry}")))
        routers = public_routers(view)
        for service in dict.fromkeys(c.service for c in view.containers if c.is_main):
            spec = environment.services.get(str(service))
            for prefix in spec.routes if spec else ():
                for sub in PRIVATE_SUBPATHS:
                    path = f"{prefix.rstrip('/')}/{sub}/"
                    winner = next((w for host in domains if (w := reaching_router(
                        routers, host, path + "audit-probe")) is not None), None)
                    if winner is None:
                        continue
                    out.append(Finding(
                        "rendered.internal-api-public", "high", winner.where(view.name),
                        f"public {path}... of {service} reaches a server on {view.name}: router "
                        f"{winner.name} on entrypoint {'/'.join(winner.entrypoints)} takes it (its "
                        f"internal/admin API must never be public)",
                        f"render a router on {PUBLIC_ENTRYPOINT} for {prefix}/internal/ and "
                        f"{prefix}/admin/ with a priority above the public router, answering "
                        "404 without a server (noop@internal; templates/traefik/dynamic.yml.j2)",
                        key=f"{view.name}:{service}:{path}"))
    return out


# ------------------------------------------------------------------------------ TLS at the edge

TLS_ENTRYPOINT = "websecure"
TLS_MIN_VERSIONS = ("VersionTLS12", "VersionTLS13")
MIN_HSTS_SECONDS = 15552000  # 180 days: what HSTS preload lists and scanners expect at least
STRICT_ENVS = ("prod", "staging")


def tls_default_options(view: HostView) -> tuple[str, Located] | None:
    """(path, doc) of the dynamic file defining Traefik's `default` TLS options, if any."""
    for path, doc in sorted(view.yaml_docs.items()):
        if path.startswith(TRAEFIK_DYNAMIC_DIR + "/") and isinstance(doc.data, dict) and (
                ((doc.data.get("tls") or {}).get("options") or {}).get("default")):
            return path, doc
    return None


def hsts_seconds(view: HostView, router: PublicRouter) -> int:
    """The longest HSTS max-age any `headers` middleware of the router's chain sets."""
    defined: dict[str, Any] = {}
    for path, doc in view.yaml_docs.items():
        if path.startswith(TRAEFIK_DYNAMIC_DIR + "/") and isinstance(doc.data, dict):
            defined.update((doc.data.get("http") or {}).get("middlewares") or {})
    spec = ((router.doc.data.get("http") or {}).get("routers") or {}).get(router.name) or {}
    found = [((defined.get(str(m).partition("@")[0]) or {}).get("headers") or {})
             .get("stsSeconds") or 0 for m in spec.get("middlewares") or []]
    return max((int(v) for v in found if str(v).isdigit()), default=0)


def check_edge_tls(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Public traffic reaches Traefik over TLS: a `websecure` entrypoint, TLS 1.2 at least for
    every connection (the `default` options), HSTS on every HTTPS router that reaches a
    service, and `web` forwarding nothing but ACME challenges and a redirect. A name kept in
    plain HTTP for a balancer that terminates TLS itself is a finding (high in prod and staging)
    that a waiver may accept, with its reason (the balancer -> Traefik hop is then plaintext)."""
    out = []
    strict = environment.name in STRICT_ENVS
    for view in hosts:
        static = view.yaml_docs.get(TRAEFIK_STATIC)
        if static is None or not isinstance(static.data, dict):
            continue
        where = f"{view.name} {TRAEFIK_STATIC}"
        if TLS_ENTRYPOINT not in (static.data.get("entryPoints") or {}):
            out.append(Finding(
                "rendered.edge-tls", "high" if strict else "low", where,
                "Traefik has no HTTPS entrypoint: every public request is plaintext",
                "give the API domains certificates in group_data `tls_certificates`",
                key=f"{view.name}:{TRAEFIK_STATIC}:websecure"))
            continue
        options = tls_default_options(view)
        version = ((options[1].data["tls"]["options"]["default"].get("minVersion"))
                   if options else None)
        if version not in TLS_MIN_VERSIONS:
            out.append(Finding(
                "rendered.edge-tls", "high", f"{view.name} {options[0] if options else ''}",
                f"TLS default options allow {version or 'TLS 1.0'} (minimum must be TLS 1.2)",
                "set tls.options.default.minVersion (group_data `tls.min_version`)",
                key=f"{view.name}:tls-min-version"))
        routers = public_routers(view)
        for router in routers:
            if router.forwards and TLS_ENTRYPOINT in router.entrypoints and \
                    hsts_seconds(view, router) < MIN_HSTS_SECONDS:
                out.append(Finding(
                    "rendered.edge-tls", "medium", router.where(view.name),
                    f"HTTPS router {router.name} sends no HSTS of at least "
                    f"{MIN_HSTS_SECONDS} s", "chain hsts@file (group_data `tls.hsts_seconds`)",
                    key=f"{view.name}:hsts:{router.name}"))
        plain = [r.name for r in routers if r.forwards and PUBLIC_ENTRYPOINT in r.entrypoints]
        if plain:
            domains = ", ".join(environment.settings["tls_plain_http_domains"]) or "?"
            out.append(Finding(
                "rendered.edge-tls", "high" if strict else "low", f"{where} + dynamic/",
                f"{len(plain)} public routers serve {domains} in plain HTTP on "
                f"`{PUBLIC_ENTRYPOINT}` (e.g. {plain[0]}): the balancer -> Traefik hop is "
                "plaintext", "serve them over HTTPS only (drop them from "
                "`tls_plain_http_domains`), or, where the balancer terminates TLS on a private "
                "network, waive this finding with that reason",
                key=f"rendered.edge-tls:{environment.name}:{view.name}:plain-http"))
    return out


def scrape_targets(hosts: list[HostView]) -> set[tuple[str, str]]:
    """(target host:port, metrics_path) pairs of every rendered prometheus.yml."""
    targets = set()
    for view in hosts:
        doc = view.yaml_docs.get(PROMETHEUS_CONFIG)
        if doc is None or not isinstance(doc.data, dict):
            continue
        for job in doc.data.get("scrape_configs") or []:
            path = str((job or {}).get("metrics_path", "/metrics"))
            for static in job.get("static_configs") or []:
                targets.update((str(t), path) for t in (static or {}).get("targets") or [])
    return targets


def internal_metrics_routes(view: HostView, container_name: str) -> set[tuple[str, str]]:
    """(port, path) pairs on which this host's Traefik routes `.../metrics` to the container."""
    static = view.yaml_docs.get(TRAEFIK_STATIC)
    ports = {}
    if static is not None and isinstance(static.data, dict):
        for ep, spec in (static.data.get("entryPoints") or {}).items():
            address = str((spec or {}).get("address", ""))
            ports[ep] = address.rsplit(":", 1)[-1]
    routes = set()
    for path, doc in view.yaml_docs.items():
        if not (path.startswith(TRAEFIK_DYNAMIC_DIR + "/") and isinstance(doc.data, dict)):
            continue
        http = doc.data.get("http") or {}
        services = http.get("services") or {}
        for router in (http.get("routers") or {}).values():
            lb = (services.get((router or {}).get("service")) or {}).get("loadBalancer") or {}
            urls = [str(s.get("url", "")) for s in lb.get("servers") or []]
            if not any(re.match(rf"https?://{re.escape(container_name)}:\d+/?$", u)
                       for u in urls):
                continue
            for metrics_path in re.findall(r"Path\(`([^`]*/metrics)`\)", router.get("rule", "")):
                for ep in router.get("entryPoints") or []:
                    if ep in ports:
                        routes.add((ports[ep], metrics_path))
    return routes


def check_metrics(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Every service on every host is scraped: a prometheus.yml target `<host>:<port>` with a
    metrics_path that the host's Traefik routes, on that port, to the service's container."""
    out = []
    targets = scrape_targets(hosts)
    for view in hosts:
        for c in (c for c in view.containers if c.is_main):
            routes = internal_metrics_routes(view, str(c.spec.get("container_name", c.name)))
            scraped = any((f"{view.address}:{port}", path) in targets for port, path in routes)
            if not scraped:
                reason = ("no Traefik route to its /metrics" if not routes
                          else "no prometheus.yml target for it")
                out.append(Finding(
                    "rendered.metrics-scraped", "high",
                    f"{view.name} {c.service} {PROMETHEUS_CONFIG}",
                    f"/metrics of {c.service} on {view.name} is not scraped ({reason})",
                    "render a scrape job for every service on every host that runs it "
                    "(ops/render/prometheus.py) and an internal Traefik route to /metrics",
                    key=f"{view.name}:{c.service}"))
    return out


def databases(hosts: list[HostView]) -> dict[str, str]:
    """Database name -> where it is used (from every DATABASE_URL of every env file)."""
    found: dict[str, str] = {}
    for view in hosts:
        for c in view.containers:
            item = c.env.get("DATABASE_URL")
            match = re.match(r"postgres(ql)?(\+\w+)?://[^/]*/([A-Za-z0-9_]+)", item.value) \
                if item else None
            if match:
                found.setdefault(match.group(3), f"{view.name} {item.file}:{item.line}")
    return found


def check_backups(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Every database is covered by a backup job.

    Expected layout (ops/render/backup.py renders it):
    - on some host, a cron file `/etc/cron.d/superapp-backup-<name>`: each job line is
      `<5 schedule fields> <user> <command>`;
    - the command runs a script under `/opt/superapp/backup/` that is rendered on the SAME host;
    - a database counts as covered when its name appears as a whole word in a job line or in
      the script that line runs. Databases are those of every DATABASE_URL in the env files.
    Retention and restore tests are the backup issue's own tests, not checked here.
    """
    wanted = databases(hosts)
    covered: set[str] = set()
    cron_files = 0
    problems: list[Finding] = []
    for view in hosts:
        for path, file in view.files.items():
            if not path.startswith(BACKUP_CRON_PREFIX):
                continue
            cron_files += 1
            for number, line in enumerate(file.content.splitlines(), start=1):
                fields = line.split()
                if not fields or line.lstrip().startswith("#") or "=" in fields[0]:
                    continue
                if len(fields) < 7:
                    problems.append(Finding(
                        "rendered.backup-coverage", "high", f"{view.name} {path}:{number}",
                        "cron line is not `<5 schedule fields> <user> <command>`",
                        "fix the backup cron template", key=f"{view.name}:{path}:{number}"))
                    continue
                command = " ".join(fields[6:])
                texts = [command]
                for script in re.findall(rf"{re.escape(BACKUP_DIR)}/\S+", command):
                    if script in view.files:
                        texts.append(view.files[script].content)
                    else:
                        problems.append(Finding(
                            "rendered.backup-coverage", "high", f"{view.name} {path}:{number}",
                            f"backup job runs {script}, which is not rendered on {view.name}",
                            "render the backup script on the host that runs the cron job",
                            key=f"{view.name}:{path}:{script}"))
                for db in wanted:
                    if any(re.search(rf"(?<![\w-]){re.escape(db)}(?![\w-])", t) for t in texts):
                        covered.add(db)
    missing = sorted(set(wanted) - covered)
    if cron_files == 0 and missing:
        return [Finding(
            "rendered.backup-coverage", "high", f"env {environment.name}: no host",
            f"no backup job rendered: no {BACKUP_CRON_PREFIX}* file on any host; "
            f"{len(missing)} database(s) not backed up: {', '.join(missing)}",
            f"render a cron job per database running a script under {BACKUP_DIR}/ "
            "(invariant 9, docs/invariants.md)",
            key=f"rendered.backup-coverage:{environment.name}")]
    return problems + [
        Finding("rendered.backup-coverage", "high", wanted[db],
                f"database {db} is not covered by any backup job",
                f"add it to a {BACKUP_CRON_PREFIX}* job (script under {BACKUP_DIR}/)",
                key=f"rendered.backup-coverage:{db}")
        for db in missing
    ]


# ---------------------------------------------------------------- secret files


def check_secret_files(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Secret files are 0600; env files are secret; no secret value in a non-secret file."""
    out = []
    for view in hosts:
        for path, file in sorted(view.files.items()):
            is_env = path.startswith(ENV_DIR + "/")
            if (file.secret or is_env) and file.mode != 0o600:
                out.append(Finding("rendered.secret-file-mode", "high", f"{view.name} {path}",
                                   f"secret file has mode {oct(file.mode)}",
                                   "render secret files with mode 0600",
                                   key=f"{view.name}:{path}:mode"))
            if is_env and not file.secret:
                out.append(Finding("rendered.secret-file-mode", "high", f"{view.name} {path}",
                                   "env file is not marked secret (it would be diffed/logged)",
                                   "mark env files secret=True",
                                   key=f"{view.name}:{path}:secret"))
            if not file.secret:
                for number, line in enumerate(file.content.splitlines(), start=1):
                    if any(marker in line for marker in SECRET_MARKERS):
                        out.append(Finding(
                            "rendered.secret-in-plain-file", "high",
                            f"{view.name} {path}:{number}",
                            "a secret value is rendered into a non-secret file",
                            "secret values go only into 0600 files marked secret (env files)",
                            key=f"{view.name}:{path}:{number}"))
                        break
    return out


def check_error_tracking(environment: Environment, hosts: list[HostView]) -> list[Finding]:
    """Prod services whose errors reach no tracker (warning). The catalog's `error_tracking:
    none` is seen here; a DSN missing from Vault only by the deploy, which reads Vault and says
    so (ops/rollout/stages.py)."""
    if environment.name != "prod":
        return []
    return [Finding(
        "rendered.error-tracking", "medium", f"ops/catalog/services.yml services.{name}",
        f"{name}: error_tracking is none in prod: its exceptions reach no error tracker",
        f"set error_tracking: sentry and put its DSN at "
        f"{environment.sentry_dsn_ref(s)} in Vault (kind url)", key=f"services.{name}")
        for name, s in environment.services.items() if s.error_tracking != "sentry"]


RULES: tuple[Callable[[Environment, list[HostView]], list[Finding]], ...] = (
    check_hmac, check_rate_limit, check_origins, check_proxy_headers, check_schema,
    check_schema_bootstrap, check_starting_credit, check_admin_tokens, check_containers,
    check_beat, check_traefik, check_edge_limits, check_edge_tls, check_private_paths,
    check_metrics,
    check_backups, check_secret_files, check_error_tracking,
)
RULE_IDS = (
    "rendered.invalid-yaml", "rendered.env-file-missing", "rendered.hmac-required",
    "rendered.hmac-secret", "rendered.hmac-replay-window", "rendered.rate-limit-redis",
    "rendered.redis-url", "rendered.allowed-origins", "rendered.proxy-headers",
    "rendered.auto-create-schema", "rendered.schema-bootstrap", "rendered.starting-credit",
    "rendered.admin-token-hashed",
    "rendered.image-pinned", "rendered.non-root", "rendered.bounded-logs",
    "rendered.celery-beat-singleton", "rendered.traefik-api", "rendered.traefik-trusted-ips",
    "rendered.edge-limits", "rendered.edge-tls",
    "rendered.internal-api-public", "rendered.metrics-scraped", "rendered.backup-coverage",
    "rendered.secret-file-mode", "rendered.secret-in-plain-file", "rendered.error-tracking",
)
